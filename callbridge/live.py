"""The live bus: call-card messages fanned out to every open browser stream of this process."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from starlette.responses import StreamingResponse


class LiveBus:
    """In-process publish/subscribe; a slow subscriber loses old messages rather than blocking a PBX."""

    def __init__(self, queue_size: int = 256) -> None:
        self._subscribers: set[asyncio.Queue[dict[str, Any]]] = set()
        self._queue_size = queue_size

    def publish(self, message: dict[str, Any]) -> None:
        for queue in self._subscribers:
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(message)

    @asynccontextmanager
    async def subscribe(self) -> AsyncIterator[asyncio.Queue[dict[str, Any]]]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(self._queue_size)
        self._subscribers.add(queue)
        try:
            yield queue
        finally:
            self._subscribers.discard(queue)


def event_stream(request, bus: LiveBus, wanted: Callable[[dict[str, Any]], bool]) -> StreamingResponse:
    """Server-Sent Events of the bus's messages this listener wants, with keep-alives, until it leaves."""

    async def stream() -> AsyncIterator[str]:
        async with bus.subscribe() as queue:
            yield ": connected\n\n"
            while not await request.is_disconnected():
                try:
                    message = await asyncio.wait_for(queue.get(), 15.0)
                except TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                if wanted(message):
                    body = json.dumps(message, ensure_ascii=False, default=str)
                    yield f"event: {message['type']}\ndata: {body}\n\n"

    return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


def for_employee(employee_id: int | None) -> Callable[[dict[str, Any]], bool]:
    """Messages addressed to this employee or to everyone (all of them when no employee is given)."""

    def wanted(message: dict[str, Any]) -> bool:
        recipients = message.get("recipients")
        return employee_id is None or recipients is None or employee_id in recipients

    return wanted
