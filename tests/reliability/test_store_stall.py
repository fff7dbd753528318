"""Another process holds the SQLite file's write lock (a backup, a second CLI command, an import): `callbridge serve`
keeps answering. Lookups in every dialect that has them, /healthz and the workspace answer at once; a PBX event
waits `CALLBRIDGE_STORE_WAIT_SECONDS` and gets a 503 that PBXs retry; nothing answered 2xx is lost."""

from __future__ import annotations

import asyncio
import re
import sqlite3
import time

import httpx

from callbridge.config import sqlite_url
from callbridge.store import Database, directory, integrations
from callbridge.web.auth import hash_password

from ..helpers import serve_process

LOCKED_FOR = 5.0  # seconds, as the test holds it
PROMPT = 1.5  # a generous bound on an answer that must not wait for the lock (the lock is held far longer)


async def install(path) -> dict:
    database = Database(sqlite_url(path))
    await database.migrate()
    async with database.transaction() as session:
        andy = await directory.add_employee(session, name="Андрей", pbx_login="andy", extension="101", role="admin")
        andy.password_hash = hash_password("pw")
        client = await directory.add_client(session, name="Рога и копыта", phones=["+79101234567"],
                                            responsible_id=andy.id)  # fmt: skip
        cloud = await integrations.add_integration(session, kind="cloudpbx", name="MegaFon", settings={})
        planfix = await integrations.add_integration(session, kind="planfix", name="Asterisk",
                                                     settings={"pbx_url": "https://pbx.invalid/", "pbx_token": "t"})
        key = await integrations.add_api_key(session, "tests")
    await database.close()
    return {"cloudpbx": cloud, "planfix": planfix, "key": key, "client": client.id}


async def timed(request) -> tuple[httpx.Response, float]:
    began = time.monotonic()
    response = await request
    return response, time.monotonic() - began


async def test_a_locked_sqlite_file_stalls_nothing_and_loses_nothing(tmp_path):
    path = tmp_path / "callbridge.db"
    world = await install(path)
    cloud, planfix = world["cloudpbx"], world["planfix"]
    with serve_process(sqlite_url(path), tmp_path, store_wait_seconds="1") as (url, _):
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:

            def lookup(kind, row):
                token = {"cloudpbx": "crm_token", "planfix": "planfix_token"}[kind]
                return http.post(f"/hooks/{kind}/{row.id}", data={"cmd": "contact", "phone": "79101234567",
                                                                  "callid": f"{kind}-1", token: row.token})

            csrf = re.search(r'name="csrf" value="([^"]+)"', (await http.get("/login")).text).group(1)
            assert (await http.post("/login", data={"csrf": csrf, "login": "andy", "password": "pw"})).is_redirect
            event = {"cmd": "event", "type": "INCOMING", "callid": "during-lock", "phone": "79101234567",
                     "user": "andy", "crm_token": cloud.token}  # fmt: skip
            other = sqlite3.connect(path, isolation_level=None)  # another process: this test's, not the server's
            other.execute("BEGIN EXCLUSIVE")
            other.execute("UPDATE employees SET name = name")
            locked_at = time.monotonic()
            try:
                health, took = await timed(http.get("/healthz"))
                assert health.status_code == 503 and health.json() == {"status": "degraded", "store": "busy"}
                assert took < PROMPT
                pending = asyncio.create_task(timed(http.post(f"/hooks/cloudpbx/{cloud.id}", data=event)))
                for kind, row in (("cloudpbx", cloud), ("planfix", planfix)):
                    answer, took = await timed(lookup(kind, row))
                    assert answer.status_code == 200 and took < PROMPT, (kind, took)
                    assert answer.json()["contact_name"] == "Рога и копыта"  # WAL: readers do not wait for writers
                page, took = await timed(http.get("/api/calls", headers={"Authorization": f"Bearer {world['key']}"}))
                assert page.status_code == 200 and took < PROMPT
                for workspace in ("/calls", "/clients", f"/clients/{world['client']}"):  # pages that only read
                    page, took = await timed(http.get(workspace))
                    assert page.status_code == 200 and took < PROMPT, (workspace, page.status_code, took)
                refused, waited = await pending
                assert refused.status_code == 503 and refused.headers["retry-after"] == "5"
                assert refused.json() == {"error": "Service temporarily unavailable"}
                assert 0.9 < waited < LOCKED_FOR  # the configured wait, not the lock's length
                assert time.monotonic() - locked_at < LOCKED_FOR
                await asyncio.sleep(max(0.0, LOCKED_FOR - (time.monotonic() - locked_at)))
            finally:
                other.execute("COMMIT")
                other.close()

            assert (await http.get("/healthz")).json() == {"status": "ok", "store": "ok"}
            retried = await http.post(f"/hooks/cloudpbx/{cloud.id}", data=event)  # the PBX sends it again
            assert retried.status_code == 200
            calls = (await http.get("/api/calls", headers={"Authorization": f"Bearer {world['key']}"})).json()
            assert calls["total"] == 1 and calls["items"][0]["pbx_call_id"] == "during-lock"
            await asyncio.sleep(1.0)  # the lookups answered during the lock are journaled once it is free
    other = sqlite3.connect(path)
    journaled = other.execute("SELECT status, count(*) FROM inbound_requests GROUP BY status ORDER BY status")
    assert dict(journaled.fetchall()) == {"answered": 2, "applied": 1}
