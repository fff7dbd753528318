"""CRM automations end to end through the cloudpbx dialect: each scenario once, then replayed twice and
shuffled, must leave the same tasks, clients, contact records and call links."""

from __future__ import annotations

import asyncio
import json
import random
from datetime import UTC, datetime

import httpx
import pytest
from sqlalchemy import delete, select

from callbridge import flows
from callbridge.automation import Rules
from callbridge.store import directory, integrations
from callbridge.store.tables import (
    CallRow,
    Client,
    ClientPhone,
    Deal,
    Employee,
    InboundRequest,
    Interaction,
    LegRow,
    Recording,
    Task,
)

from ..helpers import live_listener

KNOWN = "79101234567"  # Рога и копыта, responsible: andy
UNKNOWN = "79995550000"
ALL_ON = dict(record_interactions=True, add_to_last_deal=True, missed_call_tasks=True, leads_for_missed_unknown=True,
              clients_for_outgoing_unknown=True)  # fmt: skip


def ev(kind: str, call: str, user: str | None = None, phone: str = KNOWN) -> dict[str, str]:
    return {"cmd": "event", "type": kind, "callid": call, "phone": phone} | ({"user": user} if user else {})


def history(call: str, status: str, start: str, phone: str = KNOWN, user: str = "andy", kind: str = "in") -> dict:
    return {"cmd": "history", "type": kind, "status": status, "phone": phone, "user": user, "callid": call,
            "duration": "30", "start": start}  # fmt: skip


SCENARIOS = {
    "missed_known": [ev("INCOMING", "m1", "andy"), ev("INCOMING", "m1", "mike"), ev("COMPLETED", "m1")],
    "missed_unknown": [ev("INCOMING", "u1", "andy", UNKNOWN), ev("COMPLETED", "u1", phone=UNKNOWN)],
    "answered_known": [ev("INCOMING", "a1", "andy"), ev("ACCEPTED", "a1", "andy"), ev("COMPLETED", "a1", "andy")],
    "outgoing_unknown": [
        ev("OUTGOING", "o1", "mike", UNKNOWN),
        ev("ACCEPTED", "o1", "mike", UNKNOWN),
        ev("COMPLETED", "o1", "mike", UNKNOWN),
    ],  # fmt: skip
    "unmapped_employee": [
        ev("INCOMING", "x1", "temp_worker"),
        ev("ACCEPTED", "x1", "temp_worker"),
        ev("COMPLETED", "x1", "temp_worker"),
    ],  # fmt: skip
    "answered_after_end": [ev("INCOMING", "l1", "andy"), ev("COMPLETED", "l1"), ev("ACCEPTED", "l1", "andy")],
    "reached_later": [history("r1", "Missed", "20261124T090000Z"), history("r2", "Success", "20261124T100000Z")],
    "reached_later_unknown": [
        history("r3", "Missed", "20261124T090000Z", phone=UNKNOWN),
        history("r4", "Success", "20261124T093000Z", phone=UNKNOWN, kind="out"),
    ],  # fmt: skip
}


class World:
    """Employees stay; clients, deals, calls and tasks are laid anew for every pass."""

    def __init__(self, services, server: str, http: httpx.AsyncClient) -> None:
        self.services, self.server, self.http = services, server, http

    async def employees(self) -> None:
        async with self.services.db.transaction() as session:
            self.people = {}
            for login, name in (("andy", "Андрей"), ("mike", "Михаил"), ("boss", "Старший"), ("other", "Прочие")):
                self.people[login] = (await directory.add_employee(session, name=name, pbx_login=login)).id

    async def fresh_pass(self, **rules) -> None:
        async with self.services.db.transaction() as session:
            for table in (Interaction, Task, Recording, LegRow, InboundRequest, CallRow, Deal, ClientPhone, Client):
                await session.execute(delete(table))
            client = await directory.add_client(session, name="Рога и копыта", phones=["+" + KNOWN],
                                                responsible_id=self.people["andy"])  # fmt: skip
            await directory.add_deal(session, client_id=client.id, title="Старая сделка", status="closed")
            await directory.add_deal(session, client_id=client.id, title="Поставка копыт", status="active")
            for_unknown = await directory.add_client(session, name="Для неизвестных", phones=[])
            row = await integrations.add_integration(session, kind="cloudpbx", name="PBX", settings={})
        self.hook, self.token = f"{self.server}/hooks/cloudpbx/{row.id}", row.token
        if rules.get("unknown_numbers_client_id") == "for_unknown":
            rules["unknown_numbers_client_id"] = for_unknown.id
        await flows.set_rules(self.services, row.id, Rules(**rules))

    async def post(self, params: dict[str, str]) -> None:
        response = await self.http.post(self.hook, data=params | {"crm_token": self.token})
        assert response.status_code == 200, response.text

    async def crm(self) -> dict:
        """The CRM as a person would describe it: names, not ids."""
        async with self.services.db.read() as session:
            names = {e.id: e.name for e in await session.scalars(select(Employee))}
            clients = {c.id: c for c in await session.scalars(select(Client))}
            deals = {d.id: d.title for d in await session.scalars(select(Deal))}
            calls = list(await session.scalars(select(CallRow)))
            by_id = {c.id: c.pbx_call_id for c in calls}
            tasks = list(await session.scalars(select(Task)))
            records = list(await session.scalars(select(Interaction)))
            phones = {(p.client_id, p.e164) for p in await session.scalars(select(ClientPhone))}
        return {
            "clients": sorted(
                (c.name, c.kind, names.get(c.responsible_id), sorted(p for i, p in phones if i == c.id))
                for c in clients.values()
            ),  # fmt: skip
            "calls": sorted(
                (
                    c.pbx_call_id,
                    c.result,
                    names.get(c.employee_id),
                    getattr(clients.get(c.client_id), "name", None),
                    deals.get(c.deal_id),
                )
                for c in calls
            ),  # fmt: skip
            "tasks": sorted(
                (
                    t.title,
                    t.status,
                    names.get(t.employee_id),
                    getattr(clients.get(t.client_id), "name", None),
                    by_id.get(t.call_id),
                )
                for t in tasks
            ),  # fmt: skip
            "records": sorted(
                (
                    by_id[r.call_id],
                    clients[r.client_id].name,
                    deals.get(r.deal_id),
                    names.get(r.employee_id),
                    r.direction,
                    r.result,
                )
                for r in records
            ),  # fmt: skip
        }


@pytest.fixture
async def world(services, server):
    async with httpx.AsyncClient(timeout=10) as http:
        world = World(services, server, http)
        await world.employees()
        yield world


async def clean_and_replayed(world: World, requests: list[dict], **rules) -> tuple[dict, dict]:
    await world.fresh_pass(**rules)
    for params in requests:
        await world.post(params)
    clean = await world.crm()
    await world.fresh_pass(**rules)
    replay = requests * 2
    random.Random(json.dumps(requests)).shuffle(replay)
    for params in replay:
        await world.post(params)
    return clean, await world.crm()


def rules_for(world: World) -> dict:
    return ALL_ON | {"senior_manager_id": world.people["boss"], "listed_employee_ids": [world.people["mike"]],
                     "default_employee_id": world.people["other"]}  # fmt: skip


@pytest.mark.parametrize("name", [n for n in SCENARIOS if not n.startswith("reached_later")])
async def test_each_scenario_replayed_twice_and_shuffled_ends_the_same(world, name):
    clean, replayed = await clean_and_replayed(world, SCENARIOS[name], **rules_for(world))
    assert replayed == clean
    EXPECTED[name](clean)


@pytest.mark.parametrize("name", ["reached_later", "reached_later_unknown"])
async def test_reached_later_in_any_order(world, name):
    clean, replayed = await clean_and_replayed(world, SCENARIOS[name], **rules_for(world))
    assert replayed == clean
    (task,) = clean["tasks"]
    assert task[1] == "done"  # the client was reached after the missed call


def expect_missed_known(crm):
    assert crm["tasks"] == [("Пропущенный звонок: +7 910 123-45-67", "open", "Андрей", "Рога и копыта", "m1")]
    assert crm["calls"] == [("m1", "missed", "Андрей", "Рога и копыта", "Поставка копыт")] or \
        crm["calls"] == [("m1", "missed", "Михаил", "Рога и копыта", "Поставка копыт")]  # fmt: skip
    assert [r[:3] for r in crm["records"]] == [("m1", "Рога и копыта", "Поставка копыт")]


def expect_missed_unknown(crm):
    lead = ("Лид +7 999 555-00-00", "lead", "Старший", ["+79995550000"])
    assert lead in crm["clients"]
    assert crm["tasks"] == [("Пропущенный звонок: +7 999 555-00-00", "open", "Старший", "Лид +7 999 555-00-00", "u1")]


def expect_answered_known(crm):
    assert crm["tasks"] == []
    assert crm["calls"] == [("a1", "answered", "Андрей", "Рога и копыта", "Поставка копыт")]
    assert crm["records"] == [("a1", "Рога и копыта", "Поставка копыт", "Андрей", "in", "answered")]


def expect_outgoing_unknown(crm):
    assert ("+7 999 555-00-00", "client", "Михаил", ["+79995550000"]) in crm["clients"]
    assert crm["calls"] == [("o1", "answered", "Михаил", "+7 999 555-00-00", None)]
    assert crm["tasks"] == []


def expect_unmapped_employee(crm):
    assert crm["calls"] == [("x1", "answered", "Прочие", "Рога и копыта", "Поставка копыт")]


def expect_answered_after_end(crm):
    assert crm["tasks"] == [] and crm["calls"][0][1] == "answered"
    assert not any(kind == "lead" for _, kind, *_ in crm["clients"])


EXPECTED = {
    "missed_known": expect_missed_known,
    "missed_unknown": expect_missed_unknown,
    "answered_known": expect_answered_known,
    "outgoing_unknown": expect_outgoing_unknown,
    "unmapped_employee": expect_unmapped_employee,
    "answered_after_end": expect_answered_after_end,
}


async def test_without_rules_nothing_is_created(world):
    clean, _ = await clean_and_replayed(world, SCENARIOS["missed_unknown"] + SCENARIOS["outgoing_unknown"])
    assert clean["tasks"] == [] and clean["records"] == []
    assert [c[0] for c in clean["clients"]] == ["Для неизвестных", "Рога и копыта"]


async def test_unknown_numbers_go_to_one_fixed_client(world):
    rules = {"record_interactions": True, "unknown_numbers_client_id": "for_unknown"}
    requests = SCENARIOS["missed_unknown"] + SCENARIOS["outgoing_unknown"]
    clean, replayed = await clean_and_replayed(world, requests, **rules)
    assert replayed == clean
    assert [c[0] for c in clean["clients"]] == ["Для неизвестных", "Рога и копыта"]  # no new client
    assert [(r[0], r[1], r[5]) for r in clean["records"]] == [("o1", "Для неизвестных", "answered"),
                                                               ("u1", "Для неизвестных", "missed")]  # fmt: skip


async def test_a_task_closed_by_hand_stays_closed(world, services):
    await world.fresh_pass(**rules_for(world))
    for params in SCENARIOS["missed_known"]:
        await world.post(params)
    async with services.db.transaction() as session:
        (task,) = await session.scalars(select(Task))
        task.status = "done"
    await world.post(ev("CANCELLED", "m1", "mike"))  # more news about the same call
    assert (await world.crm())["tasks"][0][1] == "done"


async def test_a_missed_call_s_task_is_due_when_the_rules_say(world, services):
    await world.fresh_pass(**rules_for(world), missed_call_due_minutes=15)
    await world.post(history("d1", "Missed", "20261124T090000Z"))  # ended at 09:00:30 UTC (30 s of ringing)
    async with services.db.read() as session:
        (task,) = await session.scalars(select(Task))
    assert task.due_at == datetime(2026, 11, 24, 9, 15, 30, tzinfo=UTC)
    async with services.db.read() as session:
        open_first, _ = await directory.list_tasks(session, status="open")
    assert [t.id for t in open_first] == [task.id]


async def test_turning_the_rules_off_keeps_what_they_made(world, services):
    await world.fresh_pass(**rules_for(world))
    for params in SCENARIOS["missed_unknown"]:
        await world.post(params)
    made = await world.crm()
    assert made["tasks"] and made["records"] and any(c[1] == "lead" for c in made["clients"])
    key = await _api_key(services)
    async with httpx.AsyncClient(base_url=world.server, headers={"Authorization": f"Bearer {key}"}) as api:
        off = await api.put(f"/api/integrations/{world.hook.rsplit('/', 1)[1]}/automation", json=Rules().model_dump())
        assert off.status_code == 200
    await world.post(history("u1", "Missed", "20261124T090000Z", phone=UNKNOWN))  # the call's summary comes later
    assert await world.crm() == made


async def test_card_goes_only_to_the_responsible_manager(world, services):
    await world.fresh_pass(notify_responsible_only=True, listed_employee_ids=[world.people["boss"]])
    key = await _api_key(services)
    got: dict[str, list] = {login: [] for login in ("andy", "mike", "boss")}
    listeners = [
        await live_listener(world.http, f"{world.server}/api/live?employee_id={world.people[login]}", key, got[login])
        for login in got
    ]
    await world.post(ev("INCOMING", "c1", "mike"))  # a known client: andy is responsible, mike's phone rings
    await world.post(ev("INCOMING", "c2", "mike", UNKNOWN))  # unknown: the one whose phone rang
    await world.post(ev("INCOMING", "c3", "nobody_mapped", UNKNOWN))  # nobody: the listed employees
    await world.post(ev("INCOMING", "c4"))  # a ring that names no employee, from a known client: andy
    await world.post(ev("INCOMING", "c5", phone=UNKNOWN))  # ... from an unknown number: the listed employees
    await asyncio.sleep(0.5)
    for task in listeners:
        task.cancel()
    shown = {
        login: sorted(m["call_id"] for m in messages if m["type"] == "CardShown") for login, messages in got.items()
    }
    calls = {c[0]: c for c in (await world.crm())["calls"]}
    assert len(calls) == 5
    assert len(shown["andy"]) == 2 and len(shown["mike"]) == 1 and len(shown["boss"]) == 2
    assert len({*shown["andy"], *shown["mike"], *shown["boss"]}) == 5


async def _api_key(services) -> str:
    async with services.db.transaction() as session:
        return await integrations.add_api_key(session, "live")


async def test_lookup_routes_around_an_away_manager(world, services):
    await world.fresh_pass(routing_fallback_employee_id=world.people["mike"])
    contact = {"cmd": "contact", "phone": KNOWN, "crm_token": world.token}
    assert (await world.http.post(world.hook, data=contact)).json()["responsible"] == "andy"
    async with services.db.transaction() as session:
        await directory.update_employee(session, world.people["andy"], away=True)
    assert (await world.http.post(world.hook, data=contact)).json() == {
        "contact_name": "Рога и копыта", "responsible": "mike"}  # fmt: skip
    async with services.db.transaction() as session:
        await directory.update_employee(session, world.people["mike"], away=True)
    assert (await world.http.post(world.hook, data=contact)).json() == {"contact_name": "Рога и копыта"}


async def test_rules_through_the_api(world, services):
    key = await _api_key(services)
    await world.fresh_pass()
    api = httpx.AsyncClient(base_url=world.server, headers={"Authorization": f"Bearer {key}"})
    (integration,) = [i for i in (await api.get("/api/integrations")).json() if world.hook.endswith(f"/{i['id']}")]
    url = f"/api/integrations/{integration['id']}/automation"
    assert (await api.get(url)).json() == Rules().model_dump()
    put = await api.put(url, json={"missed_call_tasks": True, "listed_employee_ids": [world.people["mike"]]})
    assert put.status_code == 200 and put.json()["missed_call_tasks"] is True
    for params in SCENARIOS["missed_unknown"]:  # the server applies the new rules at once
        await world.post(params)
    assert [t[2] for t in (await world.crm())["tasks"]] == ["Михаил"]
    assert (await api.put(url, json={"missed_call_tasks": "maybe"})).status_code == 422
    assert (await api.put("/api/integrations/999999/automation", json={})).status_code == 404
    assert (await api.get("/api/integrations/999999/automation")).status_code == 404
    away = await api.patch(f"/api/employees/{world.people['andy']}", json={"away": True})
    assert away.status_code == 200 and away.json()["away"] is True
    assert (await api.patch("/api/employees/999999", json={"away": True})).status_code == 404
    await api.aclose()
