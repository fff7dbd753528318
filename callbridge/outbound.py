"""The one outbound policy: every request callbridge makes goes through `PolicyTransport`.

Only http and https. The host is resolved here and refused when any of its addresses is not a public one
(loopback, private, link-local with the cloud metadata address, shared, reserved, multicast), unless the host is
one an admin set for the integration (its PBX's API address: trusted on any port) or is in the admin allow-list
(`CALLBRIDGE_OUTBOUND_ALLOW`, hosts and CIDRs). The connection then goes to the very address that was checked, so
a name cannot resolve to another one in between; httpx sends every redirect through here again.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable, Mapping
from typing import Any

import httpx

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
ALLOW_SETTING = "CALLBRIDGE_OUTBOUND_ALLOW"


class Refused(httpx.TransportError):
    """The policy does not let callbridge fetch from there; the message says which setting would."""


def admin_hosts(settings: Mapping[str, Any]) -> frozenset[str]:
    """The hosts of the http(s) addresses an admin put into an integration's settings (its PBX's API)."""
    hosts = set()
    for value in settings.values():
        if isinstance(value, str) and value.lower().startswith(("http://", "https://")):
            try:
                hosts.add(httpx.URL(value).host.lower())
            except httpx.InvalidURL:
                continue
    return frozenset(hosts)


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

    async def address(self, host: str, port: int, trusted: frozenset[str]) -> str:
        """The checked address to connect to for `host`, or Refused."""
        host = host.lower()
        addresses = await _resolve(host, port)
        if host in trusted or host in self.hosts:
            return str(addresses[0])
        for address in addresses:
            if (not address.is_global or address.is_multicast) and not any(address in n for n in self.networks):
                raise Refused(
                    f"callbridge does not fetch from {host}: it is a {_kind(address)} address; "
                    f"an admin can allow it with {ALLOW_SETTING}={host}"
                )
        return str(addresses[0])


def _kind(address: Address) -> str:
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


class PolicyTransport(httpx.AsyncBaseTransport):
    """An httpx transport that asks the policy before every request, and connects to the address it checked."""

    def __init__(self, policy: OutboundPolicy, inner: httpx.AsyncBaseTransport, trusted: Iterable[str] = ()) -> None:
        self._policy, self._inner, self._trusted = policy, inner, frozenset(h.lower() for h in trusted)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if url.scheme not in ("http", "https"):
            raise Refused(f"callbridge only fetches http and https addresses, not {url.scheme}:", request=request)
        port = url.port or (443 if url.scheme == "https" else 80)
        address = await self._policy.address(url.host, port, self._trusted)
        pinned = httpx.Request(
            request.method,
            url.copy_with(host=address),
            headers=request.headers,  # Host: still the name
            stream=request.stream,
            extensions=request.extensions | ({"sni_hostname": url.host} if url.scheme == "https" else {}),
        )
        return await self._inner.handle_async_request(pinned)

    async def aclose(self) -> None:
        """The shared connection pool is closed by its owner."""
