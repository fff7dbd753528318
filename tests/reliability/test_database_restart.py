"""PostgreSQL dropping the connections callbridge keeps in its pool (a restart, a failover, an idle timeout)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine

from callbridge.domain.calls import EventKind
from callbridge.store import Database, directory, integrations
from callbridge.store.db import POOL_SIZE
from callbridge.store.postgres import CONNECTION_IN_DOUBT

from ..conftest import PG_ADMIN_URL
from ..integration.test_flows import call_row, post


async def drop_connections(url: str) -> int:
    """Terminate every server process of the database, as a restart does; how many there were."""
    admin = create_async_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    async with admin.connect() as connection:
        dropped = await connection.scalar(
            text("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = :name"),
            {"name": url.rsplit("/", 1)[1]},
        )
    await admin.dispose()
    return int(dropped)


async def used_once(db: Database) -> None:
    async with db.transaction() as session:
        assert await session.scalar(text("SELECT 1")) == 1


async def test_a_connection_that_died_while_idle_is_replaced_before_use(postgres):
    db = Database(postgres, ping_after_idle=0.2)
    try:
        await used_once(db)
        assert await drop_connections(postgres) >= 1
        await asyncio.sleep(0.3)
        await used_once(db)  # checked on checkout, found dead, replaced: the caller never notices
        await used_once(db)
    finally:
        await db.close()


async def test_a_connection_in_steady_use_is_not_checked_and_one_failure_renews_the_pool(postgres):
    db = Database(postgres, ping_after_idle=3600)
    try:
        await used_once(db)
        await drop_connections(postgres)
        with pytest.raises((DBAPIError, *CONNECTION_IN_DOUBT)):
            await used_once(db)  # a check on every use would have caught it: a round trip per use, not worth it
        await used_once(db)
    finally:
        await db.close()


async def test_a_pbx_event_whose_connection_was_lost_is_applied_on_a_fresh_one(services, postgres):
    async with services.db.transaction() as session:
        integration_id = (await integrations.add_integration(session, kind="cloudpbx", name="PBX", settings={})).id
    now = datetime.now(UTC)
    first = await post(services, integration_id, EventKind.RING, "r1", now)
    await drop_connections(postgres)  # the pool still holds the connection the first event used
    second = await post(services, integration_id, EventKind.ANSWER, "r1", now + timedelta(seconds=3))
    assert first.failed is None and second.failed is None and second.call_ids == first.call_ids
    assert (await call_row(services, first.call_ids[0])).state == "talking"


async def test_a_transaction_cancelled_mid_statement_leaves_no_connection_behind(postgres):
    db = Database(postgres)
    try:

        async def slow() -> None:
            async with db.transaction() as session:
                await session.execute(text("SELECT pg_sleep(5)"))

        task = asyncio.create_task(slow())
        await asyncio.sleep(0.3)
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=2)
        assert task in done and task.cancelled()  # at once, and still a cancellation (jobs stop on it)
        await used_once(db)
        await used_once(db)
    finally:
        await db.close()


async def test_a_lookup_on_a_lost_connection_leaves_it_out_of_the_pool(services, postgres):
    """Caller lookups run on asyncpg itself, outside SQLAlchemy's view: a connection that fails under one is dropped,
    so the next lookup gets a live one instead of the same dead one again."""
    async with services.db.transaction() as session:
        await directory.add_client(session, name="Рога и копыта", phones=["+79101230000"])
    db = Database(postgres, ping_after_idle=3600)

    async def looked_up():
        async with db.connect() as connection:
            return await directory.lookup_caller(connection, "+79101230000")

    try:
        assert (await looked_up()).client_name == "Рога и копыта"
        assert await drop_connections(postgres) >= 1
        with pytest.raises((DBAPIError, *CONNECTION_IN_DOUBT)):
            await looked_up()
        assert (await looked_up()).client_name == "Рога и копыта"
        assert (await looked_up()).client_name == "Рога и копыта"
    finally:
        await db.close()


async def test_bursts_of_lookups_wider_than_the_pool_wait_for_its_connections_and_open_none(services, postgres):
    """A connection opened for one request costs PostgreSQL a new server process (and the lookup a connect): lookups
    beyond the pool's size wait for a pooled connection, burst after burst, instead of opening and closing their own."""
    async with services.db.transaction() as session:
        await directory.add_client(session, name="Рога и копыта", phones=["+79101230001"])
    db = Database(postgres)
    opened = []
    event.listen(db.engine.sync_engine, "connect", lambda *_: opened.append(1))

    async def looked_up():
        async with db.connect() as connection:
            return await directory.lookup_caller(connection, "+79101230001")

    try:
        for _ in range(3):
            found = await asyncio.gather(*(looked_up() for _ in range(2 * POOL_SIZE)))
            assert {info.client_name for info in found} == {"Рога и копыта"}
        assert 0 < len(opened) <= POOL_SIZE
        assert db.engine.pool.checkedout() == 0  # every one went back, with nothing sent for it
    finally:
        await db.close()


async def test_a_lookup_connection_that_ran_a_statement_in_a_transaction_goes_back_rolled_back(postgres):
    """The caller lookup's connection goes back to the pool in place (its statements ran outside any transaction);
    one on which SQLAlchemy began a transaction is rolled back first, so the next one to take it starts clean."""
    db = Database(postgres)
    try:
        async with db.connect() as connection:
            assert await connection.scalar(text("SELECT 1")) == 1  # SQLAlchemy begins a transaction for it
            assert connection.in_transaction()
        assert db.engine.pool.checkedout() == 0
        async with db.connect() as connection:
            assert not connection.driver.is_in_transaction()
    finally:
        await db.close()
