"""Caller lookup from the company's own CRM: a real source on loopback, asked about numbers callbridge does not
know, signed as webhooks are; its answer routes the call, is cached, and its client is kept here; a slow or failing
source never holds the PBX's answer and shows on the call."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field

import httpx
import pytest
from standardwebhooks.webhooks import Webhook as Verifier
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from typer.testing import CliRunner

from callbridge.cli import app as cli_app
from callbridge.store import directory, integrations

from ..helpers import serve_app

KNOWN_THERE = "79165550001"  # a client of the company's CRM only
SLOW, BROKEN, NOBODY, EMPTY = "79165550002", "79165550003", "79165550004", "79165550005"


@dataclass
class Source:
    secret: str = ""
    asked: list[dict] = field(default_factory=list)
    unsigned: int = 0

    async def who(self, request: Request) -> Response:
        body = await request.body()
        try:
            Verifier(self.secret).verify(body, dict(request.headers))
        except Exception:
            self.unsigned += 1
            return Response(status_code=401)
        asked = json.loads(body)
        self.asked.append(asked)
        phone = asked["phone"].lstrip("+")
        if phone == SLOW:
            await asyncio.sleep(3)
        if phone == BROKEN:
            return Response("down for maintenance", status_code=500)
        if phone == NOBODY:
            return Response(status_code=404)
        if phone == EMPTY:
            return JSONResponse({})
        return JSONResponse({"name": "ООО Внешний", "responsible": "andy@example.com", "external_id": "crm-42",
                             "deal": {"title": "Поставка из CRM", "amount": 99000}})

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/who", self.who, methods=["POST"])])


@pytest.fixture
async def world(services, server):
    source = Source()
    with serve_app(source.app()) as url:
        async with services.db.transaction() as session:
            await directory.add_employee(session, name="Андрей", pbx_login="andy", email="andy@example.com")
            pbx = await integrations.add_integration(session, kind="cloudpbx", name="PBX", settings={})
            key = await integrations.add_api_key(session, "tests")
        async with httpx.AsyncClient(timeout=30) as http:
            api = httpx.AsyncClient(base_url=server, headers={"Authorization": f"Bearer {key}"}, timeout=30)
            set_up = await api.put("/api/lookup-source", json={"url": f"{url}/who", "cache_seconds": 300})
            assert set_up.status_code == 200 and set_up.json()["secret"].startswith("whsec_")
            source.secret = set_up.json()["secret"]
            await asyncio.sleep(0.6)  # the server's cache of settings

            async def post(**params) -> httpx.Response:
                return await http.post(f"{server}/hooks/cloudpbx/{pbx.id}", data=params | {"crm_token": pbx.token})

            yield {"source": source, "api": api, "post": post, "pbx": pbx, "http": http, "server": server}
            await api.aclose()


async def metric(world, line_start: str) -> float:
    body = (await world["http"].get(f"{world['server']}/metrics")).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in body.splitlines() if line.startswith(line_start))


async def test_a_client_known_only_there_is_named_routed_and_kept(world, services):
    answer = await world["post"](cmd="contact", phone=KNOWN_THERE, callid="x1")
    assert answer.json() == {"contact_name": "ООО Внешний", "responsible": "andy"}
    source = world["source"]
    assert source.asked == [{"phone": "+" + KNOWN_THERE, "call_id": "x1", "integration_id": world["pbx"].id}]
    assert source.unsigned == 0
    for _ in range(50):  # kept right after the PBX had its answer
        found = (await world["api"].get("/api/clients", params={"phone": KNOWN_THERE})).json()["items"]
        if found:
            break
        await asyncio.sleep(0.05)
    (client,) = found
    assert client["name"] == "ООО Внешний" and client["deals"][0]["title"] == "Поставка из CRM"
    assert client["deals"][0]["amount"] == 99000
    async with services.db.read() as session:
        assert (await directory.get_client(session, client["id"])).external_id == "crm-42"
    again = await world["post"](cmd="contact", phone=KNOWN_THERE, callid="x2")
    assert again.json() == answer.json() and len(source.asked) == 1  # ours now (or cached): not asked again
    await world["post"](cmd="event", type="INCOMING", callid="x2", phone=KNOWN_THERE, user="andy")
    (call,) = (await world["api"].get("/api/calls")).json()["items"]
    assert call["client_id"] == client["id"]


@pytest.mark.parametrize("phone", [NOBODY, EMPTY])
async def test_an_unknown_number_there_too_is_unknown_and_cached(world, phone):
    for n in range(3):
        answer = await world["post"](cmd="contact", phone=phone, callid=f"u{n}")
        assert answer.status_code == 200 and answer.json() == {}
    assert len(world["source"].asked) == 1


async def test_a_slow_source_never_holds_the_pbx_and_shows_on_the_call(world, services):
    before = await metric(world, 'callbridge_lookups_total{result="deadline"}')
    began = time.monotonic()
    answer = await world["post"](cmd="contact", phone=SLOW, callid="s1")
    assert answer.json() == {} and time.monotonic() - began < services.settings.lookup_deadline_ms / 1000 + 1.0
    assert await metric(world, 'callbridge_lookups_total{result="deadline"}') == before + 1
    await world["post"](cmd="event", type="INCOMING", callid="s1", phone=SLOW, user="andy")
    await asyncio.sleep(1.0)  # the lookup is journaled in the next batch
    (call,) = (await world["api"].get("/api/calls")).json()["items"]
    detail = (await world["api"].get(f"/api/calls/{call['id']}")).json()
    assert any(p.startswith("caller lookup: the caller lookup gave up") for p in detail["problems"])
    assert any(p.startswith("caller lookup") for p in call["problems"])


async def test_a_failing_source_is_counted_and_shown(world):
    before = await metric(world, 'callbridge_failures_total{kind="lookup_source"}')
    answer = await world["post"](cmd="contact", phone=BROKEN, callid="b1")
    assert answer.status_code == 200 and answer.json() == {}
    assert await metric(world, 'callbridge_failures_total{kind="lookup_source"}') == before + 1
    await world["post"](cmd="event", type="INCOMING", callid="b1", phone=BROKEN, user="andy")
    await asyncio.sleep(1.0)
    (call,) = (await world["api"].get("/api/calls")).json()["items"]
    assert "caller lookup: the lookup source answered 500" in call["problems"]


async def test_the_lookup_source_api(world):
    api = world["api"]
    shown = (await api.get("/api/lookup-source")).json()
    assert shown["cache_seconds"] == 300 and "secret" not in shown
    assert (await api.put("/api/lookup-source", json={"url": "ftp://x"})).status_code == 422
    assert (await api.delete("/api/lookup-source")).status_code == 204
    assert (await api.get("/api/lookup-source")).status_code == 404
    assert (await api.delete("/api/lookup-source")).status_code == 404


async def test_the_cli_as_an_admin_types_it(services):
    db = services.settings.database_url

    def cli(*args: str):
        return asyncio.to_thread(CliRunner().invoke, cli_app, ["lookup-source", *args, "--database-url", db])

    assert (await cli("show")).exit_code == 1
    set_up = await cli("set", "https://crm.example/callbridge/who", "--cache-seconds", "60", "--json")
    assert set_up.exit_code == 0, set_up.output
    shown = json.loads(set_up.stdout)
    assert shown["url"] == "https://crm.example/callbridge/who" and shown["secret"].startswith("whsec_")
    assert "answers kept 60 s" in (await cli("show")).stdout
    assert (await cli("clear")).exit_code == 0 and (await cli("clear")).exit_code == 1
