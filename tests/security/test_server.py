"""`callbridge serve` as an admin runs it: no secret in its log, and slow clients cannot hold it."""

from __future__ import annotations

import asyncio
import io
import logging
import time

import httpx

from callbridge import redact
from callbridge.store import integrations

from ..conftest import settings_for
from ..helpers import running_server, serve_process
from .conftest import make_install


async def test_the_log_of_real_requests_holds_no_token_channel_key_or_uis_secret(services, database_url, tmp_path):
    with serve_process(database_url, tmp_path) as (url, _process):
        install = await make_install(services, url)
        async with services.db.transaction() as session:
            uis = await integrations.add_integration(session, kind="uis", name="UIS", settings={})
            desk = await integrations.add_integration(session, kind="helpdesk", name="HDE", settings={})
        async with httpx.AsyncClient(base_url=url, timeout=10) as http:
            await http.post(f"/hooks/uis/{uis.id}/{uis.token}", json={"notification_name": "x"})
            await http.post(f"/api/v2/telephony/calls/@{desk.id}-{desk.token}/", data={"action": "create_call"})
            await http.post(f"/api/v2/telephony/calls/@{desk.id}-{desk.token}", data={"action": "nope"})
            await http.post(f"/hooks/planfix/{install.integration_id}", data={"cmd": "ping",
                                                                             "planfix_token": install.token})
            await http.get("/api/calls", headers={"Authorization": f"Bearer {install.api_key}"})
            # credentials put in the URL, as scripts and some PBXs do
            await http.post(f"/hooks/planfix/{install.integration_id}?cmd=ping&planfix_token={install.token}")
            await http.get(f"/api/calls?page=1&api_key={install.api_key}&x=1")
        await asyncio.sleep(0.3)
    log = (tmp_path / "server.log").read_text()
    assert f"/hooks/uis/{uis.id}/***" in log and f"%40{desk.id}-***" in log  # the requests were logged
    assert "?cmd=ping&planfix_token=*** " in log and "?page=1&api_key=***&x=1 " in log
    for secret in (uis.token, desk.token, install.token, install.api_key):
        assert secret not in log


def test_a_credential_in_the_text_of_a_logged_error_is_masked_in_its_traceback():
    """An error raised with the URL it failed on (the form httpx and many clients give) and logged with
    log.exception: the traceback is printed with the token masked, and the message too."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    logger = logging.getLogger("callbridge.test_redact")
    logger.addHandler(handler)
    root = logging.getLogger()
    root.addHandler(handler)  # install() filters the handlers of the root and callbridge loggers
    try:
        redact.install([])
        try:
            raise ValueError("could not fetch https://crm.example/api?id=7&access_token=s3cr3t-77")
        except ValueError:
            logger.exception("the fetch of %s failed", "https://crm.example/api?access_token=s3cr3t-77")
    finally:
        root.removeHandler(handler)
        logger.removeHandler(handler)
    text = out.getvalue()
    assert "ValueError: could not fetch https://crm.example/api?id=7&access_token=***" in text
    assert "api?access_token=*** failed" in text and "s3cr3t-77" not in text


async def slow_client(url: str, request: bytes, stop: float) -> tuple[float, bytes]:
    """Sends the request a byte every half second; returns when the server closed it, and what it answered."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    started, answer = time.monotonic(), b""
    try:
        for byte in request:
            writer.write(bytes([byte]))
            await writer.drain()
            try:
                answer += await asyncio.wait_for(reader.read(1000), 0.5)
            except TimeoutError:
                continue
            if reader.at_eof() or time.monotonic() > stop:
                break
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()
    return time.monotonic() - started, answer


async def test_clients_that_send_a_byte_at_a_time_are_cut_off(services, database_url, tmp_path):
    with serve_process(database_url, tmp_path, header_timeout_seconds="2", body_timeout_seconds="2") as (url, _):
        install = await make_install(services, url)
        headers = b"GET /login HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100
        body = (f"POST /hooks/planfix/{install.integration_id} HTTP/1.1\r\nHost: x\r\n"
                "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\n").encode()  # fmt: skip
        stop = time.monotonic() + 30
        clients = [slow_client(url, headers, stop) for _ in range(150)]

        async def stalled_body() -> tuple[float, bytes]:
            host, port = url.removeprefix("http://").split(":")
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(body + b"cmd=")  # the headers whole, then the body stops
            started = time.monotonic()
            answer = await asyncio.wait_for(reader.read(), 30)
            writer.close()
            return time.monotonic() - started, answer

        async def others() -> list[int]:
            await asyncio.sleep(0.5)
            async with httpx.AsyncClient(timeout=5) as http:
                return [(await http.get(f"{url}/login")).status_code for _ in range(5)]

        *cut, served = await asyncio.gather(*clients, *(stalled_body() for _ in range(50)), others())
    assert served == [200] * 5  # meanwhile the server answers everyone else
    assert all(seconds < 10 for seconds, _ in cut), sorted(seconds for seconds, _ in cut)[-5:]
    assert all(answer.startswith(b"HTTP/1.1 408") for _, answer in cut), {answer[:30] for _, answer in cut}


async def trickle(url: str, request: bytes, stop: float, source: str = "127.0.0.1") -> tuple[float, bytes]:
    """Sends the request's headers whole, then its body a byte every half second (from `source`, a loopback
    address of the attacker's); returns when the server closed it, and what it answered."""
    host, port = url.removeprefix("http://").split(":")
    try:
        reader, writer = await asyncio.open_connection(host, int(port), local_addr=(source, 0))
    except OSError:
        return 0.0, b"refused"
    head, body = request.split(b"\r\n\r\n", 1)
    started, answer = time.monotonic(), b""
    try:
        writer.write(head + b"\r\n\r\n")
        for byte in body:
            writer.write(bytes([byte]))
            await writer.drain()
            try:
                answer += await asyncio.wait_for(reader.read(1000), 0.5)
            except TimeoutError:
                continue
            if not answer or time.monotonic() > stop:
                break
            answer += await reader.read()
            break
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()
    return time.monotonic() - started, answer


async def test_a_body_that_trickles_is_cut_and_one_address_cannot_take_every_connection(
    services, database_url, tmp_path
):
    """A byte every half second re-armed the body's pause timeout for ever; 4,200 such bodies from one address made
    PBX lookups answer 503. Here 250 from one address (127.0.0.2) against 200 connections: the address holds at most
    25 of them, a body must average 10 kB/s after its 2 s of grace, and the PBX (from 127.0.0.1) is answered."""
    settings = settings_for(database_url, tmp_path, max_connections=200, max_connections_per_address=25,
                            body_timeout_seconds=2, outbound_allow="")  # fmt: skip
    with running_server(settings) as url:
        install = await make_install(services, url)
        post = (
            f"POST /hooks/planfix/{install.integration_id} HTTP/1.1\r\nHost: x\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100000\r\n\r\n"
        ).encode()
        request = post + b"cmd=contact&" + b"x" * 100
        stop = time.monotonic() + 30
        attack = [asyncio.create_task(trickle(url, request, stop, "127.0.0.2")) for _ in range(250)]
        await asyncio.sleep(1.0)
        async with httpx.AsyncClient(timeout=10) as pbx:
            lookup = await pbx.post(f"{url}/hooks/planfix/{install.integration_id}", data={
                "cmd": "contact", "phone": "79101234567", "planfix_token": install.token})  # fmt: skip
            assert (await pbx.get(f"{url}/healthz")).status_code == 200
        cut = await asyncio.gather(*attack)
    assert lookup.status_code == 200 and lookup.json()["contact_name"] == "Иванов", lookup.text
    # refused at once: a 503, or a reset that beat it (the server closes with the attacker's bytes unread)
    busy = [answer for seconds, answer in cut if answer.startswith(b"HTTP/1.1 503") or (not answer and seconds < 1)]
    timed_out = [seconds for seconds, answer in cut if answer.startswith(b"HTTP/1.1 408")]
    assert len(busy) >= 250 - 25 and len(timed_out) == 250 - len(busy)  # each held one was cut
    assert max(timed_out) < 10, sorted(timed_out)[-3:]  # a byte every 0.5 s: about the 2 s of grace, not for ever
