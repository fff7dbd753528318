"""PostgreSQL transactions under way together in one process share a commit (`Database.shared_transaction`)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from sqlalchemy import text, update

from callbridge.app import build_services
from callbridge.domain.calls import EventKind
from callbridge.store import Database, directory, integrations
from callbridge.store import calls as call_store
from callbridge.store import journal as journal_store
from callbridge.store.postgres import SharedTransactionFailed
from callbridge.store.tables import CallRow

from ..conftest import settings_for
from ..integration.test_flows import call_row, post


@pytest.fixture
async def db(postgres):
    db = Database(postgres)
    async with db.transaction() as session:
        await session.execute(text("TRUNCATE employees, integrations CASCADE"))
    yield db
    await db.close()


async def logins(db: Database) -> set[str]:
    async with db.read() as session:
        return {e.pbx_login for e in await directory.list_employees(session)}


async def test_transactions_under_way_together_share_one_commit_and_each_is_durable_when_it_returns(db):
    async def write(n: int) -> tuple[int, bool]:
        async with db.shared_transaction() as session:
            await directory.add_employee(session, name=f"e{n}", pbx_login=f"e{n}")
            txid = await session.scalar(text("SELECT txid_current()"))
        return txid, f"e{n}" in await logins(db)  # another connection sees it once it returned

    written = await asyncio.gather(*(write(n) for n in range(20)))
    assert len({txid for txid, _ in written}) == 1  # one database transaction for all twenty
    assert all(seen for _, seen in written)
    alone, _ = await write(20)
    assert alone != written[0][0]  # nobody else under way: a transaction of its own


async def test_one_that_fails_fails_those_it_shared_with_and_none_of_them_is_committed(db):
    async def write(n: int) -> str:
        async with db.shared_transaction() as session:
            await directory.add_employee(session, name=f"e{n}", pbx_login=f"e{n}")
            if n == 4:
                raise ValueError("this one is wrong")
        return "kept"

    outcomes = await asyncio.gather(*(write(n) for n in range(10)), return_exceptions=True)
    assert [type(o) for o in outcomes[:5]] == [SharedTransactionFailed] * 4 + [ValueError]
    assert outcomes[5:] == ["kept"] * 5  # those queued behind the failure share another commit
    assert await logins(db) == {f"e{n}" for n in range(5, 10)}


async def test_pbx_events_whose_shared_commit_failed_are_applied_alone(services, postgres):
    """One event the database refuses (a trigger here) fails only itself: the events it shared a commit with are
    applied again alone, and it is journaled as failed."""
    async with services.db.transaction() as session:
        integration_id = (await integrations.add_integration(session, kind="cloudpbx", name="PBX", settings={})).id
        await session.execute(text("""
            CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF NEW.pbx_call_id = 'poison' THEN RAISE EXCEPTION 'refused by the database'; END IF;
                RETURN NEW;
            END $$"""))  # fmt: skip
        await session.execute(text("CREATE TRIGGER refuse_poison BEFORE INSERT ON calls FOR EACH ROW "
                                   "EXECUTE FUNCTION refuse_poison()"))  # fmt: skip
    try:
        now = datetime.now(UTC)
        keys = [f"c{n}" for n in range(8)] + ["poison"]
        outcomes = await asyncio.gather(*(post(services, integration_id, EventKind.RING, key, now) for key in keys))
    finally:
        async with services.db.transaction() as session:
            await session.execute(text("DROP TRIGGER refuse_poison ON calls"))
            await session.execute(text("DROP FUNCTION refuse_poison()"))
    *good, poison = outcomes
    assert all(o.failed is None and len(o.call_ids) == 1 for o in good)
    assert [(await call_row(services, o.call_ids[0])).state for o in good] == ["ringing"] * 8
    assert "refused by the database" in poison.failed
    async with services.db.read() as session:
        (entry,) = await journal_store.journal_of_call(session, integration_id, "poison")
    assert entry.status == "failed"


async def test_shared_transactions_of_two_processes_waiting_for_each_other_give_up_quickly(db, postgres):
    """Two workers' shares each hold a call the other one wants: they give up at their lock timeout (to be run again
    alone), long before PostgreSQL would look for a deadlock."""
    other = Database(postgres)  # the other worker
    async with db.transaction() as session:
        integration_id = (await integrations.add_integration(session, kind="cloudpbx", name="PBX", settings={})).id
    both_hold = asyncio.Barrier(2)

    async def share(database: Database, first: str, then: str) -> str:
        async with database.shared_transaction() as session:
            await call_store.lock_call(session, integration_id, first)
            await both_hold.wait()
            await call_store.lock_call(session, integration_id, then)
        return "committed"

    try:
        outcomes = await asyncio.gather(share(db, "x", "y"), share(other, "y", "x"), return_exceptions=True)
    finally:
        await other.close()
    assert {type(o) for o in outcomes} <= {str, asyncpg.LockNotAvailableError}  # not DeadlockDetectedError
    assert outcomes.count("committed") < 2


async def test_a_call_that_exists_is_locked_until_the_first_commits_and_the_second_reads_what_it_wrote(db):
    async with db.transaction() as session:
        integration_id = (await integrations.add_integration(session, kind="cloudpbx", name="PBX", settings={})).id
        await call_store.lock_call(session, integration_id, "c")  # made
    first_holds = asyncio.Event()

    async def first() -> None:
        async with db.transaction() as session:
            await call_store.lock_call(session, integration_id, "c")  # found
            first_holds.set()
            await asyncio.sleep(0.3)
            await session.execute(update(CallRow).where(CallRow.pbx_call_id == "c").values(problem="first's"))

    async def second() -> str | None:
        await first_holds.wait()
        async with db.transaction() as session:
            return (await call_store.lock_call(session, integration_id, "c")).problem

    _, seen = await asyncio.gather(first(), second())
    assert seen == "first's"


async def test_two_workers_given_events_of_the_same_calls_at_once_apply_every_one(services, postgres, tmp_path):
    """Workers' shares wanting each other's calls (the second one takes them in the opposite order) give up and
    run again alone: every event is applied once, to the one row of its call."""
    other = build_services(settings_for(postgres, tmp_path))  # the other worker
    async with services.db.transaction() as session:
        integration_id = (await integrations.add_integration(session, kind="cloudpbx", name="PBX", settings={})).id
    now = datetime.now(UTC)
    keys = [f"x{n}" for n in range(20)]
    try:
        outcomes = await asyncio.gather(
            *(post(services, integration_id, EventKind.RING, key, now) for key in keys),
            *(post(other, integration_id, EventKind.ANSWER, key, now + timedelta(seconds=3)) for key in keys[::-1]),
        )
    finally:
        await other.close()
    rung, answered = outcomes[: len(keys)], outcomes[len(keys) :][::-1]
    assert all(o.failed is None and not o.duplicate for o in outcomes)
    assert [r.call_ids for r in rung] == [a.call_ids for a in answered]
    assert {(await call_row(services, r.call_ids[0])).state for r in rung} == {"talking"}


async def test_two_workers_given_events_of_calls_that_exist_at_once_lose_neither(services, postgres, tmp_path):
    """A call that exists is locked before its facts are read: of an answer and an end that two workers apply to it
    at the same moment, the second waits for the first and folds into what it wrote (neither is overwritten)."""
    other = build_services(settings_for(postgres, tmp_path))  # the other worker
    async with services.db.transaction() as session:
        integration_id = (await integrations.add_integration(session, kind="cloudpbx", name="PBX", settings={})).id
    now = datetime.now(UTC)
    keys = [f"e{n}" for n in range(20)]
    rung = [await post(services, integration_id, EventKind.RING, key, now) for key in keys]
    try:
        await asyncio.gather(
            *(post(services, integration_id, EventKind.ANSWER, key, now + timedelta(seconds=3)) for key in keys),
            *(post(other, integration_id, EventKind.END, key, now + timedelta(seconds=30)) for key in keys[::-1]),
        )
    finally:
        await other.close()
    calls = [await call_row(services, r.call_ids[0]) for r in rung]
    assert {(c.state, c.result, c.talk_seconds) for c in calls} == {("ended", "answered", 27)}
