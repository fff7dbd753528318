"""SQLite, the embedded default: one writer at a time, run on the loop's own thread, and transactions queued
behind each other committed together (group commit), each in a savepoint of its own."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from .codec import JSON_CODEC
from .commits import MAX_GROUP, StoreBusy, _Group, _SharedCommits


class SqliteSession:
    """A synchronous SQLAlchemy connection, and for a writer a session made when first needed, behind the
    awaitable methods the store calls.

    SQLite writes and point reads run on the event loop's own thread, with no thread hop or greenlet switch around
    each statement. Nothing here waits for a lock (busy_timeout 0; `Database.transaction` retries BEGIN without
    blocking the loop), and long reads stay on aiosqlite's threads.

    A writer keeps its work in a savepoint of its own (`savepoint`, in the transaction it shares with others),
    taken with its first statement straight on sqlite3 rather than through SQLAlchemy.
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
        that are off, a call already in line), and then takes none."""
        self._savepoints.append(None)
        try:
            yield
        except BaseException:
            if (savepoint := self._savepoints.pop()) is not None:
                savepoint.rollback()
            raise
        if (savepoint := self._savepoints.pop()) is not None:
            savepoint.commit()


def owner_only(url: str) -> None:
    """Make a SQLite database file that does not exist yet readable by its owner only, before SQLite makes it as the
    umask says: SQLite gives its -wal and -shm files the database file's permissions."""
    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    try:
        os.close(os.open(database, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except (FileExistsError, FileNotFoundError):  # there already, or no folder for it: SQLite says so itself
        pass


def _lower(text: object) -> object:
    return text.lower() if isinstance(text, str) else text


def _sqlite_pragmas(busy_timeout_ms: int, autocheckpoint: int | None = None):
    def on_connect(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None  # let SQLAlchemy emit BEGIN itself (SQLAlchemy's pysqlite recipe)
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
        if autocheckpoint is not None:
            cursor.execute(f"PRAGMA wal_autocheckpoint={autocheckpoint}")
        cursor.close()
        # SQLite's own lower() knows only ASCII: "Ромашка" ILIKE "ромашка" was false. Python's knows every alphabet
        # (and gives the same for ASCII), so case-insensitive search works as on PostgreSQL
        dbapi_connection.create_function("lower", 1, _lower, deterministic=True)

    return on_connect


def _sqlite_begin(connection) -> None:
    """Writers start with BEGIN IMMEDIATE: a deferred transaction that reads first and then writes fails at once
    ("database is locked") when another process wrote meanwhile, where an immediate one takes its turn. The group
    commit's writer began its transaction on the driver already (`_begin_immediate`)."""
    if connection.connection.driver_connection.in_transaction:
        return
    writes = connection.get_execution_options().get("writes")
    connection.exec_driver_sql("BEGIN IMMEDIATE" if writes else "BEGIN")


def _inline_engine(url: str) -> Engine:
    """The synchronous SQLite engine `SqliteSession` runs on the loop's thread; it never waits for a lock, and
    leaves the WAL's checkpoints to `_Checkpoints` (SQLite's own at four times its cap, should that thread fall
    behind)."""
    engine = create_engine(make_url(url).set(drivername="sqlite"), **JSON_CODEC)
    _sqlite_events(engine, busy_timeout_ms=0, autocheckpoint=4 * WAL_CAP_PAGES)
    return engine


def _sqlite_events(engine: Engine, busy_timeout_ms: int, autocheckpoint: int | None = None) -> None:
    event.listen(engine, "connect", _sqlite_pragmas(busy_timeout_ms, autocheckpoint))
    event.listen(engine, "begin", _sqlite_begin)


WAL_CAP_PAGES = 4_000  # the WAL's length (4 KiB pages) at which the writer has it start again
CHECKPOINT_SECONDS = 0.05  # how soon after a write the checkpoint thread copies the WAL into the database


class _Checkpoints:
    """The WAL copied into the database file on a thread of its own, soon after each write.

    Left to itself, SQLite's writer does it after the commit that makes the WAL 1,000 pages long (every ~30 groups
    of PBX events): a pause of several milliseconds on the loop's thread, for two fsyncs and every page it copies.
    Here the writer only says it wrote (`wrote`), and a passive checkpoint on this thread's connection copies what
    is committed while the loop goes on (sqlite3 lets go of the GIL).

    SQLite starts the WAL again from its first page at a writer's BEGIN when all of it is copied, which under
    writes that never pause may not happen. When the WAL reaches `WAL_CAP_PAGES` the thread stops and the writer
    checkpoints at its next commit, as SQLite's own would, but copying only the pages written since the thread's
    last pass; its next BEGIN starts the WAL again."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._wrote = threading.Event()
        self._writers_turn = False  # the WAL reached the cap: the writer checkpoints at its next commit
        self._done = threading.Event()
        self._closing = False
        self._thread: threading.Thread | None = None  # started by the first write

    def wrote(self, writer: sqlite3.Connection) -> None:
        """After the writer's commit."""
        if self._writers_turn:
            self._writers_turn = False
            with suppress(sqlite3.Error):  # another process checkpoints: the next pass will do
                writer.execute("PRAGMA wal_checkpoint(PASSIVE)")
            self._done.set()
        if self._wrote.is_set():
            return
        self._wrote.set()
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="callbridge-checkpoints", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        connection = sqlite3.connect(self._path, timeout=0, isolation_level=None, check_same_thread=False)
        try:
            while not self._closing:
                self._wrote.wait()
                time.sleep(CHECKPOINT_SECONDS)  # a burst of writes is copied once
                self._wrote.clear()
                try:
                    _, length, _ = connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                except sqlite3.Error:  # another process checkpoints, or the file is gone: next time
                    continue
                if length >= WAL_CAP_PAGES:
                    self._writers_turn = True
                    self._done.wait()
                    self._done.clear()
        finally:
            connection.close()

    def close(self) -> None:
        if self._thread is not None:
            self._closing = True
            self._wrote.set()
            self._done.set()
            self._thread.join(5)


class _GroupCommit(_SharedCommits):
    """SQLite's one writer: transactions queued behind each other share one SQLite transaction, each in a savepoint
    of its own.

    A commit writes every page the transaction touched to the WAL, and transactions that follow each other touch
    the same pages (the ends of the journal, the calls and their legs): a group writes them once. One that fails
    rolls back its savepoint only (`SqliteSession`).
    """

    limit = MAX_GROUP

    def __init__(self, engine: Engine, wait_seconds: float) -> None:
        super().__init__()
        self._engine = engine
        self.wait_seconds = wait_seconds
        self._connection: Connection | None = None  # the one writer's, kept from one group to the next
        path = engine.url.database
        self._checkpoints = _Checkpoints(path) if path and path != ":memory:" else None

    async def _begin(self, deadline: float | None) -> Connection:
        if self._connection is None or self._connection.invalidated:
            self._connection = self._engine.connect()
        connection = self._connection
        await _begin_immediate(connection.connection.driver_connection, deadline)
        connection.begin()  # SQLAlchemy's account of it: pysqlite sends nothing, the driver is in a transaction
        return connection

    def writable(self) -> bool:
        """Whether a write could start now, asked without waiting: not if another process holds the write lock (a
        BEGIN IMMEDIATE that cannot wait says so at once)."""
        if self._open is not None:
            return True  # we are the writer
        with self._engine.connect() as connection:
            try:
                connection.begin()
            except OperationalError as exc:
                if "locked" in str(exc) or "busy" in str(exc):
                    return False
                raise
            connection.rollback()
        return True

    @asynccontextmanager
    async def _member(self, group: _Group) -> AsyncIterator[SqliteSession]:
        own = SqliteSession(group.transaction, savepoint="callbridge_member")
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
            self._connection = None  # in a state nobody knows: the next group starts on a new one
            with suppress(Exception):
                group.transaction.close()
        else:
            group.committed.set_result(None)
            if self._checkpoints is not None:
                self._checkpoints.wrote(group.transaction.connection.driver_connection)

    def close(self) -> None:
        if self._open is not None:
            self._end_now(self._open)
        if self._connection is not None:
            self._connection.close()
            self._connection = None
        if self._checkpoints is not None:
            self._checkpoints.close()
            self._checkpoints = None


async def _begin_immediate(driver: sqlite3.Connection, deadline: float | None) -> None:
    """Start the SQLite write transaction on the driver (SQLAlchemy's execution of a BEGIN costs more than the
    BEGIN), waiting without blocking the loop while another process writes, until `deadline` (loop time): then
    StoreBusy."""
    loop = asyncio.get_running_loop()
    delay = 0.002
    while True:
        try:
            driver.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc):
                raise
            if deadline is not None and loop.time() > deadline:
                raise StoreBusy("another process holds the database's write lock") from None
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.1)
