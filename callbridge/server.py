"""How callbridge is served: uvicorn with read timeouts, a connection limit and the trusted proxies.

uvicorn times out idle keep-alive connections but not a client that sends its headers or body a byte at a time
(slowloris): its HTTP protocol is extended here with a header timeout and a body-pause timeout.
"""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from .config import Settings

_TIMED_OUT = b"HTTP/1.1 408 Request Timeout\r\nconnection: close\r\ncontent-length: 0\r\n\r\n"


class GuardedHttp(HttpToolsProtocol):
    """uvicorn's httptools protocol, which closes a connection whose request headers are not all there within
    `header_timeout` or whose body stops for longer than `body_timeout` (408 if no answer was started)."""

    header_timeout: float | None = None  # set by uvicorn_config; worker processes read them from the environment
    body_timeout: float | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if GuardedHttp.header_timeout is None:
            _configure(Settings())
        self._deadline: asyncio.TimerHandle | None = None
        self._arm(self.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._deadline is None:  # a keep-alive connection's next request
            self._arm(self.header_timeout)

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._arm(self.body_timeout)

    def on_body(self, body: bytes) -> None:
        super().on_body(body)
        self._arm(self.body_timeout)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._disarm()

    def _arm(self, seconds: float | None) -> None:
        self._disarm()
        if seconds:
            self._deadline = self.loop.call_later(seconds, self._timed_out)

    def _disarm(self) -> None:
        if getattr(self, "_deadline", None) is not None:
            self._deadline.cancel()
            self._deadline = None

    def _timed_out(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if self.cycle is None or not self.cycle.response_started:
            self.transport.write(_TIMED_OUT)
        self.transport.close()


def _configure(settings: Settings) -> None:
    GuardedHttp.header_timeout = settings.header_timeout_seconds
    GuardedHttp.body_timeout = settings.body_timeout_seconds


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """What every callbridge server runs with, the CLI's and the tests' alike."""
    _configure(settings)
    proxies = settings.trusted_proxies.strip()
    return {
        "http": "callbridge.server:GuardedHttp",
        "limit_concurrency": settings.max_connections,
        "proxy_headers": bool(proxies),
        "forwarded_allow_ips": proxies or None,
        "server_header": False,
    }


def uvicorn_config(app: Any, settings: Settings, **options: Any) -> uvicorn.Config:
    return uvicorn.Config(app, **(uvicorn_options(settings) | options))
