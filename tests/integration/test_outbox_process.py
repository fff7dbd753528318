"""`callbridge serve` delivers webhooks from an outbox process of its own, at a lower CPU priority: it delivers
what the server queued, at once; its counters show on the server's /metrics; killed, it is started again; and a
killed server takes it with it."""

from __future__ import annotations

import asyncio
import os
import re
import signal
from pathlib import Path

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from callbridge import webhooks
from callbridge.store import directory, integrations

from .. import helpers
from ..helpers import serve_app
from .test_webhooks import Receiver, a_hooked_pbx, ring, until


def children(pid: int) -> list[int]:
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


async def counted(http: httpx.AsyncClient, base: str, deliveries: float) -> bool:
    """Whether the server's /metrics counts this many receivers' 2xx answers."""
    metrics = (await http.get(f"{base}/metrics")).text
    found = re.search(r'^callbridge_webhook_responses_total\{status="2xx"\} (\S+)$', metrics, re.M)
    return found is not None and float(found.group(1)) == deliveries


async def test_the_outbox_process_delivers_restarts_when_killed_and_ends_with_the_server(services, database_url,
                                                                                          tmp_path):  # fmt: skip
    receiver = Receiver()
    with serve_app(receiver.app()) as url:
        pbx, _hook = await a_hooked_pbx(services, receiver, url)
        env = {"outbound_allow": "127.0.0.1", "secret_key_file": str(tmp_path / "key"), "outbox_poll_seconds": "30"}
        with helpers.serve_process(database_url, tmp_path, **env) as (base, server):
            async with httpx.AsyncClient(timeout=10) as http:
                (worker,) = await until(lambda: asyncio.sleep(0, children(server.pid)))
                niced = os.getpriority(os.PRIO_PROCESS, server.pid) + 10  # its first step, before its imports
                await until(lambda: asyncio.sleep(0, os.getpriority(os.PRIO_PROCESS, worker) == niced))
                # polled every 30 s: a delivery within 10 s was woken by the server
                await ring(http, base, pbx, "first")
                await until(lambda: asyncio.sleep(0, len(receiver.got) == 1))
                await until(lambda: counted(http, base, 1.0))  # counted in the outbox process, shown by the server

                os.kill(worker, signal.SIGKILL)
                (again,) = await until(lambda: asyncio.sleep(0, [c for c in children(server.pid) if c != worker]))
                await ring(http, base, pbx, "second")
                await until(lambda: asyncio.sleep(0, len(receiver.got) == 2))
                await until(lambda: counted(http, base, 2.0))  # the counters carry on

            server.kill()
            await until(lambda: asyncio.sleep(0, not alive(again)))  # no orphan keeps delivering
    assert sorted(d["data"]["pbx_call_id"] for d in receiver.got) == ["first", "second"]


async def test_a_ctrl_c_ends_the_server_and_then_the_outbox_process_which_is_not_started_again(database_url,
                                                                                               tmp_path):  # fmt: skip
    """Ctrl+C signals the terminal's whole process group. The outbox process is outside it, so it is not ended
    (and started again) while the server shuts down: the server ends it when it is done."""
    with helpers.serve_process(database_url, tmp_path, secret_key_file=str(tmp_path / "key")) as (_base, server):
        (worker,) = await until(lambda: asyncio.sleep(0, children(server.pid)))
        os.killpg(server.pid, signal.SIGINT)  # what the terminal does on Ctrl+C
        assert await asyncio.to_thread(server.wait, 15) == 0
        await until(lambda: asyncio.sleep(0, not alive(worker)))
    log = (tmp_path / "server.log").read_text()
    assert "Application shutdown complete" in log and "the outbox process ended" not in log


async def test_the_outbox_process_masks_a_credential_a_receiver_echoes_back_in_its_log(services, database_url,
                                                                                     tmp_path):  # fmt: skip
    """A CRM's webhook URL carries its token in the query, and its error page repeats the URL (as many do): the
    outbox process logs the failure with the token masked, as the server masks it."""

    async def no_such_route(request: Request) -> Response:
        return PlainTextResponse(f"Cannot POST {request.url.path}?{request.url.query}", status_code=404)

    with serve_app(Starlette(routes=[Route("/hook", no_such_route, methods=["POST"])])) as url:
        async with services.db.transaction() as session:
            await directory.add_employee(session, name="Андрей", pbx_login="andy")
            pbx = await integrations.add_integration(session, kind="cloudpbx", name="PBX", settings={})
        await webhooks.add(services, f"{url}/hook?token=crm-secret-4711", ["call.ringing"], None)
        env = {"outbound_allow": "127.0.0.1", "secret_key_file": str(tmp_path / "key")}
        with helpers.serve_process(database_url, tmp_path, **env) as (base, _server):
            async with httpx.AsyncClient(timeout=10) as http:
                await ring(http, base, pbx, "echoed")
                log = tmp_path / "server.log"
                await until(lambda: asyncio.sleep(0, "receiver answered 404" in log.read_text()))
    log = log.read_text()
    assert "Cannot POST /hook?token=***" in log
    assert "crm-secret-4711" not in log
