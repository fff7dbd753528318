"""Engine, sessions and migrations: the one place that knows which database we run on."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import event, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

MIGRATIONS = Path(__file__).with_name("migrations")


def _sqlite_connect(dbapi_connection, _record) -> None:
    dbapi_connection.isolation_level = None  # let SQLAlchemy emit BEGIN itself (SQLAlchemy's pysqlite recipe)
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def make_engine(url: str, *, writes: bool = False) -> AsyncEngine:
    """An async engine; SQLite gets WAL and a busy timeout, PostgreSQL a modest pool.

    SQLite writers start with BEGIN IMMEDIATE: a deferred transaction that reads first and then writes fails at
    once ("database is locked") when another process wrote meanwhile, where an immediate one waits its turn.
    """
    if make_url(url).get_backend_name() == "sqlite":
        engine = create_async_engine(url)
        begin = "BEGIN IMMEDIATE" if writes else "BEGIN"
        event.listen(engine.sync_engine, "connect", _sqlite_connect)
        event.listen(engine.sync_engine, "begin", lambda conn: conn.exec_driver_sql(begin))
        return engine
    return create_async_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True)


class Database:
    """Sessions for reading, and one transaction at a time for writing on SQLite (it has one writer)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        self._sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self._write_lock = asyncio.Lock() if self.is_sqlite else None
        self._write_engine = make_engine(url, writes=True) if self.is_sqlite else self.engine
        self._write_sessions = async_sessionmaker(self._write_engine, expire_on_commit=False)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        async with self._sessions() as session:
            yield session

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[AsyncConnection]:
        """A bare connection for hot read paths (the caller lookup): no ORM session to set up."""
        async with self.engine.connect() as connection:
            yield connection

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session whose work is committed on exit and rolled back on error."""
        if self._write_lock is None:
            async with self._write_sessions() as session, session.begin():
                yield session
            return
        async with self._write_lock, self._write_sessions() as session, session.begin():
            yield session

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
        await self._write_engine.dispose()


def _lock_key(name: str) -> int:
    """A stable 63-bit advisory lock key for a job name."""
    return int.from_bytes(hashlib.sha256(f"callbridge:{name}".encode()).digest()[:8], "big") >> 1


def insert_for(session: AsyncSession, table):
    """INSERT with ON CONFLICT support on both engines we run on."""
    return (pg_insert if session.bind.dialect.name == "postgresql" else sqlite_insert)(table)


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def _upgrade(connection) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, "head")
