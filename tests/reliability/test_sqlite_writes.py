"""SQLite writes run on the event loop's thread: another process's transaction must make them wait without
freezing the loop (a caller lookup still answers), and a lock that is never released must end in an error."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import DateTime
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import IntegrityError

from callbridge.config import sqlite_url
from callbridge.store import Database, StoreBusy, directory, integrations, journal
from callbridge.store.sqlite import WAL_CAP_PAGES
from callbridge.store.tables import Integration, UTCDateTime


@pytest.fixture
async def database(tmp_path):
    database = Database(sqlite_url(tmp_path / "callbridge.db"))
    await database.migrate()
    yield database, str(tmp_path / "callbridge.db")
    await database.close()


async def add_employee(database: Database, name: str) -> None:
    async with database.transaction() as session:
        await directory.add_employee(session, name=name, pbx_login=name)


async def test_a_write_waits_for_another_process_and_the_loop_keeps_running(database):
    database, path = database
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process (say, a CLI import) is writing
    other.execute(
        "INSERT INTO employees (name, role, active, away, created_at) VALUES ('Other', 'employee', 1, 0, '2026-11-24')"
    )
    write = asyncio.create_task(add_employee(database, "andy"))
    reads = 0
    for _ in range(20):  # the loop serves reads while the write waits for its turn
        async with database.read() as session:
            reads += await directory.employee_by_key(session, "andy") is None
        await asyncio.sleep(0.01)
    assert reads == 20 and not write.done()
    other.execute("COMMIT")
    await asyncio.wait_for(write, 10)
    async with database.read() as session:
        assert await directory.employee_by_key(session, "andy") is not None
        assert await directory.employee_by_key(session, "Other") is None  # it has a name, not a PBX login
        assert len(await directory.list_employees(session)) == 2  # both writes are there, nothing lost


async def test_a_lock_never_released_ends_in_a_clear_error_for_every_writer_waiting(tmp_path):
    path = tmp_path / "waits.db"
    database = Database(sqlite_url(path), wait_seconds=0.3)
    await database.migrate()
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    assert await database.health() == "busy"  # said at once, without waiting
    writes = [asyncio.create_task(add_employee(database, f"e{i}")) for i in range(5)]
    done, _ = await asyncio.wait(writes, timeout=5)  # each waits the configured time, not one after the other
    assert len(done) == 5 and all(isinstance(w.exception(), StoreBusy) for w in writes)
    other.execute("ROLLBACK")
    assert await database.health() == "ok"
    await add_employee(database, "andy")  # the writer is usable again
    async with database.read() as session:
        assert await directory.employee_by_key(session, "andy") is not None
        assert len(await directory.list_employees(session)) == 1  # the refused writes wrote nothing
    await database.close()


async def test_a_caller_lookup_answers_while_a_write_is_under_way(database):
    database, _ = database
    async with database.transaction() as session:
        await directory.add_client(session, name="Рога и копыта", phones=["+79101234567"])
    async with database.transaction() as session:
        await directory.add_client(session, name="Not yet", phones=["+79990000000"])
        async with database.connect() as connection:  # the lookup's own connection, inline too
            assert (await directory.lookup_caller(connection, "+79101234567")).client_name == "Рога и копыта"
            assert await directory.lookup_caller(connection, "+79990000000") is None  # not committed yet


async def test_writers_that_queue_up_commit_together_and_fail_alone(database):
    """Transactions queued behind each other share one SQLite commit: each one that returns is on disk for any
    other connection, and one that fails, even in the middle of an ORM flush, takes nothing of the others along."""
    database, path = database
    async with database.transaction() as session:
        taken = (await integrations.add_integration(session, kind="cloudpbx", name="first", settings={})).token

    async def write(n: int) -> str:
        async with database.transaction() as session:
            await directory.add_employee(session, name=f"e{n}", pbx_login=f"e{n}")
            if n % 5 == 0:  # a unique token that is taken: the flush fails inside this transaction
                session.add(Integration(kind="cloudpbx", name=f"dup{n}", token=taken, settings={}, automation={}))
                await session.flush()
        other = sqlite3.connect(path)  # another process's view: what returned is committed
        found = other.execute("SELECT count(*) FROM employees WHERE pbx_login = ?", (f"e{n}",)).fetchone()[0]
        other.close()
        return "kept" if found == 1 else "lost"

    outcomes = await asyncio.gather(*(write(n) for n in range(1, 31)), return_exceptions=True)
    failed = [n for n, outcome in enumerate(outcomes, 1) if isinstance(outcome, IntegrityError)]
    assert failed == [5, 10, 15, 20, 25, 30]
    assert [o for o in outcomes if not isinstance(o, IntegrityError)] == ["kept"] * 24
    async with database.read() as session:
        logins = {e.pbx_login for e in await directory.list_employees(session)}
    assert logins == {f"e{n}" for n in range(1, 31) if n % 5}


async def test_a_nested_block_that_fails_undoes_only_its_own_writes(database):
    database, _ = database
    async with database.transaction() as session:
        await directory.add_employee(session, name="kept", pbx_login="kept")
        with pytest.raises(RuntimeError):
            async with session.begin_nested():  # the savepoints are taken when the inner block first writes
                async with session.begin_nested():
                    await directory.add_employee(session, name="undone", pbx_login="undone")
                raise RuntimeError("a rule failed after the inner block")
        async with session.begin_nested():
            pass  # a block that touches nothing
        await directory.add_employee(session, name="also kept", pbx_login="also")
    async with database.read() as session:
        assert sorted(e.name for e in await directory.list_employees(session)) == ["also kept", "kept"]


async def test_the_wal_is_copied_into_the_database_while_the_loop_is_busy(database):
    """The writer leaves checkpoints to a thread of its own: what it committed reaches the database file while the
    loop's thread does something else entirely (here it sleeps), long before the WAL is long enough for SQLite's
    own checkpoint (1,000 pages by default)."""
    database, path = database
    await add_employee(database, "first")
    time.sleep(1.0)  # noqa: ASYNC251 - settles what came before
    before = os.path.getsize(path)
    async with database.transaction() as session:
        for i in range(500):  # ~40 pages
            await directory.add_employee(session, name=f"employee {i} " + "x" * 200, pbx_login=f"e{i}")
    time.sleep(1.0)  # noqa: ASYNC251 - the loop is blocked: only another thread can copy the WAL now
    assert os.path.getsize(path) > before


async def test_the_wal_stays_bounded_under_writes_that_never_pause(database):
    """The thread's checkpoints copy what is committed, but SQLite starts the WAL again only when all of it is
    copied at a writer's BEGIN; with a write after another that may never be, and the writer's own checkpoint at
    `WAL_CAP_PAGES` must keep the file from growing with every write."""
    database, path = database
    async with database.transaction() as session:
        integration = (await integrations.add_integration(session, kind="cloudpbx", name="pbx", settings={})).id
    page = 4096 + 24  # a WAL frame
    for n in range(120):  # ~48 MB in all, three times the cap, at ~40 MB/s (the most PBX events have written)
        async with database.transaction() as session:
            await journal.journal_many(session, [
                {"integration_id": integration, "dedupe_key": f"{n}-{i}", "command": "event",
                 "params": {"x": "y" * 40_000}, "status": "applied"} for i in range(10)])  # fmt: skip
        await asyncio.sleep(0.01)
    # the file keeps the longest the WAL has been: the cap and what was written while the thread looked
    assert os.path.getsize(path + "-wal") <= 2 * WAL_CAP_PAGES * page  # SQLite's own checkpoint would allow 4x


ZONES = [UTC, timezone(timedelta(hours=3)), timezone(timedelta(hours=-11))]


@settings(max_examples=300)
@given(st.datetimes(datetime(1970, 1, 1), datetime(2200, 1, 1), timezones=st.sampled_from(ZONES)))
def test_times_are_written_as_sqlalchemy_writes_them(moment):
    """Databases already hold SQLAlchemy's text for every time, and SQLite compares and sorts times as text: the
    faster writer must produce exactly the same text (microseconds always there), or range filters go wrong."""
    dialect = sqlite.dialect()
    ours = UTCDateTime().dialect_impl(dialect).bind_processor(dialect)
    theirs = DateTime().dialect_impl(dialect).bind_processor(dialect)
    assert ours(moment) == theirs(moment.astimezone(UTC).replace(tzinfo=None))
    assert ours(None) is None
