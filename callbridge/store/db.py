"""Engine, sessions and migrations: the one place that knows which database we run on."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError, OperationalError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Session, SessionTransaction

MIGRATIONS = Path(__file__).with_name("migrations")
WAIT_FOR_OTHER_WRITERS = 10.0  # seconds a SQLite write waits for another process's transaction
PING_AFTER_IDLE = 2.0  # seconds a pooled PostgreSQL connection may sit unused before it is checked on checkout


class Inline:
    """A synchronous SQLAlchemy connection, and for a writer a session made when first needed, behind the
    awaitable methods the store calls.

    SQLite writes and point reads run on the event loop's own thread: such a statement on a local file takes
    microseconds, where the async layers around it (a thread hop per call, greenlet switches) cost ten to a
    hundred times that. Nothing here waits for a lock (busy_timeout 0; `Database.transaction` retries BEGIN
    without blocking the loop), and long reads stay on aiosqlite's threads.

    A writer keeps its work in a savepoint of its own (`savepoint`, in the transaction it shares with others),
    taken with the first statement straight on sqlite3: SQLAlchemy's savepoint, statement and release around it
    were a quarter of a PBX event's work.
    """

    def __init__(self, connection: Connection, savepoint: str | None = None) -> None:
        self.connection = connection
        self.bind = connection.engine
        self._driver: sqlite3.Connection = connection.connection.driver_connection
        self._own, self._own_taken = savepoint, False
        self._session: Session | None = None
        self._savepoints: list = []  # one per open `begin_nested` block; None until the block touches the database

    def _begin(self) -> None:
        if self._own and not self._own_taken:
            self._driver.execute(f"SAVEPOINT {self._own}")
            self._own_taken = True

    def _touch(self) -> Session | Connection:
        """What runs statements (a reader's connection, a writer's session), with the savepoints of the blocks it
        is in taken (outermost first) before it is used."""
        self._begin()
        if self._own is None:
            return self.connection
        if self._session is None:
            self._session = Session(self.connection, join_transaction_mode="create_savepoint", expire_on_commit=False)
        if self._savepoints and self._savepoints[-1] is None:
            self._savepoints = [s if s is not None else self._session.begin_nested() for s in self._savepoints]
        return self._session

    def cursor(self) -> sqlite3.Cursor:
        """A cursor on the sqlite3 connection, inside the savepoints taken so far (and those of the blocks it is
        in)."""
        if self._savepoints and self._savepoints[-1] is None:
            self._touch()
        self._begin()
        return self._driver.cursor()

    def commit(self) -> None:
        if self._session is not None:
            self._session.commit()
            self._session.close()
        if self._own_taken:
            self._driver.execute(f"RELEASE {self._own}")

    def rollback(self) -> None:
        if self._session is not None:
            self._session.rollback()
            self._session.close()
        if self._own_taken:
            self._driver.execute(f"ROLLBACK TO {self._own}")
            self._driver.execute(f"RELEASE {self._own}")

    async def execute(self, *args, **kwargs):
        return self._touch().execute(*args, **kwargs)

    async def scalar(self, *args, **kwargs):
        return self._touch().scalar(*args, **kwargs)

    async def scalars(self, *args, **kwargs):
        return self._touch().scalars(*args, **kwargs)

    async def get(self, *args, **kwargs):
        return self._touch().get(*args, **kwargs)

    async def flush(self, *args, **kwargs) -> None:
        self._touch().flush(*args, **kwargs)

    def add(self, instance) -> None:
        self._touch().add(instance)

    def add_all(self, instances) -> None:
        self._touch().add_all(instances)

    @asynccontextmanager
    async def begin_nested(self) -> AsyncIterator[None]:
        """A savepoint, taken only once the block uses the session: the CRM rules' block mostly does nothing (rules
        that are off, a call already in line), and a savepoint and its release were a tenth of an event's work."""
        self._savepoints.append(None)
        try:
            yield
        except BaseException:
            if (savepoint := self._savepoints.pop()) is not None:
                savepoint.rollback()
            raise
        if (savepoint := self._savepoints.pop()) is not None:
            savepoint.commit()


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


def make_engine(url: str, ping_after_idle: float = PING_AFTER_IDLE) -> AsyncEngine:
    """An async engine; SQLite gets WAL and a busy timeout, PostgreSQL a modest pool."""
    if make_url(url).get_backend_name() != "sqlite":
        engine = create_async_engine(url, pool_size=10, max_overflow=10)
        _ping_after_idle(engine.sync_engine, ping_after_idle)
        return engine
    engine = create_async_engine(url)
    _sqlite_events(engine.sync_engine, busy_timeout_ms=10_000)
    return engine


# What asyncpg raises when the connection itself failed (or was left mid-statement), rather than a statement.
CONNECTION_IN_DOUBT = (asyncpg.InterfaceError, asyncpg.InternalClientError, asyncpg.PostgresConnectionError, OSError,
                        asyncio.CancelledError)  # fmt: skip


def lost_connection(exc: BaseException) -> bool:
    """Whether an error was the database connection failing, not a statement (worth another try on a new one)."""
    return isinstance(exc, CONNECTION_IN_DOUBT) or (isinstance(exc, DBAPIError) and exc.connection_invalidated)


def _ping_after_idle(engine: Engine, seconds: float) -> None:
    """Check a pooled connection before use only when it sat idle: a restarted database leaves dead connections in
    the pool. `pool_pre_ping` checks every checkout, three round trips with asyncpg, a fifth of a PBX event's
    statements; a connection in steady use proved itself a moment ago (if it died since, the first error
    invalidates the whole pool)."""

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


def _inline_engine(url: str) -> Engine:
    """The synchronous SQLite engine `Inline` runs on the loop's thread; it never waits for a lock."""
    engine = create_engine(make_url(url).set(drivername="sqlite"))
    _sqlite_events(engine, busy_timeout_ms=0)
    return engine


def _sqlite_events(engine: Engine, busy_timeout_ms: int) -> None:
    event.listen(engine, "connect", _sqlite_pragmas(busy_timeout_ms))
    event.listen(engine, "begin", _sqlite_begin)


class Database:
    """Sessions for reading, and transactions for writing; on SQLite, which has one writer, they take turns and
    share commits (`_GroupCommit`)."""

    def __init__(self, url: str, ping_after_idle: float = PING_AFTER_IDLE) -> None:
        self.url = url
        self.engine = make_engine(url, ping_after_idle)
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        self._sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        if self.is_sqlite:
            self._inline_engine: Engine | None = _inline_engine(url)
            writes = self._inline_engine.execution_options(writes=True)
            self._writer: _GroupCommit | None = _GroupCommit(writes)
            self._shared: _SharedTransactions | None = None
        else:
            self._inline_engine = self._writer = None
            self._shared = _SharedTransactions(self)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        async with self._sessions() as session:
            yield session

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[AsyncConnection | Inline]:
        """A bare connection for hot read paths (the caller lookup): no ORM session to set up, and on SQLite
        run inline like the writes (a point read by index takes microseconds)."""
        if self._inline_engine is None:
            async with self.engine.connect() as connection:
                yield connection
            return
        with self._inline_engine.connect() as connection:
            yield Inline(connection)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[DrivenSession | Inline]:
        """A session whose work is committed on exit and rolled back on error."""
        if self._writer is None:
            async with self._postgres_transaction() as session:
                yield session
            return
        async with self._writer.transaction() as session:
            yield session

    @asynccontextmanager
    async def shared_transaction(self) -> AsyncIterator[DrivenSession | Inline]:
        """A transaction that may share its commit with others under way in this process (`_SharedTransactions`):
        if any of them fails, all do (`SharedTransactionFailed`), and each is to be run again alone, in
        `transaction`. For work that is run often and can be run again; on SQLite, the same as `transaction`."""
        if self._shared is None:
            async with self.transaction() as session:
                yield session
            return
        async with self._shared.transaction() as session:
            yield session

    @asynccontextmanager
    async def _postgres_transaction(self) -> AsyncIterator[DrivenSession]:
        """The transaction is asyncpg's own (`_Driven`), so `execute_hot` can run statements on the driver."""
        driven = await _Driven.begin(self)
        session = driven.session()
        try:
            yield session
            await session.finish()
        except BaseException as exc:
            await session.finish(exc)
            await driven.end(exc)
            raise
        await driven.end()

    async def _drop(self, connection: AsyncConnection, driver: asyncpg.Connection, lost: bool) -> None:
        """A connection lost, or cancelled mid-statement, under asyncpg, where SQLAlchemy did not see it: closed at
        once and never reused; a lost one (mostly a restart, which took the pooled ones too) renews the pool, as
        SQLAlchemy does when it sees a disconnect."""
        driver.terminate()
        await connection.invalidate()
        if lost:
            await self.engine.dispose(close=False)

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
        if self._writer is not None:
            self._writer.close()
        if self._inline_engine is not None:
            self._inline_engine.dispose()


MAX_GROUP = 64  # transactions committed together at most, which bounds how long the first one waits


@dataclass
class _Group:
    transaction: Any  # the database transaction its members run in: a SQLite connection, or a `_Driven`
    committed: asyncio.Future
    members: int = 0
    failure: BaseException | None = None  # a member's, which ends the group (only where members take no savepoint)
    closer: asyncio.Task | None = None
    ending: asyncio.Task | None = None  # the commit, held here until it is done (the loop keeps tasks weakly)


class _SharedCommits:
    """Transactions under way together in one process, run one after another in one database transaction and
    committed together once nobody else is waiting (or `limit` have joined). Each still ends only after the
    commit, so a 2xx still means durable. Subclasses begin the database transaction (`_begin`), wrap each member
    in it (`_member`), and commit it or roll it back after `failure`, settling `committed` (`_end`)."""

    limit: int

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self._waiting = 0
        self._open: _Group | None = None

    @asynccontextmanager
    async def transaction(self):
        self._waiting += 1
        try:
            await self._lock.acquire()
        finally:
            self._waiting -= 1
        try:
            group = self._open or await self._start()
            group.members += 1
            try:
                async with self._member(group) as session:
                    yield session
            finally:
                try:
                    if not self._waiting:
                        await asyncio.sleep(0)  # a transaction runs without a pause: let requests under way queue up
                finally:
                    self._settle(group)
        finally:
            self._lock.release()
        await asyncio.shield(group.committed)

    async def _start(self) -> _Group:
        committed = asyncio.get_running_loop().create_future()
        committed.add_done_callback(lambda f: f.cancelled() or f.exception())  # members that failed never await it
        self._open = _Group(await self._begin(), committed)
        return self._open

    def _settle(self, group: _Group) -> None:
        """Leave the group open for the next transaction in the queue, or end it now."""
        if group.failure is None and self._waiting and group.members < self.limit:
            if group.closer is None:  # in case those waiting give up: end it once they had their turn
                group.closer = asyncio.create_task(self._end_when_free(group))
            return
        self._end_now(group)

    async def _end_when_free(self, group: _Group) -> None:
        async with self._lock:
            if self._open is group:
                self._end_now(group)

    def _end_now(self, group: _Group) -> None:
        self._open = None
        self._end(group)


class _GroupCommit(_SharedCommits):
    """SQLite's one writer: transactions queued behind each other share one SQLite transaction, each in a savepoint
    of its own.

    A commit writes every page the transaction touched to the WAL, and transactions that follow each other touch
    the same pages (the ends of the journal, the calls and their legs): a group writes them once. One that fails
    rolls back its savepoint only (`Inline`).
    """

    limit = MAX_GROUP

    def __init__(self, engine: Engine) -> None:
        super().__init__()
        self._engine = engine

    async def _begin(self) -> Connection:
        connection = self._engine.connect()
        try:
            await _begin_immediate(connection)
        except BaseException:
            connection.close()
            raise
        return connection

    @asynccontextmanager
    async def _member(self, group: _Group) -> AsyncIterator[Inline]:
        own = Inline(group.transaction, savepoint="callbridge_member")
        try:
            yield own
        except BaseException:
            own.rollback()
            raise
        own.commit()

    def _end(self, group: _Group) -> None:
        """At once, before the next group's BEGIN: SQLite has one writer."""
        try:
            group.transaction.commit()
        except Exception as exc:
            group.committed.set_exception(exc)
        else:
            group.committed.set_result(None)
        finally:
            group.transaction.close()

    def close(self) -> None:
        if self._open is not None:
            self._end_now(self._open)


@dataclass
class _Driven:
    """A PostgreSQL transaction that is asyncpg's own, begun at once, so `execute_hot` can run statements on the
    driver from the first. Sessions join it (asyncpg turns the adapter's own transaction, begun if a session runs
    a statement, into a savepoint) and commit before it does."""

    db: Database
    connection: AsyncConnection
    driver: asyncpg.Connection
    transaction: asyncpg.transaction.Transaction | None = None

    @classmethod
    async def begin(cls, db: Database) -> _Driven:
        connection = await db.engine.connect()
        driven = cls(db, connection, (await connection.get_raw_connection()).driver_connection)
        try:
            driven.transaction = driven.driver.transaction()  # raises at once on a connection found closed
            await driven.transaction.start()
        except BaseException as exc:
            await driven.end(exc)
            raise
        return driven

    def session(self) -> DrivenSession:
        return DrivenSession(self)

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
        await self.db._drop(self.connection, self.driver, lost=not isinstance(exc, asyncio.CancelledError))
        return True


class DrivenSession:
    """The session of a `_Driven` transaction, an `AsyncSession` made only when something asks for one: the
    statements every PBX event runs go to the driver (`execute_hot`), and an unused session's setup, savepoint
    block, commit and close cost a tenth of the event."""

    def __init__(self, driven: _Driven) -> None:
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


class _SharedTransactions(_SharedCommits):
    """PostgreSQL transactions under way together in one process, in one database transaction.

    Each costs its statements and no more: no connection to check out, no BEGIN, no COMMIT (a third of a PBX
    event's round trips), and the database writes one commit for all. Unlike SQLite's group they take no
    savepoints, which cost a round trip each: if one fails, the whole transaction is rolled back, and each of
    them fails with `SharedTransactionFailed` (or its own error), to be run again alone.
    """

    limit = MAX_SHARED

    def __init__(self, db: Database) -> None:
        super().__init__()
        self._db = db

    async def _begin(self) -> _Driven:
        driven = await _Driven.begin(self._db)
        try:  # shares of two processes may wait for each other, which PostgreSQL looks into only after a second
            await driven.driver.execute(f"SET LOCAL lock_timeout = {LOCK_TIMEOUT_MS}")
        except BaseException as exc:
            await driven.end(exc)
            raise
        return driven

    @asynccontextmanager
    async def _member(self, group: _Group) -> AsyncIterator[DrivenSession]:
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


async def _begin_immediate(connection: Connection) -> None:
    """Start the SQLite write transaction, waiting without blocking the loop while another process writes."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_FOR_OTHER_WRITERS
    delay = 0.002
    while True:
        try:
            connection.begin()
            return
        except OperationalError as exc:
            if "locked" not in str(exc) or loop.time() > deadline:
                raise
        connection.rollback()
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


async def execute_hot(session: AsyncSession | DrivenSession | Inline, statement, params: dict | list[dict]) -> list:
    """Run a statement built once, on a path every PBX event takes; the rows it returns (tuples, or asyncpg
    records, which index and unpack alike).

    The statement goes straight to the driver (sqlite3, asyncpg), with the SQL and the type conversions SQLAlchemy
    compiled for it on first use: SQLAlchemy's execution around a statement costs more than the statement (on
    SQLite fifty times more; on PostgreSQL as much as asyncpg's round trip). Every column value must be given (no
    defaults are filled in), and IN lists are not expanded.
    """
    many = isinstance(params, list)
    if many and not params:
        return []
    driver = session.driver if isinstance(session, DrivenSession) and not session.in_block else None
    if driver is None and not isinstance(session, Inline):  # outside `transaction`, or in a savepoint's block
        result = await session.execute(statement, params)
        return list(result.all()) if statement.exported_columns else []
    sql, binds, converters = _compiled(statement, tuple(params[0] if many else params), session.bind.dialect)
    values = [_values(binds, row) for row in params] if many else _values(binds, params)
    if driver is not None:
        if many:
            await driver.executemany(sql, values)
            return []
        rows = await driver.fetch(sql, *values)
    else:
        cursor = session.cursor()
        if many:
            cursor.executemany(sql, values)
            return []
        rows = cursor.execute(sql, values).fetchall()
    if any(converters):
        return [tuple(v if c is None else c(v) for c, v in zip(converters, row, strict=True)) for row in rows]
    return rows


def _values(binds, row: dict) -> list:
    return [row[name] if convert is None else convert(row[name]) for name, convert in binds]


@functools.cache
def _compiled(statement, keys: tuple[str, ...], dialect):
    """The SQL, the bind names in order with their conversions, and the result conversions."""
    compiled = statement.compile(dialect=dialect, column_keys=list(keys))
    binds = [(name, compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect))
             for name in compiled.positiontup]  # fmt: skip
    converters = [c.type.dialect_impl(dialect).result_processor(dialect, None) for c in statement.exported_columns]
    return compiled.string, binds, converters


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
