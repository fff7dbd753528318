"""Signed webhooks to a real receiver on loopback: every delivery verified with the `standardwebhooks` library, a
receiver that fails for a while loses nothing and never sees one event under two ids, a dead one holds up no PBX."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import select, update
from standardwebhooks.webhooks import Webhook as Verifier
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from typer.testing import CliRunner

from callbridge import outbox, webhooks
from callbridge.automation import Rules
from callbridge.cli import app as cli_app
from callbridge.store import directory, integrations
from callbridge.store.tables import OutboxRequest, Webhook

from .. import helpers
from ..helpers import serve_app

KNOWN = "79101234567"


@dataclass
class Receiver:
    """A CRM's webhook endpoint: verifies each delivery with the secrets it knows, answers as told."""

    secrets: list[str] = field(default_factory=list)
    answers: list[int] = field(default_factory=list)  # statuses to answer in turn; then 200
    retry_after: str | None = None
    delay: float = 0.0
    got: list[dict] = field(default_factory=list)  # verified deliveries: headers and body
    refused: list[str] = field(default_factory=list)  # deliveries whose signature did not verify
    hits: int = 0

    async def endpoint(self, request: Request) -> Response:
        self.hits += 1
        body = await request.body()
        headers = dict(request.headers)
        verified = None
        for secret in self.secrets:
            try:
                verified = Verifier(secret).verify(body, headers)
                break
            except Exception:
                continue
        if verified is None:
            self.refused.append(headers.get("webhook-id", ""))
            return Response(status_code=400)
        await asyncio.sleep(self.delay)
        status = self.answers.pop(0) if self.answers else 200
        if status == 200:
            self.got.append({"id": headers["webhook-id"], "signature": headers["webhook-signature"]} | verified)
        extra = {"retry-after": self.retry_after} if self.retry_after and status != 200 else {}
        return Response(status_code=status, headers=extra)

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/hook", self.endpoint, methods=["POST"])])


@pytest.fixture
async def world(services, server):
    receiver = Receiver()
    with serve_app(receiver.app()) as url:
        async with services.db.transaction() as session:
            andy = await directory.add_employee(session, name="Андрей", pbx_login="andy")
            await directory.add_client(session, name="Рога и копыта", phones=["+" + KNOWN], responsible_id=andy.id)
            pbx = await integrations.add_integration(session, kind="cloudpbx", name="PBX", settings={})
            key = await integrations.add_api_key(session, "tests")
        async with httpx.AsyncClient(timeout=30) as http:
            api = httpx.AsyncClient(base_url=server, headers={"Authorization": f"Bearer {key}"}, timeout=30)

            async def post(**params) -> httpx.Response:
                return await http.post(f"{server}/hooks/cloudpbx/{pbx.id}", data=params | {"crm_token": pbx.token})

            yield {"receiver": receiver, "url": f"{url}/hook", "api": api, "post": post, "pbx": pbx, "http": http}
            await api.aclose()


async def subscribe(world, **body) -> dict:
    created = await world["api"].post("/api/webhooks", json={"url": world["url"]} | body)
    assert created.status_code == 201, created.text
    hook = created.json()
    assert hook["secret"].startswith("whsec_") and set(hook) >= {"id", "url", "events", "secret"}
    world["receiver"].secrets.append(hook["secret"])
    await asyncio.sleep(0.6)  # the server's cache of webhooks (CALLBRIDGE_INTEGRATION_CACHE_SECONDS in the tests)
    return hook


async def until(condition, seconds: float = 10.0):
    deadline = time.monotonic() + seconds
    while not (found := await condition()):
        assert time.monotonic() < deadline, "not in time"
        await asyncio.sleep(0.05)
    return found


async def a_call(world, callid: str, answered: bool = True) -> None:
    await world["post"](cmd="event", type="INCOMING", callid=callid, phone=KNOWN, user="andy")
    if answered:
        await world["post"](cmd="event", type="ACCEPTED", callid=callid, phone=KNOWN, user="andy")
    await world["post"](cmd="event", type="COMPLETED", callid=callid, phone=KNOWN, user="andy")


async def test_a_call_is_delivered_signed_as_the_api_shows_it(world):
    hook = await subscribe(world)
    assert hook["events"] == list(webhooks.EVENT_TYPES)
    await a_call(world, "w1")
    receiver = world["receiver"]
    await until(lambda: asyncio.sleep(0, len(receiver.got) >= 3))
    assert sorted(d["type"] for d in receiver.got) == ["call.answered", "call.ended", "call.ringing"]
    assert receiver.refused == [] and len({d["id"] for d in receiver.got}) == 3
    call = (await world["api"].get("/api/calls")).json()["items"][0]
    detail = (await world["api"].get(f"/api/calls/{call['id']}")).json()
    newest = max((d["data"] for d in receiver.got), key=lambda data: data["sequence"])  # how a receiver picks
    assert newest["id"] == call["id"] and newest["state"] == "ended" and newest["result"] == "answered"
    assert set(newest) == set(detail) and newest["sequence"] == detail["sequence"] >= 3
    datetime.fromisoformat(receiver.got[0]["timestamp"])
    deliveries = (await world["api"].get(f"/api/webhooks/{hook['id']}/deliveries")).json()
    assert {d["status"] for d in deliveries} == {"done"} and all(d["response_code"] == 200 for d in deliveries)
    assert all(d["attempt_log"][0]["response_code"] == 200 for d in deliveries)


async def test_only_the_events_asked_for_and_the_missed_call_with_its_task(world, services):
    await flows_rules(services, world, Rules(missed_call_tasks=True))
    await subscribe(world, events=["call.missed", "task.created", "task.closed"])
    await a_call(world, "m1", answered=False)
    receiver = world["receiver"]
    await until(lambda: asyncio.sleep(0, len(receiver.got) >= 2))
    assert sorted(d["type"] for d in receiver.got) == ["call.missed", "task.created"]
    task = next(d["data"] for d in receiver.got if d["type"] == "task.created")
    assert task["kind"] == "missed_call" and task["status"] == "open"
    await a_call(world, "m2")  # the client is reached: the task is done
    await until(lambda: asyncio.sleep(0, len(receiver.got) >= 3))
    closed = receiver.got[-1]
    assert closed["type"] == "task.closed" and closed["data"]["id"] == task["id"] and closed["data"]["status"] == "done"


async def flows_rules(services, world, rules: Rules) -> None:
    from callbridge import flows

    await flows.set_rules(services, world["pbx"].id, rules)
    await asyncio.sleep(0.6)


async def test_a_receiver_down_for_a_while_gets_everything_once_under_one_id(world, services):
    receiver = world["receiver"]
    receiver.answers = [503, 503, 429]
    receiver.retry_after = "1"
    hook = await subscribe(world, events=["call.ringing"])
    await world["post"](cmd="event", type="INCOMING", callid="r1", phone=KNOWN, user="andy")
    deliveries = await until(lambda: _deliveries(world, hook))
    (delivery,) = deliveries
    assert delivery["status"] == "pending" and delivery["response_code"] == 503
    for _ in range(3):  # the schedule's 5 s, 5 min, ...: brought forward, as time passing would
        await _due_now(services)
        services.receivers_down.clear()  # ... and the pause after a failure is over
        await outbox.drain(services, datetime.now(UTC))
    (delivery,) = await _deliveries(world, hook)
    assert delivery["status"] == "done" and delivery["attempts"] == 4
    assert [a["response_code"] for a in delivery["attempt_log"]] == [503, 503, 429, 200]
    assert len(receiver.got) == 1 and receiver.got[0]["id"] == delivery["message_id"]


async def test_a_receiver_that_is_down_is_left_alone_a_moment_not_hit_by_every_event(world, services):
    receiver = world["receiver"]
    receiver.answers = [503] * 100
    hook = await subscribe(world, events=["call.ringing"])
    await world["post"](cmd="event", type="INCOMING", callid="p0", phone=KNOWN, user="andy")
    await until(lambda: _deliveries(world, hook))  # its first attempt failed and is recorded
    for n in range(1, 6):
        await world["post"](cmd="event", type="INCOMING", callid=f"p{n}", phone=KNOWN, user="andy")
    await asyncio.sleep(1.0)
    assert receiver.hits == 1  # the others wait out the pause instead of each failing on its own
    waiting = await _deliveries(world, hook, status="pending")
    assert len(waiting) == 6 and sum(d["attempts"] for d in waiting) == 1


async def test_after_the_pause_one_delivery_tries_a_dead_receiver_and_the_rest_wait_without_an_attempt(world, services):
    receiver = world["receiver"]
    receiver.answers = [503] * 2
    hook = await subscribe(world, events=["call.ringing"])
    await world["post"](cmd="event", type="INCOMING", callid="q0", phone=KNOWN, user="andy")
    await until(lambda: _deliveries(world, hook))
    for n in range(1, 6):
        await world["post"](cmd="event", type="INCOMING", callid=f"q{n}", phone=KNOWN, user="andy")
    await _due_now(services)
    services.receivers_down[hook["id"]] = time.monotonic()  # the pause is over; the receiver is still down
    await outbox.drain(services, datetime.now(UTC))
    assert receiver.hits == 2  # one delivery tried it, not six
    found = (await world["api"].get(f"/api/webhooks/{hook['id']}/deliveries")).json()
    assert {d["status"] for d in found} == {"pending"}
    assert sum(d["attempts"] for d in found) == 2  # the first attempt and the probe: the others were not charged
    await _due_now(services)
    services.receivers_down[hook["id"]] = time.monotonic()  # it answers now: one goes first, then the rest
    await outbox.drain(services, datetime.now(UTC))
    found = (await world["api"].get(f"/api/webhooks/{hook['id']}/deliveries")).json()
    assert {d["status"] for d in found} == {"done"} and receiver.hits == 8
    assert sorted(d["id"] for d in receiver.got) == sorted(d["message_id"] for d in found)  # each once


async def test_a_refusal_is_not_retried_and_a_person_can_retry_it(world, services):
    receiver = world["receiver"]
    receiver.answers = [410]
    hook = await subscribe(world, events=["call.ringing"])
    await world["post"](cmd="event", type="INCOMING", callid="g1", phone=KNOWN, user="andy")
    await until(lambda: _deliveries(world, hook, status="failed"))
    (failed,) = await _deliveries(world, hook)
    assert failed["attempts"] == 1 and failed["response_code"] == 410 and "410" in failed["error"]
    retried = await world["api"].post(f"/api/webhooks/{hook['id']}/deliveries/{failed['id']}/retry")
    assert retried.status_code == 200 and retried.json()["status"] == "done"
    assert [d["id"] for d in receiver.got] == [failed["message_id"]]  # the same webhook-id


async def test_a_dead_receiver_never_holds_a_pbx_and_is_switched_off_after_five_days(world, services):
    receiver = world["receiver"]
    receiver.delay = 20.0  # past the 15 s a receiver has
    hook = await subscribe(world, events=["call.ringing"])
    began = time.monotonic()
    for n in range(5):
        answer = await world["post"](cmd="event", type="INCOMING", callid=f"d{n}", phone=KNOWN, user="andy")
        assert answer.status_code == 200
    lookup = await world["post"](cmd="contact", phone=KNOWN)
    assert lookup.json()["contact_name"] == "Рога и копыта" and time.monotonic() - began < 5  # nobody waited
    async with services.db.transaction() as session:
        await session.execute(update(Webhook).values(failing_since=datetime.now(UTC) - timedelta(days=5, minutes=1)))
        await session.execute(update(OutboxRequest).values(next_attempt_at=datetime.now(UTC)))
    receiver.delay = 0.0
    receiver.answers = [500] * 20
    services.forget_webhooks()
    services.receivers_down.clear()
    await outbox.drain(services, datetime.now(UTC))
    shown = (await world["api"].get(f"/api/webhooks/{hook['id']}")).json()
    assert shown["enabled"] is False and "failing since" in shown["disabled_reason"]
    again = await world["api"].patch(f"/api/webhooks/{hook['id']}", json={"enabled": True})
    assert again.json()["enabled"] and again.json()["disabled_reason"] is None


async def test_a_rotated_secret_signs_beside_the_old_one(world):
    receiver = world["receiver"]
    hook = await subscribe(world, events=["call.ringing"])
    rotated = (await world["api"].post(f"/api/webhooks/{hook['id']}/rotate")).json()
    assert rotated["secret"] != hook["secret"]
    await asyncio.sleep(0.6)
    receiver.secrets = [hook["secret"]]  # a receiver not yet told the new one still verifies
    await world["post"](cmd="event", type="INCOMING", callid="s1", phone=KNOWN, user="andy")
    await until(lambda: asyncio.sleep(0, receiver.got))
    assert len(receiver.got[0]["signature"].split(" ")) == 2  # both secrets sign for the next 24 hours


async def test_bad_webhooks_are_refused_with_a_reason(world):
    api = world["api"]
    assert (await api.post("/api/webhooks", json={"url": "ftp://x"})).status_code == 422
    assert (await api.post("/api/webhooks", json={"url": world["url"], "events": ["call.exploded"]})).status_code == 422
    assert (await api.post("/api/webhooks", json={"url": world["url"], "integration_id": 999})).status_code == 400
    assert (await api.get("/api/webhooks/999")).status_code == 404
    assert (await api.delete("/api/webhooks/999")).status_code == 404


async def _deliveries(world, hook, status: str | None = None) -> list[dict]:
    found = (await world["api"].get(f"/api/webhooks/{hook['id']}/deliveries")).json()
    return [d for d in found if d["attempts"]] if status is None else [d for d in found if d["status"] == status]


async def _due_now(services) -> None:
    async with services.db.transaction() as session:
        await session.execute(
            update(OutboxRequest).where(OutboxRequest.status == "pending").values(next_attempt_at=datetime.now(UTC))
        )



async def test_the_cli_as_an_admin_types_it(world, services):
    receiver = world["receiver"]
    db = services.settings.database_url

    def cli(*args: str):
        return asyncio.to_thread(CliRunner().invoke, cli_app, ["webhook", *args, "--database-url", db],
                                 env={"CALLBRIDGE_OUTBOUND_ALLOW": "127.0.0.1"})  # the receiver is on loopback

    added = await cli("add", world["url"], "--events", "call.ended,call.missed", "--json")
    assert added.exit_code == 0, added.output
    hook = json.loads(added.stdout)
    assert set(hook) >= {"id", "url", "events", "secret"} and hook["events"] == ["call.ended", "call.missed"]
    receiver.secrets.append(hook["secret"])
    tested = await cli("test", str(hook["id"]))
    assert tested.exit_code == 0 and "answered 200" in tested.stdout
    assert receiver.got[-1]["type"] == "webhook.test"
    listed = json.loads((await cli("list", "--json")).stdout)
    assert [w["id"] for w in listed] == [hook["id"]] and "secret" not in listed[0]
    rotated = await cli("rotate", str(hook["id"]))
    assert rotated.exit_code == 0 and rotated.stdout.strip().startswith("whsec_")
    assert rotated.stdout.strip() != hook["secret"]
    refused = await cli("add", world["url"], "--events", "call.exploded")
    assert refused.exit_code == 1 and "unknown event types call.exploded" in refused.stderr
    assert (await cli("remove", str(hook["id"]))).exit_code == 0
    gone = await cli("remove", str(hook["id"]))
    assert gone.exit_code == 1 and "does not exist" in gone.stderr


async def a_hooked_pbx(services, receiver: Receiver, url: str):
    """A PBX with an employee, and a webhook of its ringing calls to `receiver`, for a `callbridge serve` of the
    test's own."""
    async with services.db.transaction() as session:
        await directory.add_employee(session, name="Андрей", pbx_login="andy")
        pbx = await integrations.add_integration(session, kind="cloudpbx", name="PBX", settings={})
    hook = await webhooks.add(services, f"{url}/hook", ["call.ringing"], None)
    receiver.secrets.append(hook.secret)
    return pbx, hook


async def ring(http: httpx.AsyncClient, base: str, pbx, callid: str) -> None:
    answer = await http.post(f"{base}/hooks/cloudpbx/{pbx.id}", data={
        "cmd": "event", "type": "INCOMING", "callid": callid, "phone": KNOWN, "user": "andy",
        "crm_token": pbx.token})  # fmt: skip
    assert answer.status_code == 200


async def test_a_killed_server_delivers_after_restart_what_it_had_not(services, database_url, tmp_path):
    """Events queued, the receiver down, the server killed (SIGKILL): the next server delivers them, once each."""
    receiver = Receiver()
    with serve_app(receiver.app()) as url:
        pbx, hook = await a_hooked_pbx(services, receiver, url)
        receiver.answers = [503] * 100  # down until the kill
        env = {"outbound_allow": "127.0.0.1", "secret_key_file": str(tmp_path / "key")}
        with helpers.serve_process(database_url, tmp_path, **env) as (base, process):
            async with httpx.AsyncClient(timeout=10) as http:
                for n in range(3):
                    await ring(http, base, pbx, f"k{n}")
            await until(lambda: _tried(services, hook.id))  # and failed: the receiver is down
            process.kill()
        receiver.answers = []
        await _due_now(services)  # their next attempts (5 s, or 5 min after a second failure) brought forward
        with helpers.serve_process(database_url, tmp_path, **env):
            await until(lambda: asyncio.sleep(0, len(receiver.got) >= 3), seconds=30)
            await asyncio.sleep(1.0)
    assert sorted(d["data"]["pbx_call_id"] for d in receiver.got) == ["k0", "k1", "k2"]  # each once


async def _tried(services, webhook_id: int) -> bool:
    """Whether a delivery of this webhook was attempted."""
    async with services.db.read() as session:
        rows = await session.scalars(select(OutboxRequest).where(OutboxRequest.webhook_id == webhook_id))
        return any(r.attempts >= 1 for r in rows)
