"""The queue both backends use to let transactions under way together share one commit."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

MAX_GROUP = 64  # transactions committed together at most, which bounds how long the first one waits


class StoreBusy(RuntimeError):
    """The store did not let us write within the configured wait (another process holds the SQLite file's write
    lock): nothing was written, and the request is to be tried again later."""


@dataclass
class _Group:
    transaction: Any  # the database transaction its members run in: a SQLite connection, or a `_AsyncpgTransaction`
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
    wait_seconds: float | None = None  # how long a transaction waits for its turn and its BEGIN, then StoreBusy

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self._waiting = 0
        self._open: _Group | None = None

    @asynccontextmanager
    async def transaction(self):
        loop = asyncio.get_running_loop()
        deadline = None if self.wait_seconds is None else loop.time() + self.wait_seconds
        self._waiting += 1
        try:
            async with asyncio.timeout_at(deadline):
                await self._lock.acquire()
        except TimeoutError:
            raise StoreBusy("the store was busy with other writes for too long") from None
        finally:
            self._waiting -= 1
        try:
            group = self._open or await self._start(deadline)
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

    async def _start(self, deadline: float | None) -> _Group:
        committed = asyncio.get_running_loop().create_future()
        committed.add_done_callback(lambda f: f.cancelled() or f.exception())  # members that failed never await it
        self._open = _Group(await self._begin(deadline), committed)
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
