"""UIS end to end: notifications over real HTTP, click-to-call through a loopback Call API."""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from callbridge import flows, outbox
from callbridge.automation import Rules
from callbridge.dialects.uis import client as uis_client
from callbridge.domain.pbx import PbxError
from callbridge.store import directory, integrations
from callbridge.store.tables import InboundRequest

from ...helpers import live_listener, serve_app

SAMPLES = Path(__file__).parent / "samples"
SEED_000_CALL = ["000_1_incoming_call.json", "000_4_waiting_for_answer.json", "000_6_talk_start.json",
                 "000_7_talk_end.json", "000_2_call_end.json", "000_3_recorded_call.json"]  # fmt: skip


@pytest.fixture
async def world(services, server):
    async with services.db.transaction() as session:
        andy = await directory.add_employee(session, name="Петров Андрей", pbx_login="1001", extension="101")
        mike = await directory.add_employee(session, name="Семенов Михаил", pbx_login="1002", extension="102")
        row = await integrations.add_integration(
            session, kind="uis", name="UIS", settings={"api_key": "k", "virtual_number": "74950000000"}
        )
        key = await integrations.add_api_key(session, "tests")
    http = httpx.AsyncClient(timeout=10)
    api = httpx.AsyncClient(base_url=server, headers={"Authorization": f"Bearer {key}"}, timeout=10)
    url = f"{server}/hooks/uis/{row.id}/{row.token}"

    async def post(name: str) -> httpx.Response:
        return await http.post(url, content=(SAMPLES / name).read_bytes(), headers={"content-type": "application/json"})

    yield {"post": post, "api": api, "http": http, "url": url, "andy": andy.id, "mike": mike.id, "server": server,
           "row": row}  # fmt: skip
    await http.aclose()
    await api.aclose()


async def calls(world) -> list[dict]:
    return (await world["api"].get("/api/calls")).json()["items"]


async def test_a_whole_call_from_the_eight_notifications(world):
    for name in SEED_000_CALL:
        response = await world["post"](name)
        assert response.status_code == 200, response.text
    (call,) = await calls(world)
    assert call["pbx_call_id"] == "3342129" and call["direction"] == "in" and call["result"] == "answered"
    assert call["employee_id"] == world["andy"] and call["virtual_number"] == "+74950000000"
    assert (call["talk_seconds"], call["wait_seconds"]) == (95, 15)
    assert call["tags"] == ["VIP", "Повторный"] and call["fields"]["scenario_name"] == "Основной сценарий"
    assert call["recording_url"] == "https://app.uiscom.ru/system/media/talk/3342129/0f1e2d/"
    assert call["started_at"].startswith("2026-11-24T09:00:00")
    assert [(leg["employee_key"], leg["state"]) for leg in call["legs"]] == [("1001", "answered")]


async def test_a_call_told_by_a_get_notification_and_a_form_body(world):
    """The variables in a GET notification's query string, then a form body: one call, as from JSON."""
    query = (SAMPLES / "000_1_incoming_call.query").read_text().strip()
    assert (await world["http"].get(f"{world['url']}?{query}")).status_code == 200
    form = (SAMPLES / "000_2_call_end.form").read_bytes().strip()
    ended = await world["http"].post(world["url"], content=form,
                                     headers={"content-type": "application/x-www-form-urlencoded"})  # fmt: skip
    assert ended.status_code == 200, ended.text
    (call,) = await calls(world)
    assert call["pbx_call_id"] == "3342129" and call["phone"] == "+79101234567" and call["result"] == "answered"
    assert call["employee_id"] == world["andy"] and call["talk_seconds"] == 95
    assert (await world["http"].get(world["url"])).status_code == 400  # a GET with nothing in it


async def test_a_lost_call_alone_is_an_incoming_missed_call_that_makes_its_lead(world, services):
    rules = Rules(leads_for_missed_unknown=True, senior_manager_id=world["mike"])
    await flows.set_rules(services, world["row"].id, rules)
    assert (await world["post"]("000_8_lost_call.json")).status_code == 200  # no other notification of this call
    (call,) = await calls(world)
    assert call["direction"] == "in" and call["result"] == "missed" and call["client_id"] is not None
    (lead,) = (await world["api"].get("/api/clients", params={"phone": "79261112233"})).json()["items"]
    assert lead["kind"] == "lead" and lead["responsible_id"] == world["mike"]


async def test_a_call_end_alone_with_talk_time_is_answered_by_its_employee(world):
    assert (await world["post"]("000_2_call_end.json")).status_code == 200
    (call,) = await calls(world)
    assert call["result"] == "answered" and call["employee_id"] == world["andy"] and call["talk_seconds"] == 95


async def test_the_result_never_flips_when_the_notifications_come_in_reverse(world):
    results = []
    for name in reversed(SEED_000_CALL):
        assert (await world["post"](name)).status_code == 200
        results.append((await calls(world))[0]["result"])
    first = results.index("answered")  # once the end is known, it stays answered
    assert results[first:] == ["answered"] * (len(results) - first) and results[:first] == [None] * first


async def test_a_ring_naming_no_extension_goes_to_the_responsible_manager(world, services):
    """Seed 001, "notify only the responsible manager": the listed employees are for when nobody says who."""
    async with services.db.transaction() as session:
        await directory.add_client(session, name="Клиент", phones=["+79161234567"], responsible_id=world["mike"])
    rules = Rules(notify_responsible_only=True, listed_employee_ids=[world["andy"]])
    await flows.set_rules(services, world["row"].id, rules)
    key = await _api_key(services)
    got = {name: [] for name in ("andy", "mike")}
    listeners = [await live_listener(world["http"], f"{world['server']}/api/live?employee_id={world[n]}", key, got[n])
                 for n in got]  # fmt: skip
    assert (await world["post"]("001_ringing_no_extension.json")).status_code == 200
    await asyncio.sleep(0.5)
    for task in listeners:
        task.cancel()
    shown = {name: [m for m in messages if m["type"] == "CardShown"] for name, messages in got.items()}
    assert len(shown["mike"]) == 1 and shown["andy"] == []


async def _api_key(services) -> str:
    async with services.db.transaction() as session:
        return await integrations.add_api_key(session, "live")


async def test_the_four_templates_map_employees_by_extension(world):
    for name in ("001_ringing.json", "001_answered.json", "001_hangup.json", "001_missed.json"):
        assert (await world["post"](name)).status_code == 200
    by_key = {c["pbx_call_id"]: c for c in await calls(world)}
    answered, missed = by_key["3342500"], by_key["3342600"]
    assert answered["result"] == "answered" and answered["employee_id"] == world["andy"]
    assert answered["recording_url"] == "https://app.uiscom.ru/system/media/talk/3342500/aa11/"
    assert missed["result"] == "missed" and missed["phone"] == "+79261112233"


async def test_a_lost_call_is_missed_by_everyone_it_rang(world):
    assert (await world["post"]("000_8_lost_call.json")).status_code == 200
    (call,) = await calls(world)
    assert call["result"] == "missed" and call["wait_seconds"] == 40
    assert {(leg["employee_id"], leg["state"]) for leg in call["legs"]} == {(world["andy"], "missed"),
                                                                             (world["mike"], "missed")}  # fmt: skip


async def test_replayed_and_shuffled_notifications_end_the_same(world):
    for name in SEED_000_CALL:
        await world["post"](name)
    first = await calls(world)
    replay = SEED_000_CALL * 3
    random.Random(5).shuffle(replay)
    for name in replay:
        assert (await world["post"](name)).status_code == 200
    assert await calls(world) == first


async def test_a_wrong_secret_is_404_and_writes_nothing(world):
    wrong = world["url"].rsplit("/", 1)[0] + "/guess"
    response = await world["http"].post(wrong, content=(SAMPLES / "000_2_call_end.json").read_bytes())
    assert response.status_code == 404 and response.json() == {"error": "unknown notification address"}
    other = f"{world['server']}/hooks/uis/999999/{world['row'].token}"
    assert (await world["http"].post(other, content=b"{}")).status_code == 404
    assert await calls(world) == []


async def test_a_body_that_cannot_be_an_event_is_400_with_a_reason_and_kept(world, services):
    response = await world["http"].post(world["url"], content=b'{"hello": "world"}')
    assert response.status_code == 400 and "cannot tell which notification" in response.json()["error"]
    garbage = await world["http"].post(world["url"], content=b"{{{ nonsense")
    assert garbage.status_code == 400 and "not JSON" in garbage.json()["error"]
    async with services.db.read() as session:
        kept = sorted((r.status, r.params.get("hello") or r.params.get("body")) for r in
                      await session.scalars(select(InboundRequest)))  # fmt: skip
    assert kept == [("rejected", "world"), ("rejected", "{{{ nonsense")]


# ---- Call API -----------------------------------------------------------------------------------


@dataclass
class FakeCallApi:
    """JSON-RPC 2.0 as the UIS Call API documents it: login.user tokens, start.employee_call, errors."""

    login: str = "crm@acme"
    password: str = "secret"
    api_key: str = "permanent-key"
    employees: set[int] = field(default_factory=lambda: {1001})
    limit_exceeded: bool = False
    calls: list[dict] = field(default_factory=list)
    logins: int = 0
    valid_tokens: set[str] = field(default_factory=set)
    report: list[dict] = field(default_factory=list)  # the Data API's calls report
    reports: list[dict] = field(default_factory=list)
    _counter: itertools.count = field(default_factory=lambda: itertools.count(1))

    def expire_tokens(self) -> None:
        self.valid_tokens.clear()

    async def endpoint(self, request: Request) -> JSONResponse:
        body = await request.json()
        if (
            body.get("jsonrpc") != "2.0"
            or "id" not in body
            or not request.headers["content-type"].startswith("application/json")
        ):
            return self.error(body.get("id"), -32600, "Invalid Request", "invalid_request")
        params = body.get("params", {})
        if body["method"] == "login.user":
            if (params.get("login"), params.get("password")) != (self.login, self.password):
                return self.error(body["id"], -32001, "Wrong login or password", "access_token_invalid")
            self.logins += 1
            token = f"session-{next(self._counter)}"
            self.valid_tokens.add(token)
            return self.result(body["id"], {"access_token": token, "expire_at": int(time.time()) + 3600})
        if body["method"] not in ("start.employee_call", "get.calls_report"):
            return self.error(body["id"], -32601, "Method not found", "method_not_found")
        token = params.get("access_token")
        if token != self.api_key and token not in self.valid_tokens:
            return self.error(body["id"], -32001, "Access token has been expired", "access_token_expired")
        if body["method"] == "get.calls_report":  # the Data API
            self.reports.append(params)
            return self.result(body["id"], self.report[params["offset"] : params["offset"] + params["limit"]])
        if self.limit_exceeded:
            return self.error(body["id"], -32029, "Limit exceeded", "limit_exceeded")
        if params["employee"]["id"] not in self.employees:
            return self.error(body["id"], -32602, "Employee not found", "employee_not_found")
        self.calls.append(params)
        return self.result(body["id"], {"call_session_id": 555000 + len(self.calls)})

    @staticmethod
    def result(request_id, data) -> JSONResponse:
        return JSONResponse({"jsonrpc": "2.0", "id": request_id, "result": {"data": data,
                             "metadata": {"limits": {"day_remaining": 100}}}})  # fmt: skip

    @staticmethod
    def error(request_id, code: int, message: str, mnemonic: str) -> JSONResponse:
        return JSONResponse({"jsonrpc": "2.0", "id": request_id,
                             "error": {"code": code, "message": message, "data": {"mnemonic": mnemonic}}})  # fmt: skip


@pytest.fixture
def call_api():
    fake = FakeCallApi()
    routes = [Route("/v4.0", fake.endpoint, methods=["POST"]), Route("/v2.0", fake.endpoint, methods=["POST"])]
    with serve_app(Starlette(routes=routes)) as url:
        fake.url, fake.data_url = f"{url}/v4.0", f"{url}/v2.0"
        uis_client._tokens.clear()
        yield fake


async def connect(services, call_api, **credentials) -> None:
    async with services.db.transaction() as session:
        await integrations.add_integration(session, kind="uis", name="UIS Call API", settings={
            "virtual_number": "+74950000000", "call_api_url": call_api.url} | credentials)  # fmt: skip


async def click(world, employee: str, phone: str = "8 (910) 123-45-67") -> httpx.Response:
    return await world["api"].post("/api/calls", json={"employee_id": world[employee], "phone": phone})


async def test_click_to_call_with_a_session_token_reuses_it(world, services, call_api):
    await connect(services, call_api, login="crm@acme", password="secret")
    await _only(services, world)
    first = await click(world, "andy")
    assert first.status_code == 202, first.text
    assert first.json()["pbx_call_id"] == "555001"
    assert (await click(world, "andy", "+7 926 111-22-33")).status_code == 202
    assert call_api.logins == 1  # the token was reused
    assert call_api.calls[0] == {"first_call": "employee", "virtual_phone_number": "74950000000",
                                 "contact": "79101234567", "employee": {"id": 1001},
                                 "access_token": "session-1"}  # fmt: skip


async def test_an_expired_token_is_renewed_and_the_call_retried_once(world, services, call_api):
    await connect(services, call_api, login="crm@acme", password="secret")
    await _only(services, world)
    assert (await click(world, "andy")).status_code == 202
    call_api.expire_tokens()
    again = await click(world, "andy", "+7 926 111-22-33")
    assert again.status_code == 202 and call_api.logins == 2 and len(call_api.calls) == 2


async def test_a_permanent_key_needs_no_login(world, services, call_api):
    await connect(services, call_api, api_key="permanent-key")
    await _only(services, world)
    assert (await click(world, "andy")).status_code == 202
    assert call_api.logins == 0 and call_api.calls[0]["access_token"] == "permanent-key"


@pytest.mark.parametrize(
    "setup, employee, message",
    [
        (lambda api: None, "mike", "UIS does not know this employee"),
        (lambda api: setattr(api, "password", "changed"), "andy", "did not accept the API key or login"),
    ],
)
async def test_call_api_errors_reach_the_user_as_sentences(world, services, call_api, setup, employee, message):
    await connect(services, call_api, login="crm@acme", password="secret")
    await _only(services, world)
    setup(call_api)
    response = await click(world, employee)
    assert response.status_code == 502 and message in response.json()["detail"]


async def test_a_call_api_limit_is_waited_out(world, services, call_api):
    await connect(services, call_api, login="crm@acme", password="secret")
    await _only(services, world)
    call_api.limit_exceeded = True
    response = await click(world, "andy")
    assert response.status_code == 202 and response.json()["status"] == "retrying"
    assert "the UIS Call API limit is reached" in response.json()["message"] and call_api.calls == []
    call_api.limit_exceeded = False
    assert await outbox.drain(services, datetime.now(UTC) + timedelta(seconds=30)) == 1
    request = (await world["api"].get(f"/api/outbox/{response.json()['outbox_id']}")).json()
    assert request["status"] == "done" and request["result"]["pbx_call_id"] == "555001"
    assert [a["outcome"] for a in request["attempt_log"]] == ["retry", "done"]


async def _only(services, world) -> None:
    """Leave only the Call API integration able to place calls (the samples' one points nowhere)."""
    async with services.db.transaction() as session:
        await integrations.update_integration(session, world["row"].id, enabled=False)


# ---- Data API back-fill -------------------------------------------------------------------------


async def test_backfill_from_the_data_api_merges_missed_calls_once(world, services, call_api, monkeypatch):
    call_api.report = json.loads((SAMPLES / "data_api_calls_report.json").read_text())["result"]["data"]
    monkeypatch.setattr(uis_client, "REPORT_PAGE", 2)  # so the four rows come in pages
    async with services.db.transaction() as session:
        await integrations.update_integration(session, world["row"].id, settings=world["row"].settings | {
            "api_key": "permanent-key", "data_api_url": call_api.data_url})  # fmt: skip
    for name in ("000_1_incoming_call.json", "000_4_waiting_for_answer.json"):  # we saw this call begin
        assert (await world["post"](name)).status_code == 200
    report = await flows.backfill(services, world["row"].id, "today")
    assert (report.new, report.unchanged, len(report.refused)) == (3, 0, 1) and "without an id" in report.refused[0]
    assert [(r["offset"], r["limit"]) for r in call_api.reports] == [(0, 2), (2, 2), (4, 2)]
    assert call_api.reports[0]["date_from"].endswith(" 00:00:00") and "employees" in call_api.reports[0]["fields"]
    by_key = {c["pbx_call_id"]: c for c in await calls(world)}
    assert set(by_key) == {"3342129", "3342700", "3342800"}  # the call we had is completed, not doubled
    answered, lost, out = by_key["3342129"], by_key["3342700"], by_key["3342800"]
    assert (answered["result"], answered["employee_id"], answered["talk_seconds"]) == ("answered", world["andy"], 95)
    assert answered["recording_url"] == "https://app.uiscom.ru/system/media/talk/3342129/0f1e2d/"
    assert lost["result"] == "missed" and {leg["employee_id"] for leg in lost["legs"]} == {world["andy"], world["mike"]}
    assert (out["direction"], out["employee_id"]) == ("out", world["mike"])
    again = await flows.backfill(services, world["row"].id, "today")
    assert (again.new, again.unchanged) == (0, 3)
    assert {c["pbx_call_id"] for c in await calls(world)} == set(by_key)


def test_named_periods_are_local_day_ranges():
    now = datetime(2026, 11, 25, 14, 30, 0)  # a Wednesday
    assert uis_client.period_range("today", now) == ("2026-11-25 00:00:00", "2026-11-25 14:30:00")
    assert uis_client.period_range("yesterday", now) == ("2026-11-24 00:00:00", "2026-11-25 00:00:00")
    assert uis_client.period_range("last_week", now) == ("2026-11-16 00:00:00", "2026-11-23 00:00:00")
    assert uis_client.period_range("last_month", now) == ("2026-10-01 00:00:00", "2026-11-01 00:00:00")
    with pytest.raises(PbxError, match="period must be one of"):
        uis_client.period_range("forever", now)
