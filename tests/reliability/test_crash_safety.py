"""Kill the server (SIGKILL) at random moments while a PBX posts events, restart it, and check that every
event that got a 2xx is in the journal and applied exactly once."""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import httpx
from sqlalchemy import func, select

from callbridge.app import build_services
from callbridge.config import Settings, sqlite_url
from callbridge.store import directory, integrations
from callbridge.store.tables import CallRow, InboundRequest, LegRow

from ..test_cli import free_port

KILLS = int(os.environ.get("CALLBRIDGE_CRASH_KILLS", "200"))
SENDERS = 4


async def prepare(url: str) -> tuple[int, str]:
    services = build_services(Settings(database_url=url))
    await services.db.migrate()
    async with services.db.transaction() as session:
        await directory.add_employee(session, name="Андрей", pbx_login="andy")
        pbx = await integrations.add_integration(session, kind="cloudpbx", name="PBX", settings={})
    await services.close()
    return pbx.id, pbx.token


async def wait_until_up(http: httpx.AsyncClient, base: str, server: subprocess.Popen) -> None:
    for _ in range(1500):
        try:
            if (await http.get(f"{base}/healthz")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert server.poll() is None, "the server died on its own"
        await asyncio.sleep(0.01)
    raise AssertionError("the server did not come back")


async def test_every_acknowledged_event_survives_sigkill(tmp_path):
    url = sqlite_url(tmp_path / "crash.db")
    integration_id, token = await prepare(url)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    hook = f"{base}/hooks/cloudpbx/{integration_id}"
    command = [str(Path(sys.executable).parent / "callbridge"), "serve", "--port", str(port), "--log-level", "error"]
    env = os.environ | {"CALLBRIDGE_DATABASE_URL": url, "CALLBRIDGE_SWEEP_INTERVAL_SECONDS": "3600"}
    numbers = itertools.count()
    acknowledged: set[int] = set()
    rnd = random.Random(2026)

    def event(n: int) -> dict[str, str]:
        return {"cmd": "event", "type": "INCOMING", "callid": f"k{n}", "phone": "79101234567", "user": "andy",
                "crm_token": token}  # fmt: skip

    async def sender(http: httpx.AsyncClient) -> None:
        while True:
            n = next(numbers)
            if acknowledged and n % 10 == 0:
                n = rnd.choice(sorted(acknowledged))  # PBXs repeat themselves: a duplicate now and then
            try:
                response = await http.post(hook, data=event(n))
            except httpx.TransportError:
                continue
            if response.status_code == 200:
                acknowledged.add(n)

    async with httpx.AsyncClient(timeout=5, limits=httpx.Limits(max_keepalive_connections=0)) as http:
        for _ in range(KILLS):
            server = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL)  # fmt: skip
            await wait_until_up(http, base, server)
            senders = [asyncio.create_task(sender(http)) for _ in range(SENDERS)]
            await asyncio.sleep(rnd.uniform(0.02, 0.3))
            server.send_signal(signal.SIGKILL)
            server.wait()
            for task in senders:
                task.cancel()
            await asyncio.gather(*senders, return_exceptions=True)

    services = build_services(Settings(database_url=url))
    async with services.db.read() as session:
        per_key = select(InboundRequest.call_key, func.count(), func.min(InboundRequest.status))
        journal = {
            key: (n, status) for key, n, status in await session.execute(per_key.group_by(InboundRequest.call_key))
        }
        calls = {key: facts for key, facts in await session.execute(select(CallRow.pbx_call_id, CallRow.facts))}
        per_call = select(LegRow.call_id, func.count()).group_by(LegRow.call_id)
        legs = {call_id: n for call_id, n in await session.execute(per_call)}
        ids = {key: call_id for key, call_id in await session.execute(select(CallRow.pbx_call_id, CallRow.id))}
    await services.close()

    print(f"{KILLS} kills, {len(acknowledged)} events acknowledged, {len(journal)} journaled")
    assert len(acknowledged) > KILLS  # the load really ran between the kills
    for n in acknowledged:
        key = f"k{n}"
        assert journal.get(key) == (1, "applied"), key  # journaled once, applied
        assert calls[key]["legs"][0]["employee"] == "andy", key  # the event is in the call's facts
        assert legs[ids[key]] == 1, key  # applied once: one leg, not two
    assert set(journal) == set(calls)  # nothing half-done: every journaled event has its call
