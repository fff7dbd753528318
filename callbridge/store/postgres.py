"""PostgreSQL: transactions driven straight on asyncpg, a lost connection told apart, and the events one worker
has in hand at once sharing one transaction and one commit."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import asyncpg
from sqlalchemy import Engine, event
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession
from sqlalchemy.orm import Session, SessionTransaction

from .commits import _Group, _SharedCommits

CONNECTION_IN_DOUBT = (asyncpg.InterfaceError, asyncpg.InternalClientError, asyncpg.PostgresConnectionError, OSError,
                        asyncio.CancelledError)  # fmt: skip


def lost_connection(exc: BaseException) -> bool:
    """Whether an error was the database connection failing, not a statement (worth another try on a new one)."""
    return isinstance(exc, CONNECTION_IN_DOUBT) or (isinstance(exc, DBAPIError) and exc.connection_invalidated)


def _ping_after_idle(engine: Engine, seconds: float) -> None:
    """Check a pooled connection before use only when it sat idle: a restarted database leaves dead connections in
    the pool. `pool_pre_ping` would check every checkout, with three round trips on asyncpg; a connection in steady
    use proved itself a moment ago (if it died since, the first error invalidates the whole pool)."""

    @event.listens_for(engine.pool, "checkin")
    def checked_in(_dbapi_connection, record) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine.pool, "checkout")
    def checked_out(dbapi_connection, record, _proxy) -> None:
        if time.monotonic() - record.info.pop("idle_since", time.monotonic()) < seconds:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:
            raise DisconnectionError(str(exc)) from exc  # the pool replaces it with a new connection


def _driver(connection: AsyncConnection) -> asyncpg.Connection:
    """The asyncpg connection under one just checked out, read off the pool's record where `get_raw_connection`
    would start a greenlet for it (each costs some 10 us: CPython maps a new frame stack for it, and unmaps it)."""
    return connection.sync_connection.connection.driver_connection


@dataclass
class _AsyncpgTransaction:
    """A PostgreSQL transaction that is asyncpg's own, begun at once, so `execute_hot` can run statements on the
    driver from the first. Sessions join it (asyncpg turns the adapter's own transaction, begun if a session runs
    a statement, into a savepoint) and commit before it does."""

    pools: tuple[AsyncEngine, ...]  # the database's pools, which a lost connection renews
    connection: AsyncConnection
    driver: asyncpg.Connection
    transaction: asyncpg.transaction.Transaction | None = None

    @classmethod
    async def begin(cls, engine: AsyncEngine, pools: tuple[AsyncEngine, ...]) -> _AsyncpgTransaction:
        """On a connection of `engine`, one of `pools`."""
        connection = await engine.connect()
        driven = cls(pools, connection, _driver(connection))
        try:
            driven.transaction = driven.driver.transaction()  # raises at once on a connection found closed
            await driven.transaction.start()
        except BaseException as exc:
            await driven.end(exc)
            raise
        return driven

    def session(self) -> PostgresSession:
        return PostgresSession(self)

    async def end(self, failure: BaseException | None = None) -> None:
        """Commit, or roll back after `failure`; a connection lost or left mid-statement is dropped instead."""
        if failure is not None and await self._dropped(failure):
            return
        try:
            await (self.transaction.rollback() if failure else self.transaction.commit())
        except BaseException as exc:
            if not await self._dropped(exc):
                await self.connection.close()
            raise
        await self.connection.close()

    async def _dropped(self, exc: BaseException) -> bool:
        """Whether `exc` left the connection in doubt, and so it was dropped (a failed statement leaves it fine)."""
        if not (lost_connection(exc) or self.driver.is_closed()):
            return False
        await self._drop(lost=not isinstance(exc, asyncio.CancelledError))
        return True

    async def _drop(self, lost: bool) -> None:
        """A connection lost, or cancelled mid-statement, under asyncpg, where SQLAlchemy did not see it: closed at
        once and never reused; a lost one (mostly a restart, which took the pooled ones too) renews the pools, as
        SQLAlchemy does with its own when it sees a disconnect."""
        self.driver.terminate()
        await self.connection.invalidate()
        if lost:
            for pool in self.pools:
                await pool.dispose(close=False)


class PostgresReader:
    """A pooled connection for hot point reads (the caller lookup): `execute_hot` sends its statement straight to
    asyncpg, outside any transaction (no BEGIN, no ROLLBACK); anything else goes to the SQLAlchemy connection."""

    in_block = False

    def __init__(self, connection: AsyncConnection, driver: asyncpg.Connection) -> None:
        self.bind, self.driver = connection, driver

    def __getattr__(self, name: str):
        return getattr(self.bind, name)

    @classmethod
    @asynccontextmanager
    async def connect(cls, engine: AsyncEngine) -> AsyncIterator[PostgresReader]:
        connection = await engine.connect()
        reader = cls(connection, _driver(connection))
        try:
            yield reader
        except BaseException as exc:
            if lost_connection(exc) or reader.driver.is_closed():  # asyncpg failed where SQLAlchemy did not see
                await connection.invalidate()
            await asyncio.shield(connection.close())  # as `async with` would: a cancelled lookup still checks in
            raise
        if connection.in_transaction():  # a statement SQLAlchemy ran: its rollback is a round trip
            await connection.close()
        else:  # the hot statements ran on the driver, outside any transaction: nothing to send
            connection.sync_connection.close()


class PostgresSession:
    """The session of a `_AsyncpgTransaction` transaction, an `AsyncSession` made only when something asks for one: the
    statements every PBX event runs go to the driver (`execute_hot`), and a transaction that needs no session sets
    none up, commits none and closes none."""

    def __init__(self, driven: _AsyncpgTransaction) -> None:
        self.driver = driven.driver
        self.bind = driven.connection
        self._session: AsyncSession | None = None
        self._blocks: list[SessionTransaction | None] = []  # per open `begin_nested` block, its savepoint

    def __getattr__(self, name: str):
        if self._session is None:
            self._session = AsyncSession(self.bind, expire_on_commit=False)
            # the blocks it is made in begin their savepoints now (no statement: SQLAlchemy takes them on first use)
            self._blocks = [self._session.sync_session.begin_nested() for _ in self._blocks]
        return getattr(self._session, name)

    @property
    def in_block(self) -> bool:
        return bool(self._blocks)

    @asynccontextmanager
    async def begin_nested(self) -> AsyncIterator[None]:
        """A savepoint for the block, as `AsyncSession.begin_nested`, that makes no session if the block needs none
        (the CRM rules' block mostly does nothing)."""
        self._blocks.append(await self._session.run_sync(Session.begin_nested) if self._session else None)
        try:
            yield
        except BaseException:
            if (savepoint := self._blocks.pop()) is not None:
                await self._session.run_sync(lambda _: savepoint.rollback())
            raise
        if (savepoint := self._blocks.pop()) is not None:
            await self._session.run_sync(lambda _: savepoint.commit())

    async def finish(self, failure: BaseException | None = None) -> None:
        """Commit the session into the transaction, or after `failure` give it up (the transaction is rolled back
        or its connection dropped next, so a failure here, on a connection in doubt, changes nothing)."""
        if self._session is None:
            return
        if failure is None:
            await self._session.commit()
            await self._session.close()
            return
        with contextlib.suppress(Exception):
            await self._session.close()


class SharedTransactionFailed(Exception):
    """Another transaction this one shared its commit with failed, so neither was committed: run it again alone."""


MAX_SHARED = 32  # PostgreSQL transactions sharing a commit at most: all run again if one fails


LOCK_TIMEOUT_MS = 100  # a shared transaction waiting longer for a lock fails, and each of its own runs again alone
# What the shared transactions' connections ask for as they are opened (no SET in each transaction): the lock
# timeout, and generic plans. A batch of PBX events (flows.batches) sends lists whose length its custom plans are
# made for, so PostgreSQL would plan its statements again on each execution (a third of a millisecond each).
SHARED_SETTINGS = {"lock_timeout": str(LOCK_TIMEOUT_MS), "plan_cache_mode": "force_generic_plan"}
SHARED_POOL_SIZE = 4  # their connections: one for the transaction being run, the rest for those committing


class _SharedTransactions(_SharedCommits):
    """PostgreSQL transactions under way together in one process, in one database transaction.

    Each runs its statements and no more: no connection to check out, no BEGIN, no COMMIT of its own, and the
    database writes one commit for all. Unlike SQLite's group they take no
    savepoints, which cost a round trip each: if one fails, the whole transaction is rolled back, and each of
    them fails with `SharedTransactionFailed` (or its own error), to be run again alone.
    """

    limit = MAX_SHARED

    def __init__(self, engine: AsyncEngine, pools: tuple[AsyncEngine, ...]) -> None:
        """`engine`, one of the database's `pools`: its connections wait `LOCK_TIMEOUT_MS` for a lock at most (shares
        of two processes may wait for each other, which PostgreSQL looks into only after a second)."""
        super().__init__()
        self.engine, self._pools = engine, pools

    async def _begin(self, _deadline: float | None) -> _AsyncpgTransaction:
        return await _AsyncpgTransaction.begin(self.engine, self._pools)

    @asynccontextmanager
    async def _member(self, group: _Group) -> AsyncIterator[PostgresSession]:
        session = group.transaction.session()
        try:
            yield session
            await session.finish()
        except BaseException as exc:
            group.failure = exc
            await session.finish(exc)
            raise

    def _end(self, group: _Group) -> None:
        """In the background, while the next ones begin another transaction."""
        group.ending = asyncio.create_task(self._commit(group))

    async def _commit(self, group: _Group) -> None:
        try:
            await group.transaction.end(group.failure)
        except BaseException as exc:
            failed = f"the commit failed: {exc.__class__.__name__}: {exc}"
        else:
            if group.failure is None:
                group.committed.set_result(None)
                return
            failed = f"{group.failure.__class__.__name__}: {group.failure}"
        group.committed.set_exception(SharedTransactionFailed(failed))
