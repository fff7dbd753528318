"""PostgreSQL: PBX events one process has in hand at once are applied as one batch (`flows.batches`), and leave
the calls, their legs and the journal as applying them one after another would."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from callbridge import flows
from callbridge.automation import Rules
from callbridge.domain.calls import CallEvent, Direction, EventKind
from callbridge.domain.pbx import Events
from callbridge.flows import events as event_flows
from callbridge.store import calls as call_store
from callbridge.store import directory, integrations
from callbridge.store import journal as journal_store
from callbridge.store.tables import ClientPhone

CALLS = [f"c{n}" for n in range(12)]


@pytest.fixture
async def pbxs(services, postgres):
    async with services.db.transaction() as session:
        await directory.add_employee(session, name="Андрей", pbx_login="andy")
        await directory.add_employee(session, name="Борис", pbx_login="boris")
        await directory.add_client(session, name="Рога и копыта", phones=["+79161234567"])
        batched = (await integrations.add_integration(session, kind="cloudpbx", name="batched", settings={})).id
        alone = (await integrations.add_integration(session, kind="cloudpbx", name="alone", settings={})).id
    return batched, alone


def waves(start: datetime) -> list[list[tuple[EventKind, str, str]]]:
    """What a PBX posts in three moments: every call rings; some ring a second phone or are answered (a call may
    get both at once); every call ends. Some requests come twice, as PBXs repeat themselves."""
    ringing = [(EventKind.RING, key, "andy") for key in CALLS]
    second = [(EventKind.RING, key, "boris") for n, key in enumerate(CALLS) if n % 2 == 0]
    second += [(EventKind.ANSWER, key, "andy") for n, key in enumerate(CALLS) if n % 3 == 0]
    ending = [(EventKind.END, key, "andy" if n % 3 == 0 else "") for n, key in enumerate(CALLS)]
    return [wave + [request for request in wave if int(request[1][1:]) % 4 == 1] for wave in (ringing, second, ending)]


def request(kind: EventKind, key: str, employee: str, at: datetime) -> tuple[dict[str, str], Events]:
    event = CallEvent(kind=kind, call_key=key, at=at, employee=employee or None, phone="+79161234567")
    params = {"k": kind.value, "key": key, "employee": employee, "at": at.isoformat()}
    return params, Events("event", key, [event])


async def what_is_kept(services, integration_id: int) -> dict:
    found = {}
    async with services.db.read() as session:
        for key in CALLS:
            call = await call_store.get_call(session, await call_store.find_call(session, integration_id, key))
            legs = (await call_store.legs_of(session, [call.id]))[call.id]
            journal = await journal_store.journal_of_call(session, integration_id, key)
            found[key] = (
                (call.state, call.result, call.started_at, call.answered_at, call.ended_at, call.talk_seconds,
                 call.wait_seconds, call.employee_id, call.client_id, call.sequence),
                sorted((leg.employee_key, leg.state, leg.employee_id, leg.rang_at, leg.ended_at) for leg in legs),
                sorted((entry.status, entry.repeats, entry.params["k"]) for entry in journal),
            )  # fmt: skip
    return found


async def test_events_applied_in_batches_leave_what_one_after_another_would(services, pbxs):
    batched, alone = pbxs
    start = datetime.now(UTC).replace(microsecond=0)
    outcomes = {"batched": [], "alone": []}
    for moment, wave in enumerate(waves(start)):
        at = start + timedelta(seconds=10 * moment)
        outcomes["batched"] += await asyncio.gather(*(flows.ingest(services, batched, *request(kind, key, who, at))
                                                      for kind, key, who in wave))  # fmt: skip
        for kind, key, who in wave:
            outcomes["alone"].append(await event_flows.ingest_one(services, alone, *request(kind, key, who, at)))
    assert services.event_batches is not None  # the events above went through batches
    answers = {how: [(o.duplicate, o.failed) for o in found] for how, found in outcomes.items()}
    assert answers["batched"] == answers["alone"]
    repeats = sum(len(wave) - len(set(wave)) for wave in waves(start))
    assert repeats and sum(o.duplicate for o in outcomes["batched"]) == repeats  # each request applied once
    kept = await what_is_kept(services, batched)
    assert kept == await what_is_kept(services, alone)
    assert {state for (state, *_), _, _ in kept.values()} == {"ended"}
    assert kept["c0"][0][1] == "answered" and kept["c1"][0][1] == "missed"


async def test_a_request_journaled_as_failed_is_applied_when_it_comes_again(services, pbxs):
    batched, _ = pbxs
    at = datetime.now(UTC)
    params, command = request(EventKind.RING, "f1", "andy", at)
    async with services.db.transaction() as session:
        entry = await journal_store.journal(session, integration_id=batched, params=params, command="event",
                                            dedupe_key=journal_store.dedupe_key(params), call_key="f1",
                                            status="failed", error="the store was down")  # fmt: skip
    outcome = await flows.ingest(services, batched, params, command)  # the PBX repeats it: the usual way
    assert outcome.journal_id == entry.id and not outcome.duplicate and not outcome.failed
    async with services.db.read() as session:
        (kept,) = await journal_store.journal_of_call(session, batched, "f1")
        call = await call_store.get_call(session, await call_store.find_call(session, batched, "f1"))
    assert kept.status == "applied" and call.state == "ringing"


async def test_calls_of_one_unknown_number_in_a_batch_get_the_one_client_its_rules_make(services, pbxs):
    """The first call's rules make a lead for the number; the second call, saved in the same batch before that,
    is linked to it as if saved after, instead of its rules making a second one (which the database refuses)."""
    batched, _ = pbxs
    await flows.set_rules(services, batched, Rules(leads_for_missed_unknown=True))
    unknown, at = "+79990001122", datetime.now(UTC)

    async def wave(kind: EventKind, employee: str) -> None:
        posted = []
        for key in ("u1", "u2"):
            event = CallEvent(kind=kind, call_key=key, at=at, employee=employee or None, phone=unknown,
                              direction=Direction.IN)
            params = {"k": kind.value, "key": key, "employee": employee, "at": at.isoformat()}
            posted.append(flows.ingest(services, batched, params, Events("event", key, [event])))
        assert not any(outcome.failed for outcome in await asyncio.gather(*posted))

    await wave(EventKind.RING, "andy")
    await wave(EventKind.END, "")  # both missed at once: a lead for the number
    async with services.db.read() as session:
        calls = [await call_store.get_call(session, await call_store.find_call(session, batched, key))
                 for key in ("u1", "u2")]  # fmt: skip
        owners = list(await session.scalars(select(ClientPhone.client_id).where(ClientPhone.e164 == unknown)))
    assert [(c.result, c.problem) for c in calls] == [("missed", None), ("missed", None)]
    assert owners == [calls[0].client_id] == [calls[1].client_id]
