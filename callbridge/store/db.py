"""The Database facade: engines, read(), transaction(), shared_transaction(), migrations; one file per backend
(sqlite.py, postgres.py) holds what makes each fast."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import TypeVar

from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from .. import metrics
from .codec import JSON_CODEC
from .commits import StoreBusy
from .postgres import (
    SHARED_POOL_SIZE,
    SHARED_SETTINGS,
    PostgresReader,
    PostgresSession,
    _AsyncpgTransaction,
    _ping_after_idle,
    _SharedTransactions,
)
from .sqlite import SqliteSession, _GroupCommit, _inline_engine, _sqlite_events, owner_only

log = logging.getLogger("callbridge.store")
T = TypeVar("T")
MIGRATIONS = Path(__file__).with_name("migrations")
PING_AFTER_IDLE = 2.0  # seconds a pooled PostgreSQL connection may sit unused before it is checked on checkout
# PostgreSQL connections a process keeps, and never more: a request past them waits for one to come back (a query's
# time), where a connection opened for it would cost a new server process, and closing it, the next burst another
POOL_SIZE = 20


def make_engine(
    url: str, ping_after_idle: float = PING_AFTER_IDLE, pool_size: int = POOL_SIZE, settings: dict | None = None
) -> AsyncEngine:
    """An async engine; SQLite gets WAL and a busy timeout, PostgreSQL a pool of `pool_size`, the connection used
    last first (the ones a quiet hour leaves idle are the ones checked), each connection opened with the server
    `settings` given."""
    if make_url(url).get_backend_name() != "sqlite":
        engine = create_async_engine(url, pool_size=pool_size, max_overflow=0, pool_use_lifo=True,
                                     connect_args={"server_settings": settings or {}}, **JSON_CODEC)  # fmt: skip
        _ping_after_idle(engine.sync_engine, ping_after_idle)
        return engine
    engine = create_async_engine(url, **JSON_CODEC)
    _sqlite_events(engine.sync_engine, busy_timeout_ms=10_000)
    return engine


class Database:
    """Sessions for reading, and transactions for writing; on SQLite, which has one writer, they take turns and
    share commits (`_GroupCommit`)."""

    def __init__(self, url: str, ping_after_idle: float = PING_AFTER_IDLE, wait_seconds: float = 10.0) -> None:
        """`wait_seconds`: how long a write waits for the store (another process's lock on the SQLite file) before
        StoreBusy."""
        self.url = url
        self.engine = make_engine(url, ping_after_idle)
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        self._sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        if self.is_sqlite:
            owner_only(url)
            self._inline_engine: Engine | None = _inline_engine(url)
            writes = self._inline_engine.execution_options(writes=True)
            self._writer: _GroupCommit | None = _GroupCommit(writes, wait_seconds)
            self._shared: _SharedTransactions | None = None
            self._pools: tuple[AsyncEngine, ...] = (self.engine,)
        else:
            self._inline_engine = self._writer = None
            shared = make_engine(url, ping_after_idle, SHARED_POOL_SIZE, SHARED_SETTINGS)  # a pool of their own
            self._pools = (self.engine, shared)
            self._shared = _SharedTransactions(shared, self._pools)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        async with self._sessions() as session:
            yield session

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[PostgresReader | SqliteSession]:
        """A bare connection for hot read paths (the caller lookup): no ORM session to set up; `execute_hot` runs
        on the driver (on PostgreSQL outside a transaction, on SQLite inline like the writes)."""
        if self._inline_engine is None:
            async with PostgresReader.connect(self.engine) as reader:
                yield reader
            return
        with self._inline_engine.connect() as connection:
            yield SqliteSession(connection)

    def transaction(self) -> AbstractAsyncContextManager[PostgresSession | SqliteSession]:
        """A session whose work is committed on exit and rolled back on error."""
        return self._postgres_transaction() if self._writer is None else self._writer.transaction()

    def shared_transaction(self) -> AbstractAsyncContextManager[PostgresSession | SqliteSession]:
        """A transaction that may share its commit with others under way in this process (`_SharedTransactions`):
        if any of them fails, all do (`SharedTransactionFailed`), and each is to be run again alone, in
        `transaction`. For work that is run often and can be run again; on SQLite, the same as `transaction`."""
        return self.transaction() if self._shared is None else self._shared.transaction()

    async def shared_or_alone(self, work: Callable[[PostgresSession | SqliteSession], Awaitable[T]]) -> T:
        """`work` in a shared transaction; if that fails (this work, or another sharing its commit), once more
        alone, in a transaction and on a connection of its own (a connection lost under it is replaced)."""
        try:
            async with self.shared_transaction() as session:
                return await work(session)
        except StoreBusy:
            raise  # alone it would wait as long again
        except Exception as exc:
            log.info("a shared transaction failed (%s); running it again alone", exc.__class__.__name__)
            metrics.RUN_ALONE.inc()
            async with self.transaction() as session:
                return await work(session)

    @asynccontextmanager
    async def _postgres_transaction(self) -> AsyncIterator[PostgresSession]:
        """The transaction is asyncpg's own (`_AsyncpgTransaction`), so `execute_hot` runs statements on the driver."""
        driven = await _AsyncpgTransaction.begin(self.engine, self._pools)
        session = driven.session()
        try:
            yield session
            await session.finish()
        except BaseException as exc:
            await session.finish(exc)
            await driven.end(exc)
            raise
        await driven.end()

    async def health(self, timeout: float = 0.1) -> str:
        """What this store can do now, asked within `timeout` and without waiting for a lock: "ok", "busy" (a write
        would wait for another process), "unreachable", or "outdated" (the schema is not the newest revision)."""
        try:
            async with asyncio.timeout(timeout):
                if self._writer is not None and not await self._writable_soon():
                    return "busy"
                async with self.connect() as connection:
                    revision = await connection.scalar(text("SELECT version_num FROM alembic_version"))
        except Exception as exc:  # TimeoutError, a refused connection, a missing table
            log.warning("store health check failed: %s", exc.__class__.__name__)
            return "unreachable"
        return "ok" if revision == _head_revision() else "outdated"

    async def _writable_soon(self, tries: int = 4) -> bool:
        """Whether a write could start within a few milliseconds: another process's short transaction (the outbox
        process's) is not a busy store, a lock held longer is."""
        for _ in range(tries - 1):
            if self._writer.writable():
                return True
            await asyncio.sleep(0.01)
        return self._writer.writable()

    async def migrate(self) -> None:
        """Create or upgrade the schema to the newest Alembic revision, once however many workers start at
        the same moment (on PostgreSQL the others wait for the first, then find nothing to do)."""
        async with self.engine.begin() as connection:
            if not self.is_sqlite:
                await connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _lock_key("migrate")})
            await connection.run_sync(_upgrade)

    @asynccontextmanager
    async def exclusively(self, name: str) -> AsyncIterator[bool]:
        """Whether this process may run the job `name` now: one process at a time on PostgreSQL (an advisory
        lock held for the block); always on SQLite, which one process serves."""
        if self.is_sqlite:
            yield True
            return
        async with self.engine.connect() as connection:
            key = _lock_key(name)
            got = await connection.scalar(text("SELECT pg_try_advisory_lock(:key)"), {"key": key})
            await connection.commit()
            try:
                yield bool(got)
            finally:
                if got:
                    await connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
                    await connection.commit()

    async def close(self) -> None:
        for pool in self._pools:
            await pool.dispose()
        if self._writer is not None:
            self._writer.close()
        if self._inline_engine is not None:
            self._inline_engine.dispose()


def _lock_key(name: str) -> int:
    """A stable 63-bit advisory lock key for a job name."""
    return int.from_bytes(hashlib.sha256(f"callbridge:{name}".encode()).digest()[:8], "big") >> 1


# Alembic is imported where it is used: it takes a third of a second, which commands that do not migrate need not pay
@functools.cache
def _head_revision() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def alembic_config():
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def _upgrade(connection) -> None:
    from alembic import command

    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, "head")
