"""The live bus: call-card messages fanned out to every open browser stream of this process."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import orjson
from starlette.responses import StreamingResponse

from .store import notify

log = logging.getLogger("callbridge.live")


Wanted = Callable[[dict[str, Any]], bool]


class LiveBus:
    """In-process publish/subscribe of Server-Sent Events frames; a slow subscriber loses old messages rather
    than blocking a PBX.

    A card goes to a thousand open browsers at once: each message is encoded once, and only the streams that
    want it are woken.
    """

    def __init__(self, queue_size: int = 256) -> None:
        self._subscribers: dict[asyncio.Queue[str], Wanted] = {}
        self._queue_size = queue_size

    def publish(self, message: dict[str, Any]) -> None:
        frame = None
        for queue, wanted in self._subscribers.items():
            if not wanted(message):
                continue
            frame = frame or sse_frame(message)
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(frame)

    @asynccontextmanager
    async def subscribe(self, wanted: Wanted) -> AsyncIterator[asyncio.Queue[str]]:
        queue: asyncio.Queue[str] = asyncio.Queue(self._queue_size)
        self._subscribers[queue] = wanted
        try:
            yield queue
        finally:
            del self._subscribers[queue]


class PostgresBus(LiveBus):
    """The bus across server processes: every message goes through PostgreSQL NOTIFY and comes back to each
    process's listener, so a browser sees a card whichever worker received the PBX's request."""

    CHANNEL = "callbridge_live"
    BATCH = 100  # messages sent in one statement at most (each under PostgreSQL's 8000-byte payload limit)

    def __init__(self, url: str, queue_size: int = 256) -> None:
        super().__init__(queue_size)
        self._url = url
        self._outgoing: asyncio.Queue[str] = asyncio.Queue()
        self._task: asyncio.Task | None = None
        self.connected = asyncio.Event()

    def publish(self, message: dict[str, Any]) -> None:
        payload = _dumps(message)
        if len(payload) > notify.MAX_PAYLOAD:  # too big for NOTIFY: this process's browsers only
            log.warning("live message of %s bytes shown on this worker only", len(payload))
            super().publish(orjson.loads(payload))
            return
        self._outgoing.put_nowait(payload.decode())

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        """Keep a listening connection, reconnecting when it drops; send what is published, in order, all that
        queued up meanwhile at once."""
        pending: list[str] = []
        while True:
            try:
                async with notify.channel(self._url, self.CHANNEL, self._received) as channel:
                    self.connected.set()
                    while True:
                        if not pending:
                            try:
                                pending.append(await asyncio.wait_for(self._outgoing.get(), 10.0))
                            except TimeoutError:
                                await channel.check()
                                continue
                        while not self._outgoing.empty() and len(pending) < self.BATCH:
                            pending.append(self._outgoing.get_nowait())
                        await channel.notify(pending)
                        pending = []
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database went away: try again shortly, keeping the message
                self.connected.clear()
                log.warning("live bus connection lost (%s); reconnecting", exc.__class__.__name__)
                await asyncio.sleep(1.0)

    def _received(self, payload: str) -> None:
        super().publish(orjson.loads(payload))


def _dumps(message: dict[str, Any]) -> bytes:
    """A message on its way to the other processes (orjson: every call event sends some, every process reads
    them); times and anything else that is not JSON as `sse_frame` gives them."""
    return orjson.dumps(message, default=str, option=orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_NON_STR_KEYS)


def sse_frame(message: dict[str, Any]) -> str:
    return f"event: {message['type']}\ndata: {json.dumps(message, ensure_ascii=False, default=str)}\n\n"


def event_stream(bus: LiveBus, wanted: Wanted) -> StreamingResponse:
    """Server-Sent Events of the bus's messages this listener wants, with keep-alives, until it leaves
    (Starlette ends the stream when the browser disconnects)."""

    async def stream() -> AsyncIterator[str]:
        async with bus.subscribe(wanted) as queue:
            yield ": connected\n\n"
            while True:
                try:
                    async with asyncio.timeout(15.0):
                        frame = await queue.get()
                except TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                yield frame

    return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


def for_employee(employee_id: int | None) -> Wanted:
    """Messages addressed to this employee or to everyone (all of them when no employee is given)."""

    def wanted(message: dict[str, Any]) -> bool:
        recipients = message.get("recipients")
        return employee_id is None or recipients is None or employee_id in recipients

    return wanted
