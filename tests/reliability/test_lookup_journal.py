"""Caller lookups are journaled in batches by every worker; two workers' batches of the same repeated lookups."""

from __future__ import annotations

import asyncio

from sqlalchemy import select, text

from callbridge.store import Database, integrations
from callbridge.store import journal as journal_store
from callbridge.store.tables import InboundRequest


def answered(integration_id: int, phone: str) -> dict:
    params = {"cmd": "contact", "callid": "b", "phone": phone}
    return {"integration_id": integration_id, "dedupe_key": journal_store.dedupe_key(params), "command": "contact",
            "params": params, "status": "answered"}  # fmt: skip


async def test_two_workers_batches_of_the_same_lookups_in_another_order_do_not_deadlock(postgres):
    """The first worker's batch holds one lookup when the second's, in the other order, comes for both: the second
    waits for the first lookup only, and both commit (without an order of their own, each would hold what the other
    wants, and PostgreSQL would fail one of them after a second)."""
    first, second = Database(postgres), Database(postgres)
    try:
        async with first.transaction() as session:
            await session.execute(text("TRUNCATE integrations CASCADE"))
            integration_id = (await integrations.add_integration(session, kind="cloudpbx", name="PBX", settings={})).id
        one, two = answered(integration_id, "+79160000001"), answered(integration_id, "+79160000002")
        if one["dedupe_key"] > two["dedupe_key"]:
            one, two = two, one  # `one` comes first in key order

        async def second_batch() -> None:
            async with second.transaction() as session:
                await journal_store.journal_many(session, [two, one])

        async with first.transaction() as session:
            await journal_store.journal_many(session, [one])
            waiting = asyncio.create_task(second_batch())
            await asyncio.sleep(0.3)  # it takes what it can and waits for `one`
            await journal_store.journal_many(session, [two])
        await waiting
        async with first.read() as session:
            repeats = dict((await session.execute(select(InboundRequest.params["phone"].as_string(),
                                                         InboundRequest.repeats))).all())  # fmt: skip
        assert repeats == {"+79160000001": 1, "+79160000002": 1}  # each journaled once, the other batch's counted
    finally:
        await first.close()
        await second.close()
