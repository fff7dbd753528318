"""Us -> PBX over real HTTP: click-to-call (`makeCall`) and employee sync (`accounts`)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from starlette.responses import JSONResponse, Response

from callbridge import flows
from callbridge.domain.pbx import PbxError
from callbridge.store import directory, integrations

from ..fake_pbx import FakePbx
from ..helpers import serve_app

SAMPLES = Path(__file__).parents[1] / "dialects" / "cloudpbx" / "samples"


def make_call(form: dict[str, str]) -> Response:
    """As the spec: 400 unless `user` is given and `phone` is digits."""
    if not form.get("user") or not form.get("phone", "").isdigit():
        return JSONResponse({"error": "Invalid parameters"}, status_code=400)
    return Response(status_code=200)


@pytest.fixture
def fake_pbx():
    accounts = json.loads((SAMPLES / "accounts_reply.json").read_text())
    pbx = FakePbx(replies={"accounts": lambda _form: JSONResponse(accounts), "makeCall": make_call})
    with serve_app(pbx.app()) as url:
        pbx.url = f"{url}/api"
        pbx.accounts = accounts
        yield pbx


async def connect(services, pbx_url: str, token: str) -> int:
    async with services.db.transaction() as session:
        row = await integrations.add_integration(
            session, kind="cloudpbx", name="PBX", settings={"pbx_url": pbx_url, "pbx_token": token}
        )
        return row.id


@pytest.fixture
async def api(services, server):
    async with services.db.transaction() as session:
        key = await integrations.add_api_key(session, "tests")
        andy = await directory.add_employee(session, name="Петров Андрей", pbx_login="andy")
        nobody = await directory.add_employee(session, name="Без логина")
    async with httpx.AsyncClient(base_url=server, headers={"Authorization": f"Bearer {key}"}, timeout=20) as client:
        client.andy, client.nobody = andy.id, nobody.id
        yield client


async def test_click_to_call_rings_the_employee_then_the_client(services, api, fake_pbx):
    await connect(services, fake_pbx.url, fake_pbx.token)
    response = await api.post("/api/calls", json={"employee_id": api.andy, "phone": "+7 (910) 123-45-67"})
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status"] == "calling_employee" and "phone will ring first" in body["message"]
    assert body["phone"] == "+79101234567" and body["pbx_call_id"] is None
    assert fake_pbx.received == [{"cmd": "makeCall", "user": "andy", "phone": "79101234567", "token": "pbx-secret"}]


async def test_click_to_call_returns_the_pbx_call_id(services, api, fake_pbx):
    fake_pbx.replies["makeCall"] = JSONResponse({"uuid": "a1b2"})
    await connect(services, fake_pbx.url, fake_pbx.token)
    response = await api.post("/api/calls", json={"employee_id": api.andy, "phone": "89101234567"})
    assert response.json()["pbx_call_id"] == "a1b2"


async def test_click_to_call_explains_a_refusing_pbx(services, api, fake_pbx):
    await connect(services, fake_pbx.url, "stale-token")
    response = await api.post("/api/calls", json={"employee_id": api.andy, "phone": "89101234567"})
    assert response.status_code == 502 and response.json() == {"detail": "PBX answered 401: Invalid token"}


async def test_click_to_call_says_an_unreachable_pbx_is_tried_again(services, api):
    await connect(services, "http://127.0.0.1:9/sys/crm_api.wcgp", "t")
    response = await api.post("/api/calls", json={"employee_id": api.andy, "phone": "89101234567"})
    body = response.json()
    assert response.status_code == 202 and body["status"] == "retrying"
    assert "PBX did not answer: ConnectError" in body["message"]
    request = (await api.get(f"/api/outbox/{body['outbox_id']}")).json()
    assert (request["status"], request["attempts"]) == ("pending", 1)
    assert [a["outcome"] for a in request["attempt_log"]] == ["retry"]


@pytest.mark.parametrize(
    "body, reason",
    [
        ({"phone": "89101234567"}, "has no PBX login or extension"),
        ({"phone": "call me"}, "is not a phone number"),
        ({"phone": "89101234567", "employee_id": 999999}, "does not exist"),
    ],
)
async def test_click_to_call_refuses_what_cannot_work(services, api, fake_pbx, body, reason):
    await connect(services, fake_pbx.url, fake_pbx.token)
    body = {"employee_id": api.nobody} | body
    response = await api.post("/api/calls", json=body)
    assert response.status_code == 400 and reason in response.json()["detail"]
    assert fake_pbx.received == []


async def test_click_to_call_without_integration(services, api):
    response = await api.post("/api/calls", json={"employee_id": api.andy, "phone": "89101234567"})
    assert response.status_code == 400 and response.json()["detail"] == "no enabled integration can place calls"


async def test_sync_maps_pbx_accounts_to_employees(services, fake_pbx):
    async with services.db.transaction() as session:
        await directory.add_employee(session, name="Петров Андрей", pbx_login="andy")
        await directory.add_employee(session, name="Daria", email="daria@example.com")
    integration_id = await connect(services, fake_pbx.url, fake_pbx.token)
    fake_pbx.accounts[1]["email"] = "daria@example.com"
    fake_pbx.accounts[1]["ext"] = "101"
    report = await flows.sync_accounts(services, integration_id)
    assert (report.created, report.linked, report.unchanged) == (3, 1, 1)
    async with services.db.read() as session:
        people = {e.pbx_login: (e.name, e.extension) for e in await directory.list_employees(session)}
    assert people == {
        "andy": ("Петров Андрей", None),
        "daria": ("Daria", "101"),
        "test": ("Тестовый пользователь", None),
        "mike": ("Семенов Михаил", None),
        "serg": ("Чижиков Сергей", None),
    }
    again = await flows.sync_accounts(services, integration_id)
    assert (again.created, again.linked, again.unchanged) == (0, 0, 5)


async def test_sync_reports_a_bad_token(services, fake_pbx):
    integration_id = await connect(services, fake_pbx.url, "wrong")
    with pytest.raises(PbxError, match="401: Invalid token"):
        await flows.sync_accounts(services, integration_id)


HISTORY_CSV = (
    "B10,in,79101234567,andy@acme.megapbx.ru,74950000000,2026-11-24T12:00:00+03:00,5,120,https://pbx/r/B10.mp3\n"
    "M20,missed,79261112233,mike@acme.megapbx.ru,74950000000,2026-11-24T12:10:00+03:00,30,0,\n"
    "O30,out,74951234567,andy@acme.megapbx.ru,74950000000,2026-11-24T12:20:00+03:00,8,60,\n"
    "broken,row\n"
)


async def test_backfill_merges_the_pbx_history_without_doubling(services, server, fake_pbx):
    from starlette.responses import PlainTextResponse

    from callbridge.store import calls as call_store

    fake_pbx.replies["history"] = PlainTextResponse(HISTORY_CSV)
    integration_id = await connect(services, fake_pbx.url, fake_pbx.token)
    async with services.db.transaction() as session:
        await directory.add_employee(session, name="Андрей", pbx_login="andy")
    async with httpx.AsyncClient() as http:  # B10 was seen live before the server went down
        async with services.db.read() as session:
            token = (await integrations.get_integration(session, integration_id)).token
        await http.post(f"{server}/hooks/cloudpbx/{integration_id}",
                        data={"cmd": "event", "type": "INCOMING", "callid": "B10", "phone": "79101234567",
                              "user": "andy", "crm_token": token})  # fmt: skip

    report = await flows.backfill(services, integration_id, "today")
    assert (report.new, report.unchanged) == (3, 0) and len(report.refused) == 1 and "broken" in report.refused[0]
    assert fake_pbx.received[-1] == {"cmd": "history", "period": "today", "type": "all", "token": "pbx-secret"}
    again = await flows.backfill(services, integration_id, "today")
    assert (again.new, again.unchanged) == (0, 3)

    async with services.db.read() as session:
        rows, total = await call_store.list_calls(session, call_store.CallFilter(), limit=10)
    calls = {c.pbx_call_id: c for c in rows}
    assert total == 3
    live = calls["B10"]
    assert (live.result, live.wait_seconds, live.talk_seconds) == ("answered", 5, 120)
    assert live.started_at.isoformat().startswith("2026-11-24T09:00:00")  # the PBX's start, not when we heard
    assert (calls["M20"].direction, calls["M20"].result) == ("in", "missed")
    assert (calls["O30"].direction, calls["O30"].result, calls["O30"].talk_seconds) == ("out", "answered", 60)
    replayed = await flows.replay(services, integration_id=integration_id)
    assert replayed.failing == [] and replayed.applied == 0  # back-filled rows replay like any request
