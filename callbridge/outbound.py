"""The one outbound policy: every request callbridge makes goes through `PolicyTransport`.

Only http and https. The host is resolved here and refused when any of its addresses is not a public one
(loopback, private, link-local with the cloud metadata address, shared, reserved, multicast), unless the host is
one an admin set for the integration (its PBX's API address: that host on that port only) or is in the admin allow-list
(`CALLBRIDGE_OUTBOUND_ALLOW`, hosts and CIDRs). The connection then goes to the very address that was checked, so
a name cannot resolve to another one in between; httpx sends every redirect through here again. An IPv6 address
that carries an IPv4 one (mapped, compatible, NAT64, 6to4) is judged by that one. Answers are read with a cap.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any

import httpx

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
ANSWER_CAP = 16_000_000  # bytes of a PBX's API answer read at most (a day's call report fits)
ALLOW_SETTING = "CALLBRIDGE_OUTBOUND_ALLOW"


class Refused(httpx.TransportError):
    """The policy does not let callbridge fetch from there; the message says which setting would."""


Endpoint = tuple[str, int]


def _endpoint(url: httpx.URL) -> Endpoint:
    return url.host.lower(), url.port or (443 if url.scheme == "https" else 80)


def admin_hosts(settings: Mapping[str, Any]) -> frozenset[Endpoint]:
    """The host and port of each http(s) address an admin put into an integration's settings (its PBX's API):
    trusted as configured, not the host's other ports (an internal service beside the PBX)."""
    endpoints = set()
    for value in settings.values():
        if isinstance(value, str) and value.lower().startswith(("http://", "https://")):
            try:
                endpoints.add(_endpoint(httpx.URL(value)))
            except httpx.InvalidURL:
                continue
    return frozenset(endpoints)


class OutboundPolicy:
    """Which hosts and addresses callbridge may connect to."""

    def __init__(self, allow: str = "") -> None:
        self.hosts: set[str] = set()
        self.networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for item in filter(None, (part.strip().lower() for part in allow.split(","))):
            try:
                self.networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                self.hosts.add(item)

    async def address(self, host: str, port: int, trusted: frozenset[Endpoint]) -> str:
        """The checked address to connect to for `host`, or Refused."""
        host = host.lower()
        addresses = await _resolve(host, port)
        if (host, port) in trusted or host in self.hosts:
            return str(addresses[0])
        for address in addresses:
            if not _public(address) and not any(address in n for n in self.networks):
                raise Refused(
                    f"callbridge does not fetch from {host}: it is a {_kind(address)} address; "
                    f"an admin can allow it with {ALLOW_SETTING}={host}"
                )
        return str(addresses[0])


# IPv6 forms that carry an IPv4 address a router or the host's own stack may deliver to: judged by that address
_COMPATIBLE = ipaddress.ip_network("::/96")  # ::a.b.c.d, deprecated but still routed by some stacks
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
_SITE_LOCAL = ipaddress.ip_network("fec0::/10")  # deprecated, yet Python calls it global


def embedded_ipv4(address: Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for (mapped, compatible, NAT64, 6to4, Teredo's client), if any."""
    if address.version == 4 or address.is_loopback or address.is_unspecified:
        return None
    if address.ipv4_mapped or address.sixtofour:
        return address.ipv4_mapped or address.sixtofour
    if address.teredo:
        return address.teredo[1]
    if address in _COMPATIBLE or any(address in network for network in _NAT64):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _public(address: Address) -> bool:
    inner = embedded_ipv4(address)
    if inner is not None:
        return _public(inner)
    return address.is_global and not address.is_multicast and address not in _SITE_LOCAL


def _kind(address: Address) -> str:
    address = embedded_ipv4(address) or address
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    return "private" if address.is_private else "reserved"


async def _resolve(host: str, port: int) -> list[Address]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise httpx.ConnectError(f"{host} could not be resolved") from exc
    # an IPv6 answer may carry a zone (fe80::1%eth0); IPv4 first, since only the first address is connected to
    found = dict.fromkeys(ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos)
    return sorted(found, key=lambda address: address.version)


def excerpt(text: str, limit: int = 200) -> str:
    """A peer's words as we repeat them (in an error, a log, a page): one line, control characters escaped, short."""
    line = " ".join(text.split()).translate(_CONTROL)
    return line if len(line) <= limit else line[: limit - 1] + "…"


_CONTROL = {code: f"\\x{code:02x}" for code in (*range(32), 127)}


class _Capped(httpx.AsyncByteStream):
    """A peer's answer read at most to `cap` bytes: the rest is never read (the connection is dropped), so an answer
    of gigabytes costs what its first bytes do. What was cut is cut silently: a status and an excerpt are whole, and a
    JSON answer cut short fails to parse like any other malformed one."""

    def __init__(self, inner: httpx.AsyncByteStream, cap: int) -> None:
        self._inner, self._cap = inner, cap

    async def __aiter__(self) -> AsyncIterator[bytes]:
        left = self._cap
        async for chunk in self._inner:
            yield chunk[:left]
            left -= len(chunk)
            if left <= 0:
                break

    async def aclose(self) -> None:
        await self._inner.aclose()


class PolicyTransport(httpx.AsyncBaseTransport):
    """An httpx transport that asks the policy before every request, connects to the address it checked, and reads
    at most `max_answer` bytes of what comes back."""

    def __init__(
        self,
        policy: OutboundPolicy,
        inner: httpx.AsyncBaseTransport,
        trusted: Iterable[Endpoint] = (),
        max_answer: int = ANSWER_CAP,
    ) -> None:
        self._policy, self._inner, self._trusted = policy, inner, frozenset((h.lower(), p) for h, p in trusted)
        self._max_answer = max_answer

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if url.scheme not in ("http", "https"):
            raise Refused(f"callbridge only fetches http and https addresses, not {url.scheme}:", request=request)
        host, port = _endpoint(url)
        address = await self._policy.address(host, port, self._trusted)
        pinned = httpx.Request(
            request.method,
            url.copy_with(host=address),
            headers=request.headers,  # Host: still the name
            stream=request.stream,
            extensions=request.extensions | ({"sni_hostname": url.host} if url.scheme == "https" else {}),
        )
        response = await self._inner.handle_async_request(pinned)
        response.stream = _Capped(response.stream, self._max_answer)  # type: ignore[arg-type]
        return response

    async def aclose(self) -> None:
        """The shared connection pool is closed by its owner."""
