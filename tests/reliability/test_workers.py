"""Several server processes on one PostgreSQL: cards reach browsers on every worker, migrations run once,
periodic jobs run in one worker at a time. (The outbox's SKIP LOCKED claim is in integration/test_outbox.py.)"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text
from typer.testing import CliRunner

from callbridge.cli import app as cli_app
from callbridge.store import Database, directory, integrations

from ..conftest import _drop_pg, _pg_database, settings_for
from ..helpers import live_listener, running_server, serve_app, serve_process
from ..integration.test_webhooks import Receiver, a_hooked_pbx, ring, until


async def prepare(services) -> tuple[str, str, str]:
    """An employee, a cloudpbx integration and an API key: (inbound path, its token, API key)."""
    async with services.db.transaction() as session:
        await directory.add_employee(session, name="Андрей", pbx_login="andy")
        pbx = await integrations.add_integration(session, kind="cloudpbx", name="PBX", settings={})
        key = await integrations.add_api_key(session, "tests")
    return f"/hooks/cloudpbx/{pbx.id}", pbx.token, key


def incoming(call: str, token: str) -> dict[str, str]:
    return {"cmd": "event", "type": "INCOMING", "callid": call, "phone": "79101234567", "user": "andy",
            "crm_token": token}  # fmt: skip


async def cards_on(http: httpx.AsyncClient, streams: list[str], key: str, post) -> list[list[dict]]:
    """Open a live stream on each base URL, make the PBX request, and gather what each stream got."""
    seen: list[list[dict]] = [[] for _ in streams]
    readers = await asyncio.gather(*(live_listener(http, f"{base}/api/live", key, into) for base, into in
                                     zip(streams, seen, strict=True)))  # fmt: skip
    await post()
    for _ in range(100):
        if all(any(m["type"] == "CardShown" for m in got) for got in seen):
            break
        await asyncio.sleep(0.05)
    for reader in readers:
        reader.cancel()
    await asyncio.gather(*readers, return_exceptions=True)
    return seen


async def test_a_card_reaches_browsers_on_the_other_worker(services, postgres, tmp_path):
    hook, token, key = await prepare(services)
    with running_server(settings_for(postgres, tmp_path)) as a, running_server(settings_for(postgres, tmp_path)) as b:
        async with httpx.AsyncClient(timeout=10) as http:
            seen = await cards_on(http, [b, a], key, lambda: http.post(f"{a}{hook}", data=incoming("w1", token)))
    for got in seen:  # the worker that took the PBX request, and the one that did not
        (card,) = [m for m in got if m["type"] == "CardShown"]
        assert card["employee"] == "andy" and card["type"] == "CardShown"


@contextlib.asynccontextmanager
async def serve_workers(postgres: str, folder: Path, workers: int, **env: str):
    """`callbridge serve --workers N` (CALLBRIDGE_* settings in env), once it answers: a client that opens a new
    connection for each request, and the base URL; it ends with no traceback in the server's output. (A worker
    takes connections only once it hears the others' cards, so whichever one answers is ready.)"""
    with serve_process(postgres, folder, "--workers", str(workers), secret_key_file=str(folder / "key"),
                       **env) as (base, _server):  # fmt: skip
        async with httpx.AsyncClient(timeout=10, limits=httpx.Limits(max_keepalive_connections=0)) as http:
            yield http, base
    log = (folder / "server.log").read_text()
    assert "Traceback" not in log, log


async def test_serve_with_several_workers(services, postgres, tmp_path):
    """`callbridge serve --workers 3`: real processes behind one port, each card on every stream."""
    hook, token, key = await prepare(services)
    async with serve_workers(postgres, tmp_path, 3) as (http, base):
        seen = await cards_on(http, [base] * 6, key, lambda: http.post(f"{base}{hook}", data=incoming("w2", token)))
        assert all(len([m for m in got if m["type"] == "CardShown"]) == 1 for got in seen)
        calls = (await http.get(f"{base}/api/calls", headers={"Authorization": f"Bearer {key}"})).json()
        assert [c["pbx_call_id"] for c in calls["items"]] == ["w2"]


def counted(exposition: str, family: str) -> float:
    """The sum of one metric family's `_total` samples in Prometheus text."""
    return sum(sample.value for metric in text_string_to_metric_families(exposition) if metric.name == family
               for sample in metric.samples if sample.name.endswith("_total"))  # fmt: skip


async def test_metrics_count_what_every_worker_did(services, postgres, tmp_path):
    """A scrape reaches one worker of `serve --workers 2`: it shows what both did, on every scrape, and what their
    outbox processes did, once."""
    receiver = Receiver()
    with serve_app(receiver.app()) as url:
        pbx, _hook = await a_hooked_pbx(services, receiver, url)
        async with serve_workers(postgres, tmp_path, 2, outbound_allow="127.0.0.1") as (http, base):
            lookup = {"cmd": "contact", "callid": "m", "phone": "79101234567", "crm_token": pbx.token}
            for _ in range(5):  # eight new connections at once, which the two workers take between them
                answers = await asyncio.gather(*(http.post(f"{base}/hooks/cloudpbx/{pbx.id}", data=lookup)
                                                 for _ in range(8)))  # fmt: skip
                assert [a.status_code for a in answers] == [200] * 8
            await ring(http, base, pbx, "counted")
            await until(lambda: asyncio.sleep(0, len(receiver.got) == 1))
            await asyncio.sleep(1.5)  # the outbox process reports its counters every second
            scrapes = [(await http.get(f"{base}/metrics")).text for _ in range(8)]
    assert [counted(text, "callbridge_lookups") for text in scrapes] == [40.0] * 8
    assert all("callbridge_lookup_seconds_count 40.0" in text for text in scrapes)  # the histogram too
    assert [counted(text, "callbridge_webhook_responses") for text in scrapes] == [1.0] * 8


async def test_migrations_run_once_when_workers_start_together(postgres):
    fresh = await _pg_database()
    try:
        databases = [Database(fresh) for _ in range(4)]
        await asyncio.gather(*(db.migrate() for db in databases))  # without a lock, CREATE TABLE would clash
        async with databases[0].read() as session:
            versions = (await session.scalars(text("SELECT version_num FROM alembic_version"))).all()
        assert len(versions) == 1
        for db in databases:
            await db.close()
    finally:
        await _drop_pg(fresh)


async def test_a_periodic_job_runs_in_one_worker_at_a_time(postgres):
    first, second = Database(postgres), Database(postgres)
    async with first.exclusively("close_stale_calls") as mine:
        async with second.exclusively("close_stale_calls") as theirs:
            assert (mine, theirs) == (True, False)
        async with second.exclusively("backfill_all") as other_job:
            assert other_job
    async with second.exclusively("close_stale_calls") as now_theirs:
        assert now_theirs  # released with the block
    await first.close()
    await second.close()


def test_serve_refuses_several_workers_on_sqlite(tmp_path):
    result = CliRunner().invoke(
        cli_app, ["serve", "--workers", "2", "--database-url", f"sqlite+aiosqlite:///{tmp_path}/x.db"]
    )
    assert result.exit_code == 1 and "through PostgreSQL" in result.stderr
