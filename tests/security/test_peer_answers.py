"""What a peer answers is read with a cap and repeated only as a short, escaped excerpt; the outbound policy judges
the IPv4 address an IPv6 one carries, and trusts a PBX's host only on the port an admin configured."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from callbridge import outbound, redact

from ..conftest import settings_for
from ..helpers import running_server, serve_app
from .conftest import make_install

CHUNK = 1 << 20


@contextmanager
def flood(sent: list[int], status: int = 200, total: int = 1 << 30) -> Iterator[str]:
    """A peer that answers every request with `total` bytes (a gigabyte) as fast as they are read, counting what it
    managed to send: a plain socket, so a reader that stops reading stops the count."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    stop = threading.Event()

    def answer(connection: socket.socket) -> None:
        with connection:
            connection.recv(65536)
            head = f"HTTP/1.1 {status} X\r\ncontent-type: text/plain\r\ncontent-length: {total}\r\n\r\n"
            try:
                connection.sendall(head.encode())
                while sent[0] < total and not stop.is_set():
                    connection.sendall(b"x" * CHUNK)
                    sent[0] += CHUNK
            except OSError:
                pass

    def serve() -> None:
        while not stop.is_set():
            try:
                connection, _ = server.accept()
            except TimeoutError:
                continue
            threading.Thread(target=answer, args=(connection,), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(5)
        server.close()


async def test_an_endless_answer_is_read_only_to_the_cap():
    sent = [0]
    with flood(sent) as peer:
        transport = outbound.PolicyTransport(outbound.OutboundPolicy("127.0.0.1"), httpx.AsyncHTTPTransport(),
                                              max_answer=4000)  # fmt: skip
        async with httpx.AsyncClient(transport=transport, timeout=10) as http:
            response = await http.get(f"{peer}/error-page")
    assert response.status_code == 200 and len(response.content) == 4000
    assert sent[0] < 64 * CHUNK  # the connection was dropped, not drained: a gigabyte was on offer


async def test_a_webhook_receiver_answering_a_gigabyte_costs_a_few_kilobytes(services, database_url, tmp_path):
    """The attack of the issue: a webhook test delivery to a receiver whose error page never ends."""
    sent = [0]
    with flood(sent, status=500) as receiver:
        with running_server(settings_for(database_url, tmp_path, outbound_allow="127.0.0.1")) as url:
            install = await make_install(services, url)
            async with httpx.AsyncClient(base_url=url, timeout=30,
                                         headers={"Authorization": f"Bearer {install.api_key}"}) as api:  # fmt: skip
                hook = (await api.post("/api/webhooks", json={"url": f"{receiver}/hook"})).json()
                delivery = (await api.post(f"/api/webhooks/{hook['id']}/test")).json()
    assert sent[0] < 64 * CHUNK
    assert delivery["status"] != "done" and delivery["response_code"] == 500
    assert len(delivery["error"]) < 300 and "500" in delivery["error"]


@pytest.mark.parametrize("address", [
    "::7f00:1",  # ::127.0.0.1, IPv4-compatible
    "64:ff9b::7f00:1", "64:ff9b::a00:1", "64:ff9b:1::a9fe:a9fe",  # NAT64 of loopback, 10.0.0.1, metadata
    "2002:7f00:1::1", "2002:a9fe:a9fe::",  # 6to4 of loopback and of the metadata address
    "::ffff:10.0.0.1", "fec0::1",  # mapped, and the deprecated site-local range
])  # fmt: skip
async def test_ipv6_forms_of_internal_addresses_are_refused(address):
    with pytest.raises(outbound.Refused):
        await outbound.OutboundPolicy().address(address, 80, frozenset())


@pytest.mark.parametrize("address", ["64:ff9b::808:808", "2002:808:808::1", "2a00:1450:4010::65"])
async def test_ipv6_forms_of_public_addresses_pass(address):
    assert await outbound.OutboundPolicy().address(address, 80, frozenset()) == address


def internal_pages():
    async def page(request):
        status = 403 if request.method == "POST" else 200
        return PlainTextResponse("SECRET internal admin\nline two " + "y" * 5000, status_code=status)

    return Starlette(routes=[Route("/{path:path}", page, methods=["GET", "POST"])])


async def test_a_pbx_host_is_trusted_only_on_its_configured_port():
    with serve_app(internal_pages()) as pbx, serve_app(internal_pages()) as beside:
        pbx_port, other_port = int(pbx.rsplit(":", 1)[1]), int(beside.rsplit(":", 1)[1])
        trusted = outbound.admin_hosts({"pbx_url": f"{pbx}/api"})
        assert trusted == {("127.0.0.1", pbx_port)}
        transport = outbound.PolicyTransport(outbound.OutboundPolicy(), httpx.AsyncHTTPTransport(), trusted)
        async with httpx.AsyncClient(transport=transport) as http:
            assert (await http.get(f"{pbx}/api")).status_code == 200
            with pytest.raises(outbound.Refused, match="loopback"):
                await http.get(f"http://127.0.0.1:{other_port}/admin")


async def test_the_connection_check_repeats_a_short_escaped_excerpt(services, database_url, tmp_path):
    """An admin points an integration's PBX address at an internal page: the check shows a status and a line."""
    from callbridge.flows import integrations as integration_flows
    from callbridge.store import integrations

    with serve_app(internal_pages()) as internal:
        async with services.db.transaction() as session:
            pbx = {"pbx_url": f"{internal}/x", "pbx_token": "t"}
            row = await integrations.add_integration(session, kind="planfix", name="x", settings=pbx)
        said = await integration_flows.check_integration(services, row.id)
    assert "\n" not in said and len(said) < 300 and "SECRET" in said  # a short excerpt, one line


def test_a_peers_line_breaks_cannot_forge_a_log_line(caplog):
    logger = logging.getLogger("callbridge.test")
    filter_ = redact.RedactSecrets([redact.SECRET_IN_QUERY])
    forged = "503 busy\n2026-12-07 10:00:00 INFO admin signed in from 10.0.0.1"
    record = logger.makeRecord("callbridge.test", logging.WARNING, __file__, 1, "receiver said: %s", (forged,), None)
    filter_.filter(record)
    line = record.getMessage()
    assert "\n" not in line and "\\n2026-12-07" in line
    record = logger.makeRecord("x", logging.WARNING, __file__, 1, f"receiver said: {forged}\r", (), None)
    filter_.filter(record)
    assert "\n" not in record.getMessage() and "\r" not in record.getMessage()
