"""Flows that outlive one request: calls the PBX never finishes, failures kept, live call cards."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import text

from callbridge import flows
from callbridge.domain.calls import CallEvent, Direction, EventKind
from callbridge.domain.pbx import Events
from callbridge.store import calls as call_store
from callbridge.store import directory, integrations
from callbridge.store import journal as journal_store


@pytest.fixture
async def integration_id(services):
    async with services.db.transaction() as session:
        await directory.add_employee(session, name="Андрей", pbx_login="andy")
        return (await integrations.add_integration(session, kind="cloudpbx", name="PBX", settings={})).id


async def post(services, integration_id, kind, key, at, employee="andy", **extra):
    event = CallEvent(kind=kind, call_key=key, at=at, employee=employee, **extra)
    params = {"k": kind.value, "key": key, "employee": employee or "", "at": at.isoformat()}
    return await flows.ingest(services, integration_id, params, Events("event", key, [event]))


async def call_row(services, call_id):
    async with services.db.read() as session:
        return await call_store.get_call(session, call_id)


async def test_a_missed_call_without_completion_is_closed_by_the_sweeper(services, integration_id):
    start = datetime.now(UTC)
    outcome = await post(
        services, integration_id, EventKind.RING, "m1", start, direction=Direction.IN, phone="+79101234567"
    )
    await post(services, integration_id, EventKind.LEG_END, "m1", start + timedelta(seconds=20))
    still_ringing = await post(services, integration_id, EventKind.RING, "r1", start, employee="andy")
    settle = services.settings.settle_seconds

    assert await flows.close_stale_calls(services, start + timedelta(seconds=settle - 5)) == 0
    closed = await flows.close_stale_calls(services, datetime.now(UTC) + timedelta(seconds=settle + 1))
    assert closed == 1
    row = await call_row(services, outcome.call_ids[0])
    assert (row.state, row.result) == ("ended", "missed")
    assert row.ended_at == start + timedelta(seconds=20) and row.wait_seconds == 20
    assert (await call_row(services, still_ringing.call_ids[0])).state == "ringing"  # its phone still rings

    abandon = services.settings.abandon_seconds
    assert await flows.close_stale_calls(services, datetime.now(UTC) + timedelta(seconds=abandon + 1)) == 1
    assert (await call_row(services, still_ringing.call_ids[0])).result == "missed"


async def test_a_late_completion_still_merges_after_the_sweeper(services, integration_id):
    start = datetime.now(UTC) - timedelta(hours=1)
    outcome = await post(services, integration_id, EventKind.RING, "m2", start, direction=Direction.IN)
    await post(services, integration_id, EventKind.LEG_END, "m2", start + timedelta(seconds=5))
    await flows.close_stale_calls(services, datetime.now(UTC))
    await post(services, integration_id, EventKind.END, "m2", start + timedelta(seconds=9), employee=None)
    row = await call_row(services, outcome.call_ids[0])
    assert row.result == "missed" and row.ended_at == start + timedelta(seconds=9)


async def test_a_request_that_fails_to_apply_is_journaled_as_failed(services, integration_id):
    outside = "call_legs_away"
    async with services.db.transaction() as session:
        await session.execute(text(f"ALTER TABLE call_legs RENAME TO {outside}"))
    try:
        outcome = await post(services, integration_id, EventKind.RING, "f1", datetime.now(UTC))
    finally:
        async with services.db.transaction() as session:
            await session.execute(text(f"ALTER TABLE {outside} RENAME TO call_legs"))
    assert outcome.failed and "call_legs" in outcome.failed
    async with services.db.read() as session:
        (entry,) = await journal_store.journal_of_call(session, integration_id, "f1")
    assert entry.status == "failed" and "call_legs" in entry.error
    # the PBX repeats itself: this time the store works and the same request is applied
    again = await post(services, integration_id, EventKind.RING, "f1", datetime.fromisoformat(entry.params["at"]))
    assert not again.failed and not again.duplicate
    async with services.db.read() as session:
        (entry,) = await journal_store.journal_of_call(session, integration_id, "f1")
    assert entry.status == "applied" and entry.error is None


async def read_events(lines, count: int) -> list[dict]:
    found = []
    async for line in lines:
        if line.startswith("data: "):
            found.append(json.loads(line[6:]))
            if len(found) == count:
                return found
    return found


async def test_live_stream_shows_and_hides_call_cards(services, server):
    async with services.db.transaction() as session:
        key = await integrations.add_api_key(session, "live")
        pbx = await integrations.add_integration(session, kind="cloudpbx", name="PBX", settings={})
    hook = f"{server}/hooks/cloudpbx/{pbx.id}"
    base = {"phone": "79101234567", "callid": "L1", "crm_token": pbx.token, "cmd": "event"}
    async with httpx.AsyncClient(timeout=10) as http:
        async with http.stream("GET", f"{server}/api/live", headers={"Authorization": f"Bearer {key}"}) as stream:
            lines = stream.aiter_lines()
            assert await anext(lines) == ": connected"
            for user in ("andy", "mike"):
                await http.post(hook, data=base | {"type": "INCOMING", "user": user})
            shown = await asyncio.wait_for(read_events(lines, 3), 5)
            assert [(m["type"], m.get("employee")) for m in shown] == [
                ("CallOpened", None),
                ("CardShown", "andy"),
                ("CardShown", "mike"),
            ]
            await http.post(hook, data=base | {"type": "ACCEPTED", "user": "mike"})
            answered = await asyncio.wait_for(read_events(lines, 3), 5)
    assert {(m["type"], m.get("employee"), m.get("leg_state")) for m in answered} == {
        ("CardHidden", "andy", "cancelled"),
        ("CardHidden", "mike", "answered"),
        ("CallAnswered", "mike", None),
    }
    assert {m["call_id"] for m in shown + answered} == {shown[0]["call_id"]}


async def test_a_pbx_user_key_names_an_employee_by_own_id_then_login_then_extension(services, integration_id):
    async with services.db.transaction() as session:
        by_extension = await directory.add_employee(session, name="Extension 101", extension="101")
        by_login = await directory.add_employee(session, name="Login 101", pbx_login="101", extension="555")
    async with services.db.read() as session:
        assert await directory.employee_by_key(session, "101") == by_login.id  # a login beats an extension
        assert await directory.employee_by_key(session, "555") == by_login.id
        assert await directory.employee_by_key(session, f"id:{by_extension.id}") == by_extension.id
        assert await directory.employee_by_key(session, "id:99999") is None
        assert await directory.employee_by_key(session, "id:9999999999999") is None  # not an id we could have
        assert await directory.employee_by_key(session, "nobody") is None
    at = datetime.now(UTC)
    outcome = await post(services, integration_id, EventKind.RING, "keys", at, employee="101")
    await post(services, integration_id, EventKind.RING, "keys", at, employee="nobody")
    await post(services, integration_id, EventKind.ANSWER, "keys", at + timedelta(seconds=2), employee="101")
    (call_id,) = outcome.call_ids
    assert (await call_row(services, call_id)).employee_id == by_login.id
    async with services.db.read() as session:
        legs = (await call_store.legs_of(session, [call_id]))[call_id]
    assert {leg.employee_key: leg.employee_id for leg in legs} == {"101": by_login.id, "nobody": None}
