"""Engine, sessions and migrations: the one place that knows which database we run on."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiosqlite
from alembic import command
from alembic.config import Config
from sqlalchemy import event, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

MIGRATIONS = Path(__file__).with_name("migrations")
WAIT_FOR_OTHER_WRITERS = 10.0  # seconds a SQLite write waits for another process's transaction


class _InlineSqlite(aiosqlite.Connection):
    """aiosqlite's API run on the event loop's own thread, for SQLite writes and point reads.

    Such a statement on a local SQLite file takes microseconds, while a hop to aiosqlite's thread and back
    costs a hundred or more, four times a statement: inline, an event is applied twice as fast and a caller
    lookup takes a quarter of the time. Nothing waits for a lock here (busy_timeout 0; `Database.transaction`
    retries BEGIN without blocking the loop), and long reads stay on aiosqlite's threads.
    """

    def __init__(self, path: str) -> None:
        super().__init__(lambda: sqlite3.connect(path, check_same_thread=False), iter_chunk_size=64)
        self._thread.daemon = True  # the thread only opens and closes the connection

    async def _execute(self, fn, *args, **kwargs):
        if not self._running or not self._connection:
            raise ValueError("Connection closed")
        return fn(*args, **kwargs)


def _sqlite_pragmas(busy_timeout_ms: int):
    def on_connect(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None  # let SQLAlchemy emit BEGIN itself (SQLAlchemy's pysqlite recipe)
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
        cursor.close()

    return on_connect


def _sqlite_begin(connection) -> None:
    """Writers start with BEGIN IMMEDIATE: a deferred transaction that reads first and then writes fails at once
    ("database is locked") when another process wrote meanwhile, where an immediate one takes its turn."""
    writes = connection.get_execution_options().get("writes")
    connection.exec_driver_sql("BEGIN IMMEDIATE" if writes else "BEGIN")


def make_engine(url: str, *, inline: bool = False) -> AsyncEngine:
    """An async engine; SQLite gets WAL and a busy timeout (none `inline`), PostgreSQL a modest pool."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_async_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True)
    if inline:
        engine = create_async_engine(url, async_creator=lambda: _InlineSqlite(parsed.database))
    else:
        engine = create_async_engine(url)
    event.listen(engine.sync_engine, "connect", _sqlite_pragmas(0 if inline else 10_000))
    event.listen(engine.sync_engine, "begin", _sqlite_begin)
    return engine


class Database:
    """Sessions for reading, and one transaction at a time for writing on SQLite (it has one writer)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        self._sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self._write_lock = asyncio.Lock() if self.is_sqlite else None
        self._inline_engine = make_engine(url, inline=True) if self.is_sqlite else self.engine
        writes = self._inline_engine.execution_options(writes=True)
        self._write_sessions = async_sessionmaker(writes, expire_on_commit=False)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        async with self._sessions() as session:
            yield session

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[AsyncConnection]:
        """A bare connection for hot read paths (the caller lookup): no ORM session to set up, and on SQLite
        run inline like the writes (a point read by index takes microseconds)."""
        async with self._inline_engine.connect() as connection:
            yield connection

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session whose work is committed on exit and rolled back on error."""
        if self._write_lock is None:
            async with self._write_sessions() as session, session.begin():
                yield session
            return
        async with self._write_lock, self._write_sessions() as session:
            await _begin_immediate(session)
            try:
                yield session
            except BaseException:
                await session.rollback()
                raise
            await session.commit()

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
        await self.engine.dispose()
        await self._inline_engine.dispose()


async def _begin_immediate(session: AsyncSession) -> None:
    """Start the SQLite write transaction, waiting without blocking the loop while another process writes."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_FOR_OTHER_WRITERS
    delay = 0.002
    while True:
        try:
            await session.connection()  # the session begins here
            return
        except OperationalError as exc:
            if "locked" not in str(exc) or loop.time() > deadline:
                raise
        await session.rollback()
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.1)


def _lock_key(name: str) -> int:
    """A stable 63-bit advisory lock key for a job name."""
    return int.from_bytes(hashlib.sha256(f"callbridge:{name}".encode()).digest()[:8], "big") >> 1


def insert_for(session: AsyncSession, table):
    """INSERT with ON CONFLICT support on both engines we run on."""
    return _insert(session.bind.dialect.name)(table)


def _insert(dialect: str):
    return pg_insert if dialect == "postgresql" else sqlite_insert


def prepared(session: AsyncSession, build):
    """The statement `build(insert)` makes, built once per database dialect and executed with parameters:
    on the paths every PBX event takes, building a statement costs more than running it."""
    return _prepared(build, session.bind.dialect.name)


@functools.cache
def _prepared(build, dialect: str):
    return build(_insert(dialect))


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def _upgrade(connection) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, "head")
