"""A cloudpbx PBX talking to a real callbridge server: samples -> HTTP -> store -> API."""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

import httpx
import pytest

from callbridge.domain.phones import normalize
from callbridge.store import directory, integrations
from callbridge.store import journal as journal_store

SAMPLES = Path(__file__).parent / "samples"
CALL = "B10D0EB124F4E64AF4EA-1511"


def sample(name: str) -> dict[str, str]:
    body = (SAMPLES / name).read_text()
    return json.loads(body) if name.endswith(".json") else dict(parse_qsl(body))


class Pbx:
    """Posts as the PBX does: form-encoded (or JSON), with the integration's crm_token."""

    def __init__(self, http: httpx.AsyncClient, url: str, token: str) -> None:
        self.http, self.url, self.token = http, url, token

    async def post(self, params: dict, *, as_json: bool = False) -> httpx.Response:
        params = params | {"crm_token": self.token}
        if as_json:
            return await self.http.post(self.url, json=params)
        return await self.http.post(self.url, data=params)

    async def sample(self, name: str, **change) -> httpx.Response:
        return await self.post(sample(name) | change, as_json=name.endswith(".json"))


@pytest.fixture
async def world(services, server):
    """Demo-like directory, one cloudpbx integration, an API key, and HTTP clients for both sides."""
    async with services.db.transaction() as session:
        andy = await directory.add_employee(session, name="Петров Андрей", pbx_login="andy", extension="102")
        mike = await directory.add_employee(session, name="Семенов Михаил", pbx_login="mike", extension="103")
        client = await directory.add_client(
            session, name="Менеджер ЗАО Рога и копыта", phones=["+79101234567"], responsible_id=andy.id
        )
        pbx_row = await integrations.add_integration(
            session,
            kind="cloudpbx",
            name="MegaFon",
            settings={"pbx_url": "http://127.0.0.1:9/x", "pbx_token": "t"},
        )
        key = await integrations.add_api_key(session, "tests")
    async with httpx.AsyncClient(timeout=10) as http:
        yield {
            "pbx": Pbx(http, f"{server}/hooks/cloudpbx/{pbx_row.id}", pbx_row.token),
            "api": httpx.AsyncClient(base_url=server, headers={"Authorization": f"Bearer {key}"}, timeout=10),
            "andy": andy.id,
            "mike": mike.id,
            "client": client.id,
            "integration": pbx_row,
            "server": server,
            "http": http,
        }


async def calls(world, **query) -> list[dict]:
    response = await world["api"].get("/api/calls", params=query)
    assert response.status_code == 200, response.text
    return response.json()["items"]


FOREIGN = {"+44 20 7946 0958": "442079460958", "+49 30 1234567": "49301234567", "+375 29 123-45-67": "375291234567",
           "+1 (212) 555-0123": "12125550123"}  # fmt: skip


async def test_foreign_clients_are_found_by_bare_international_digits(world, services):
    async with services.db.transaction() as session:
        for i, written in enumerate(FOREIGN):
            phones = [normalize(written)]  # as the API and the importer store what people write
            await directory.add_client(session, name=f"Foreign {i}", phones=phones, responsible_id=world["mike"])
    for i, bare in enumerate(FOREIGN.values()):
        response = await world["pbx"].sample("contact.form", phone=bare, callid=f"f{i}")
        assert response.json() == {"contact_name": f"Foreign {i}", "responsible": "mike"}
    for i, near in enumerate(("44207946095", "4420794609581", "442079460959", "1212555012", "3752912345678")):
        response = await world["pbx"].sample("contact.form", phone=near, callid=f"n{i}")
        assert response.status_code == 200 and response.json() == {}, near  # never somebody else's client


async def test_contact_lookup_returns_name_and_responsible(world, services):
    response = await world["pbx"].sample("contact.form")
    assert response.status_code == 200
    assert response.json() == {"contact_name": "Менеджер ЗАО Рога и копыта", "responsible": "andy"}
    unknown = await world["pbx"].sample("contact.form", phone="79990000000")
    assert unknown.status_code == 200 and unknown.json() == {}
    written = await world["pbx"].sample("contact.form", phone="8 (910) 123-45-67")
    assert written.json()["responsible"] == "andy"
    await world["pbx"].sample("contact.form")  # the PBX asks again: counted, not a new entry

    async def journaled():
        async with services.db.read() as session:
            return await journal_store.journal_of_call(session, world["integration"].id, CALL)

    for _ in range(50):  # lookups are journaled in batches right after they are answered
        if len(entries := await journaled()) == 3:
            break
        await asyncio.sleep(0.1)
    assert [(e.command, e.status, e.params["phone"], e.reply, e.repeats) for e in entries] == [
        ("contact", "answered", "79101234567", response.json(), 1),
        ("contact", "answered", "79990000000", {}, 0),
        ("contact", "answered", "8 (910) 123-45-67", written.json(), 0),
    ]


async def test_group_call_lands_in_the_journal_with_legs(world):
    pbx = world["pbx"]
    for user in ("andy", "mike"):
        assert (await pbx.sample("event_incoming.form", user=user)).status_code == 200
    assert (await pbx.sample("event_accepted.form")).status_code == 200
    assert (await pbx.sample("event_cancelled.form", user="mike")).status_code == 200
    assert (await pbx.sample("event_completed.form")).status_code == 200
    assert (await pbx.sample("history_in_success.form", user="andy")).status_code == 200

    (call,) = await calls(world)
    assert call["pbx_call_id"] == CALL and call["direction"] == "in" and call["phone"] == "+79101234567"
    assert call["state"] == "ended" and call["result"] == "answered"
    assert call["employee_id"] == world["andy"] and call["client_id"] == world["client"]
    assert call["talk_seconds"] == 124 - call["wait_seconds"]
    assert call["recording_url"] == "https://link/file.mp3"
    assert {leg["employee_key"]: (leg["state"], leg["employee_id"]) for leg in call["legs"]} == {
        "andy": ("answered", world["andy"]),
        "mike": ("cancelled", world["mike"]),
    }
    detail = (await world["api"].get(f"/api/calls/{call['id']}")).json()
    assert [e["command"] for e in detail["events"]] == ["event"] * 5 + ["history"]
    assert all(e["status"] == "applied" and "crm_token" not in e["params"] for e in detail["events"])


async def test_json_body_is_accepted_like_a_form(world):
    assert (await world["pbx"].sample("event_incoming.json")).status_code == 200
    assert (await world["pbx"].sample("history_in_success.json")).status_code == 200
    (call,) = await calls(world)
    assert call["virtual_number"] == "+74950000000" and call["result"] == "answered"


async def test_fields_in_the_query_string_are_read_under_the_body(world):
    """A URL pasted with the token in it, a script that puts everything in the query string: read as the body."""
    pbx = world["pbx"]
    event = {k: v for k, v in sample("event_incoming.form").items() if k != "crm_token"}
    answered = await pbx.http.post(f"{pbx.url}?crm_token={pbx.token}&callid=overridden", data=event)
    assert answered.status_code == 200, answered.text
    query = urlencode({"cmd": "contact", "phone": "79101234567", "crm_token": pbx.token})
    lookup = await pbx.http.post(f"{pbx.url}?{query}")
    assert lookup.json()["contact_name"] == "Менеджер ЗАО Рога и копыта"
    stray = await pbx.http.post(f"{pbx.url}?&", data=sample("event_completed.form") | {"crm_token": pbx.token})
    assert stray.status_code == 200, stray.text  # a stray `?&` is no field and refuses nothing
    (call,) = await calls(world)
    assert call["pbx_call_id"] == event["callid"]  # the body's value wins


async def test_history_only_call_is_journaled(world):
    assert (await world["pbx"].sample("history_out_busy.form")).status_code == 200
    (call,) = await calls(world)
    assert call["direction"] == "out" and call["result"] == "busy" and call["employee_id"] == world["andy"]
    assert call["started_at"].startswith("2026-11-24T09:00:00")


async def test_duplicates_never_make_a_second_call(world, services):
    pbx = world["pbx"]
    for name in [
        "event_incoming.form",
        "event_accepted.form",
        "event_completed.form",
        "history_in_success.form",
    ] * 3:
        assert (await pbx.sample(name)).status_code == 200
    (call,) = await calls(world)
    assert call["result"] == "answered"
    detail = (await world["api"].get(f"/api/calls/{call['id']}")).json()
    assert len(detail["events"]) == 4 and [e["repeats"] for e in detail["events"]] == [2, 2, 2, 2]


async def test_concurrent_duplicates_make_one_call(world):
    pbx = world["pbx"]
    names = ["event_incoming.form", "event_accepted.form", "event_completed.form"] * 4
    responses = await asyncio.gather(*(pbx.sample(n) for n in names))
    assert {r.status_code for r in responses} == {200}
    (call,) = await calls(world)
    assert call["result"] == "answered" and len(call["legs"]) == 1


async def test_out_of_order_events_end_the_same(world):
    pbx = world["pbx"]
    order = ["history_in_success.form", "event_completed.form", "event_accepted.form", "event_incoming.form"]
    for name in order:
        assert (await pbx.sample(name, user="andy")).status_code == 200
    (call,) = await calls(world)
    assert call["state"] == "ended" and call["result"] == "answered" and call["employee_id"] == world["andy"]
    assert call["recording_url"] == "https://link/file.mp3"


@pytest.mark.parametrize(
    "body, content_type",
    [
        (b"{broken json", "application/json"),
        (b"[1, 2]", "application/json"),
        (b"\xff\xfe\x00garbage", "application/x-www-form-urlencoded"),
        (b"cmd", "application/x-www-form-urlencoded"),
        (b"--x\r\nbroken multipart", "multipart/form-data; boundary=x"),
    ],
)
async def test_unreadable_bodies_get_400_invalid_parameters(world, body, content_type):
    response = await world["http"].post(world["pbx"].url, content=body, headers={"content-type": content_type})
    assert response.status_code == 400 and response.json() == {"error": "Invalid parameters"}


async def test_bad_commands_get_400_and_are_journaled_as_rejected(world, services):
    pbx = world["pbx"]
    for change in ({"type": ""}, {"callid": ""}, {"cmd": "selfdestruct"}):
        response = await pbx.sample("event_incoming.form", **change)
        assert response.status_code == 400 and response.json() == {"error": "Invalid parameters"}
    assert await calls(world) == []
    async with services.db.read() as session:
        assert await journal_store.count_journal(session, world["integration"].id) == 3


@pytest.mark.parametrize("token", ["wrong", "", None])
async def test_wrong_or_missing_token_is_401(world, token):
    params = sample("event_incoming.form")
    if token is None:
        params.pop("crm_token")
    else:
        params["crm_token"] = token
    response = await world["http"].post(world["pbx"].url, data=params)
    assert response.status_code == 401 and response.json() == {"error": "Invalid token"}
    assert await calls(world) == []


async def test_one_integration_cannot_write_into_another(world, services):
    async with services.db.transaction() as session:
        other = await integrations.add_integration(session, kind="cloudpbx", name="Other", settings={})
    for path in (f"/hooks/cloudpbx/{other.id}", "/hooks/cloudpbx/999999", "/hooks/cloudpbx/abc"):
        response = await world["pbx"].http.post(
            world["server"] + path, data=sample("event_incoming.form") | {"crm_token": world["pbx"].token}
        )
        assert response.status_code == 401 and response.json() == {"error": "Invalid token"}
    assert await calls(world) == []


async def test_disabled_integration_is_refused(world, services):
    async with services.db.transaction() as session:
        await integrations.update_integration(session, world["integration"].id, enabled=False)
    await asyncio.sleep(0.6)  # the server caches integrations briefly (0.5 s in these tests)
    assert (await world["pbx"].sample("event_incoming.form")).status_code == 401


async def test_api_filters_and_pages(world):
    pbx = world["pbx"]
    for n in range(5):
        await pbx.sample(
            "history_in_success.form",
            callid=f"h{n}",
            user="andy" if n % 2 else "mike",
            phone=f"7910123456{n}",
            status="Success" if n < 3 else "Missed",
        )
    assert len(await calls(world)) == 5
    assert len(await calls(world, employee_id=world["mike"])) == 3
    assert [c["pbx_call_id"] for c in await calls(world, result="missed")] in (["h4", "h3"], ["h3", "h4"])
    assert [c["pbx_call_id"] for c in await calls(world, phone="8 910 123 45 62")] == ["h2"]
    page = (await world["api"].get("/api/calls", params={"limit": 2, "offset": 4})).json()
    assert page["total"] == 5 and len(page["items"]) == 1
    assert (await world["api"].get("/api/calls", params={"since": "2100-01-01T00:00:00Z"})).json()["total"] == 0
    assert (await world["api"].get("/api/calls", params={"phone": "nope"})).status_code == 400
    assert (await world["api"].get("/api/calls", params={"limit": 0})).status_code == 422
    assert (await world["api"].get("/api/calls/424242")).status_code == 404


async def test_api_needs_a_valid_key(world):
    async with httpx.AsyncClient(base_url=world["server"]) as anonymous:
        assert (await anonymous.get("/api/calls")).status_code == 401
        bad = await anonymous.get("/api/calls", headers={"Authorization": "Bearer cb_nope"})
        assert bad.status_code == 401 and bad.json() == {"detail": "invalid API key"}


async def test_api_directory(world):
    api = world["api"]
    created = await api.post(
        "/api/clients",
        json={
            "name": "ООО Вектор",
            "phones": ["+7 903 777-66-55", "8-916-000-00-01"],
            "responsible_id": world["mike"],
        },
    )
    assert created.status_code == 201 and created.json()["phones"] == ["+79037776655", "+79160000001"]
    found = (await api.get("/api/clients", params={"phone": "89037776655"})).json()
    assert [c["name"] for c in found["items"]] == ["ООО Вектор"]
    clash = await api.post("/api/clients", json={"name": "Копия", "phones": ["79037776655"]})
    assert clash.status_code == 409 and "+79037776655" in clash.json()["detail"]
    assert (await api.post("/api/clients", json={"name": "X", "phones": ["abc"]})).status_code == 400
    assert (await api.post("/api/clients", json={"name": "X", "responsible_id": 999999})).status_code == 400
    employee = await api.post("/api/employees", json={"name": "Новый", "extension": "105", "role": "manager"})
    assert employee.status_code == 201 and employee.json()["role"] == "manager"
    assert (await api.post("/api/employees", json={"name": ""})).status_code == 422
    assert len((await api.get("/api/employees")).json()) == 3
    assert (await api.get("/api/tasks")).json() == {"items": [], "total": 0, "limit": 50, "offset": 0}
    # the lookup sees a client created through the API at once
    assert (await world["pbx"].sample("contact.form", phone="79160000001")).json()["responsible"] == "mike"


async def test_shuffled_replays_of_every_sample_leave_the_same_calls(world):
    names = sorted(p.name for p in SAMPLES.iterdir() if p.stem.split("_")[0] in ("event", "history", "rating"))
    for name in names:
        await world["pbx"].sample(name)
    first = await calls(world)
    shuffled = names * 3
    random.Random(7).shuffle(shuffled)
    for name in shuffled:
        await world["pbx"].sample(name)
    assert await calls(world) == first
