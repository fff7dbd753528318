"""The live bus: call-card messages fanned out to every open browser stream of this process.

A stream is a connection held for as long as its holder likes, so each is counted against its holder (an employee,
an API key: the oldest closes past the cap) and against the process (past the total, a new one is refused), lives
at most `lifetime` seconds (EventSource connects again by itself), and checks its credential every few seconds:
a revoked key or an ended session closes it."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.responses import Response, StreamingResponse

from .store import notify

log = logging.getLogger("callbridge.live")


Wanted = Callable[[dict[str, Any]], bool]
StillValid = Callable[[], Awaitable[bool]]
_CLOSE = "close"  # put in a stream's queue to end it (frames always start with "event:" or ":")
KEEP_ALIVE_SECONDS = 15.0


class TooManyStreams(Exception):
    """This process holds as many live streams as it may: a new one would take the PBXs' connections."""


class LiveBus:
    """In-process publish/subscribe of Server-Sent Events frames; a slow subscriber loses old messages rather
    than blocking a PBX.

    A card goes to a thousand open browsers at once: each message is encoded once, and only the streams that
    want it are woken.
    """

    def __init__(self, queue_size: int = 256, max_streams: int = 1024) -> None:
        self._subscribers: dict[asyncio.Queue[str], Wanted] = {}
        self._holders: dict[str, list[asyncio.Queue[str]]] = {}
        self._queue_size = queue_size
        self.max_streams = max_streams

    @property
    def full(self) -> bool:
        return len(self._subscribers) >= self.max_streams

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
    async def subscribe(
        self, wanted: Wanted, holder: str = "", per_holder: int = 0
    ) -> AsyncIterator[asyncio.Queue[str]]:
        """A queue of the frames `wanted`; past `per_holder` streams of one holder, the oldest is told to close."""
        if self.full:
            raise TooManyStreams()
        queue: asyncio.Queue[str] = asyncio.Queue(self._queue_size)
        held = self._holders.setdefault(holder, [])
        while per_holder and len(held) >= per_holder:
            _close(held.pop(0))
        held.append(queue)
        self._subscribers[queue] = wanted
        try:
            yield queue
        finally:
            del self._subscribers[queue]
            if queue in held:
                held.remove(queue)
            if not held:
                self._holders.pop(holder, None)


def _close(queue: asyncio.Queue[str]) -> None:
    if queue.full():
        queue.get_nowait()
    queue.put_nowait(_CLOSE)


class PostgresBus(LiveBus):
    """The bus across server processes: every message goes through PostgreSQL NOTIFY and comes back to each
    process's listener, so a browser sees a card whichever worker received the PBX's request."""

    CHANNEL = "callbridge_live"
    BATCH = 100  # messages sent in one statement at most (each under PostgreSQL's 8000-byte payload limit)

    def __init__(self, url: str, queue_size: int = 256, max_streams: int = 1024) -> None:
        super().__init__(queue_size, max_streams)
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


@dataclass(frozen=True)
class Holder:
    """Who holds a stream: a name its streams are counted under, how many they may have, and how to tell that the
    credential still stands."""

    name: str
    per_holder: int
    still_valid: StillValid
    lifetime: float = 3600.0
    recheck: float = 10.0  # seconds between reads of the credential


def event_stream(bus: LiveBus, wanted: Wanted, holder: Holder) -> Response:
    """Server-Sent Events of the bus's messages this listener wants, with keep-alives, until it leaves (Starlette
    ends the stream when the browser disconnects), its credential ends, a newer stream of its holder takes its
    place, or its lifetime is over; 503 when the process holds all the streams it may."""
    if bus.full:
        return Response("too many live streams: try again later", 503, headers={"Retry-After": "5"})

    async def stream() -> AsyncIterator[str]:
        loop = asyncio.get_running_loop()
        ends, recheck = loop.time() + holder.lifetime, loop.time() + holder.recheck
        async with bus.subscribe(wanted, holder.name, holder.per_holder) as queue:
            yield ": connected\nretry: 3000\n\n"
            while True:
                wait = min(KEEP_ALIVE_SECONDS, recheck - loop.time(), ends - loop.time())
                try:
                    async with asyncio.timeout(max(0.0, wait)):
                        frame = await queue.get()
                except TimeoutError:
                    frame = ": keep-alive\n\n"
                if frame == _CLOSE or loop.time() >= ends:
                    return
                if loop.time() >= recheck:
                    if not await holder.still_valid():
                        return
                    recheck = loop.time() + holder.recheck
                yield frame

    return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


def for_employee(employee_id: int | None) -> Wanted:
    """Messages addressed to this employee or to everyone (all of them when no employee is given)."""

    def wanted(message: dict[str, Any]) -> bool:
        recipients = message.get("recipients")
        return employee_id is None or recipients is None or employee_id in recipients

    return wanted
