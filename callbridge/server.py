"""How callbridge is served: uvicorn with read timeouts, a connection limit and the trusted proxies.

uvicorn times out idle keep-alive connections but not a client that sends its headers or body a byte at a time
(slowloris): its HTTP protocol is extended here with a header timeout and a body deadline, a cap on the connections
one client address holds, and a share of the connections kept for the PBXs' lanes.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections import Counter
from typing import Any
from urllib.parse import unquote

import httptools
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from .config import Settings

_TIMED_OUT = b"HTTP/1.1 408 Request Timeout\r\nconnection: close\r\ncontent-length: 0\r\n\r\n"
_BUSY = b"HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\nretry-after: 5\r\ncontent-length: 0\r\n\r\n"
STOP_SECONDS = 2  # a stopping server waits this long for requests under way (a PBX sends again)
PBX_SHARE = 8  # one eighth of the connections is only the PBXs' lanes


class GuardedHttp(HttpToolsProtocol):
    """uvicorn's httptools protocol, which closes a connection (408 if no answer was started) whose request headers
    are not all there within `header_timeout`, or whose body pauses longer than `body_timeout` or, past that grace,
    arrives slower than `body_min_rate` bytes a second on average (a byte every few seconds held a connection for
    ever). One client address holds at most `per_address` connections (a trusted proxy's excepted: it limits its
    own clients); and a request that is not on a PBX's lane is refused (503) once the process holds
    `general_limit` connections, so the PBXs keep the rest."""

    header_timeout: float | None = None  # set by uvicorn_config; worker processes read them from the environment
    body_timeout: float | None = None
    body_min_rate: float = 10_000.0
    per_address: int = 512
    general_limit: int = 3584
    trusted: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    pbx_paths: tuple[str, ...] = ()  # the PBXs' lanes (set by the app: the dialects' route prefixes)
    _held: Counter[str] = Counter()  # connections per client address in this process

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if GuardedHttp.header_timeout is None:
            _configure(Settings())
        self._deadline: asyncio.TimerHandle | None = None
        self._address = self.client[0] if self.client and not _within(self.client[0], self.trusted) else None
        if self._address is not None:
            self._held[self._address] += 1
            if self._held[self._address] > self.per_address:
                transport.write(_BUSY)
                transport.close()
                return
        self._arm(self.header_timeout or None)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self._address is not None:
            self._held[self._address] -= 1
            if not self._held[self._address]:
                del self._held[self._address]
            self._address = None
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._deadline is None:  # a keep-alive connection's next request
            self._arm(self.header_timeout or None)

    def on_headers_complete(self) -> None:
        path = httptools.parse_url(self.url).path.decode("latin-1")
        on_pbx_lane = (unquote(path) if "%" in path else path).startswith(self.pbx_paths)
        self.limit_concurrency = self.config.limit_concurrency if on_pbx_lane else self.general_limit
        super().on_headers_complete()
        self._body_began, self._body_bytes = self.loop.time(), 0
        self._arm(self.body_timeout or None)

    def on_body(self, body: bytes) -> None:
        super().on_body(body)
        if self.body_timeout:
            self._body_bytes += len(body)
            at_rate = self._body_began + self.body_timeout + self._body_bytes / self.body_min_rate
            self._arm(min(self.body_timeout, at_rate - self.loop.time()))

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._disarm()

    def _arm(self, seconds: float | None) -> None:
        self._disarm()
        if seconds is not None:
            self._deadline = self.loop.call_later(max(0.0, seconds), self._timed_out)

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
    GuardedHttp.body_min_rate = settings.body_min_rate_bytes
    GuardedHttp.per_address = max(1, settings.max_connections_per_address)
    GuardedHttp.general_limit = max(1, settings.max_connections - settings.max_connections // PBX_SHARE)
    GuardedHttp.trusted = tuple(_networks(settings.trusted_proxies))


def _networks(addresses: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    found = []
    for part in filter(None, (p.strip() for p in addresses.split(","))):
        try:
            found.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            continue  # a name or a socket path: uvicorn believes it; it is never a peer's address here
    return found


def _within(host: str, networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]) -> bool:
    if not networks:
        return False
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return any(address in network for network in networks)


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
        # then what still runs is cancelled, open card streams included (EventSource connects again to whichever
        # server answers): Ctrl+C and SIGTERM never wait for a browser to leave
        "timeout_graceful_shutdown": STOP_SECONDS,
    }


def uvicorn_config(app: Any, settings: Settings, **options: Any) -> uvicorn.Config:
    return uvicorn.Config(app, **(uvicorn_options(settings) | options))
