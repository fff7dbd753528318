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

from callbridge import webhooks
from callbridge.store import directory, integrations

from .. import helpers
from ..helpers import serve_app
from .test_webhooks import KNOWN, Receiver, until


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
    async with services.db.transaction() as session:
        await directory.add_employee(session, name="Андрей", pbx_login="andy")
        pbx = await integrations.add_integration(session, kind="cloudpbx", name="PBX", settings={})
    with serve_app(receiver.app()) as url:
        hook = await webhooks.add(services, f"{url}/hook", ["call.ringing"], None)
        receiver.secrets.append(hook.secret)
        env = {"outbound_allow": "127.0.0.1", "secret_key_file": str(tmp_path / "key"), "outbox_poll_seconds": "30"}
        with helpers.serve_process(database_url, tmp_path, **env) as (base, server):
            async with httpx.AsyncClient(timeout=10) as http:

                async def ring(callid: str) -> None:
                    answer = await http.post(f"{base}/hooks/cloudpbx/{pbx.id}", data={
                        "cmd": "event", "type": "INCOMING", "callid": callid, "phone": KNOWN, "user": "andy",
                        "crm_token": pbx.token})  # fmt: skip
                    assert answer.status_code == 200

                (worker,) = await until(lambda: asyncio.sleep(0, children(server.pid)))
                niced = os.getpriority(os.PRIO_PROCESS, server.pid) + 10  # its first step, before its imports
                await until(lambda: asyncio.sleep(0, os.getpriority(os.PRIO_PROCESS, worker) == niced))
                # polled every 30 s: a delivery within 10 s was woken by the server
                await ring("first")
                await until(lambda: asyncio.sleep(0, len(receiver.got) == 1))
                await until(lambda: counted(http, base, 1.0))  # counted in the outbox process, shown by the server

                os.kill(worker, signal.SIGKILL)
                (again,) = await until(lambda: asyncio.sleep(0, [c for c in children(server.pid) if c != worker]))
                await ring("second")
                await until(lambda: asyncio.sleep(0, len(receiver.got) == 2))
                await until(lambda: counted(http, base, 2.0))  # the counters carry on

            server.kill()
            await until(lambda: asyncio.sleep(0, not alive(again)))  # no orphan keeps delivering
    assert sorted(d["data"]["pbx_call_id"] for d in receiver.got) == ["first", "second"]
