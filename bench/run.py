"""callbridge benchmarks, each figure beside a bare Starlette endpoint measured just before it, in the same run.

    .venv/bin/python bench/run.py                      # SQLite and PostgreSQL, 10k and 1M clients
    .venv/bin/python bench/run.py --sizes 10000 --no-postgres --seconds 5     # a quick look

For each database and each size of the client table, a real `callbridge serve` (PostgreSQL: `--workers 2`):
- caller lookup: p50/p99 latency of one client at a time (httpx), and requests/s under load (wrk, 16 connections);
- event ingest: PBX events/s under load (wrk); each 2xx means the journal entry and the call are committed;
  (each of these two throughputs is the median of `--runs` wrk runs of `--seconds`)
- call card: from the PBX's request to the card arriving on each of `--streams` open SSE streams (p50/p99);
- import: `callbridge import clients` of `--import-rows` new clients, rows/s, alone and beside live traffic (wrk
  posting PBX events all the while, its events/s and non-2xx answers shown beside);
- webhooks: PBX events/s under load with no webhook, then with a webhook for every event to a receiver that is
  down, then to one that answers (on loopback), and deliveries/s until every delivery queued meanwhile is done.
The bare endpoints (bench/bare.py) read the same forms and fan out to the same number of streams; they are measured
again before each database and size, and callbridge's ratios are to the bare figures just before them.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from rich.console import Console
from rich.progress import track
from rich.table import Table
from sqlalchemy import func, insert, literal, select, text
from sqlalchemy.ext.asyncio import create_async_engine

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from callbridge.app import build_services  # noqa: E402
from callbridge.config import Settings, sqlite_url  # noqa: E402
from callbridge.store import directory, integrations  # noqa: E402
from callbridge.store.tables import CallRow, InboundRequest, LegRow, OutboxRequest  # noqa: E402
from callbridge.webhooks import MAX_WEBHOOKS  # noqa: E402

console = Console()
BIN = Path(sys.executable).parent
# issue 24's targets: latencies in ms, throughputs as a ratio to the bare endpoint measured just before ("x")
TARGETS = {"lookup p99 ms": ("<", 10.0), "lookup req/s": (">=x", 0.3), "ingest events/s": (">=x", 0.15),
           "card p99 ms": ("<", 500.0)}


def phone_of(n: int) -> str:
    return f"+7916{n:07d}"


# ---- the database -------------------------------------------------------------------------------


async def fill(url: str, clients: int) -> dict[str, str]:
    """An employee, a cloudpbx integration, an API key, `clients` clients with a phone and a manager, and a
    history of past calls, one for every ten clients (10,000 at least), each with its leg.

    A database in use holds calls: on empty tables PostgreSQL plans the hot statements as scans of a table that
    looks tiny, and keeps those plans while the benchmark fills it (its statistics, and so its plans, are
    renewed once a minute at most). And it has been vacuumed and checkpointed: on freshly loaded tables autovacuum
    would set to work during the measurements, and the WAL of the load would start a checkpoint in their midst
    (after which every page's first change writes the whole page to the WAL again: PBX events at 1M clients ran
    at 943/s once in such a checkpoint, 1,541/s minutes later)."""
    services = build_services(Settings(database_url=url))
    await services.db.migrate()
    async with services.db.transaction() as session:
        manager = await directory.add_employee(session, name="Manager", pbx_login="andy")
        pbx = await integrations.add_integration(session, kind="cloudpbx", name="bench", settings={})
        key = await integrations.add_api_key(session, "bench")
    batch = 10_000
    for start in track(range(0, clients, batch), description=f"loading {clients:,} clients", console=console):
        rows = [(f"Client {n}", [phone_of(n)], manager.id) for n in range(start, min(start + batch, clients))]
        async with services.db.transaction() as session:
            await directory.add_clients_bulk(session, rows)
    history = max(10_000, clients // 10)
    for start in track(range(0, history, batch), description=f"loading {history:,} past calls", console=console):
        async with services.db.transaction() as session:
            await session.execute(insert(CallRow), [past_call(n, clients, pbx.id, manager.id)
                                                    for n in range(start, min(start + batch, history))])  # fmt: skip
    async with services.db.transaction() as session:
        await session.execute(insert(LegRow).from_select(
            ["call_id", "employee_key", "employee_id", "state", "rang_at", "answered_at", "ended_at"],
            select(CallRow.id, literal("andy"), CallRow.employee_id, literal("answered"), CallRow.started_at,
                   CallRow.answered_at, CallRow.ended_at),
        ))  # fmt: skip
    if not services.db.is_sqlite:  # as a database in use would be; else autovacuum does it during the measurements
        async with services.db.engine.connect() as connection:
            await connection.execution_options(isolation_level="AUTOCOMMIT")
            await connection.execute(text("VACUUM ANALYZE"))
            await connection.execute(text("CHECKPOINT"))
    await services.close()
    return {"path": f"/hooks/cloudpbx/{pbx.id}", "token": pbx.token, "key": key}


def past_call(n: int, clients: int, integration_id: int, employee_id: int) -> dict:
    started = datetime.now(UTC) - timedelta(minutes=n)
    return {"integration_id": integration_id, "pbx_call_id": f"past-{n}", "direction": "in",
            "phone": phone_of(n % clients), "state": "ended", "result": "answered", "employee_id": employee_id,
            "started_at": started, "answered_at": started + timedelta(seconds=10),
            "ended_at": started + timedelta(seconds=70), "wait_seconds": 10, "talk_seconds": 60, "facts": {},
            "updated_at": started + timedelta(seconds=70)}  # fmt: skip


async def journaled(url: str) -> int:
    services = build_services(Settings(database_url=url))
    async with services.db.read() as session:
        count = await session.scalar(select(func.count()).select_from(InboundRequest))
    await services.close()
    return int(count or 0)


async def pg_database(admin_url: str) -> str | None:
    name = f"callbridge_bench_{uuid.uuid4().hex[:8]}"
    engine = create_async_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as connection:
            await connection.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        console.print(f"[yellow]PostgreSQL skipped: {exc.__class__.__name__}: {exc}[/yellow]")
        return None
    finally:
        await engine.dispose()
    return admin_url.rsplit("/", 1)[0] + "/" + name


async def drop_pg(admin_url: str, url: str) -> None:
    engine = create_async_engine(admin_url, isolation_level="AUTOCOMMIT")
    async with engine.connect() as connection:
        await connection.execute(text(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)'))
    await engine.dispose()


# ---- servers and load ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(command: list[str], port: int, env: dict[str, str]) -> subprocess.Popen:
    process = subprocess.Popen([*command, "--port", str(port), "--log-level", "warning"], env=env, cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    for _ in range(600):
        try:
            with httpx.Client() as http:
                http.get(f"http://127.0.0.1:{port}/healthz")
            time.sleep(1.0)  # every worker is up, not just the first
            return process
        except httpx.TransportError:
            if process.poll() is not None:
                raise RuntimeError(process.stderr.read().decode()) from None
            time.sleep(0.1)
    raise RuntimeError(f"{command} did not start")


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:  # streams still open: no need to be gentle with a benchmark
        process.kill()
        process.wait()


LOOKUP_LUA = """
request = function()
  local phone = "%2B7916" .. string.format("%07d", math.random(0, {clients} - 1))
  local body = "cmd=contact&callid=b&phone=" .. phone .. "&crm_token={token}"
  return wrk.format("POST", "{path}", {{["Content-Type"]="application/x-www-form-urlencoded"}}, body)
end
"""
# Every wrk thread posts calls of its own (each thread's Lua starts with the same random seed, so the thread's
# number comes from setup()): no request repeats another, or the duplicates' cheaper path would count as events.
# A thread keeps 100 calls under way, as a PBX does: the calls ring, then are answered, then end, in turn, so
# each call's events come in order, a hundred requests apart (not at the same moment on different connections).
INGEST_LUA = """
local threads = 0
setup = function(thread)
  threads = threads + 1
  thread:set("id", threads)
end
local n = 0
request = function()
  local round, step = math.floor(n / 300), n % 300
  n = n + 1
  local kind = ({{"INCOMING", "ACCEPTED", "COMPLETED"}})[math.floor(step / 100) + 1]
  local call = "{run}-" .. id .. "-" .. (round * 100 + step % 100)
  local body = "cmd=event&type=" .. kind .. "&callid=" .. call .. "&phone=79160000001&user=andy"
    .. "&direction=in&duration=30&crm_token={token}"
  return wrk.format("POST", "{path}", {{["Content-Type"]="application/x-www-form-urlencoded"}}, body)
end
"""


def steady(run, times: int) -> tuple[float, int]:
    """The median of `times` wrk runs (`run()`, each with a script of its own), and their non-2xx answers: a run
    now and then falls on something else the machine does, a checkpoint or another tenant's burst, which a median
    leaves out where one run would take it for the figure."""
    figures = [run() for _ in range(times)]
    return statistics.median(rps for rps, _ in figures), sum(errors for _, errors in figures)


def wrk(base: str, script: str, seconds: int, folder: Path) -> tuple[float, int]:
    """Requests per second and non-2xx answers, from wrk with 2 threads and 16 connections."""
    lua = folder / f"{uuid.uuid4().hex}.lua"
    lua.write_text(script)
    out = subprocess.run(["wrk", "-t2", "-c16", f"-d{seconds}s", "-s", str(lua), base], capture_output=True,
                         text=True, check=True).stdout  # fmt: skip
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return rps, int(errors.group(1)) if errors else 0


async def latency(url: str, bodies: list[dict[str, str]]) -> tuple[float, float]:
    """p50 and p99 in ms, one request at a time."""
    async with httpx.AsyncClient(timeout=10) as http:
        for body in bodies[:200]:
            (await http.post(url, data=body)).raise_for_status()
        took = []
        for body in bodies:
            began = time.perf_counter()
            (await http.post(url, data=body)).raise_for_status()
            took.append(time.perf_counter() - began)
    cuts = statistics.quantiles(took, n=100)
    return cuts[49] * 1000, cuts[98] * 1000


async def card_latency(base: str, live: str, key: str, post: str, body, streams: int, events: int = 30):
    """p50/p99 ms from a PBX request to its card on each open stream, and how many cards never came."""
    host, port = base.removeprefix("http://").split(":")
    arrivals: list[list[float]] = [[] for _ in range(streams)]
    ready = asyncio.Semaphore(0)

    async def reader(i: int) -> None:
        stream, writer = await asyncio.open_connection(host, int(port))
        writer.write(f"GET {live} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\n\r\n".encode())
        card = False
        while line := await stream.readline():
            if line.startswith(b": connected"):
                ready.release()
            if card and line.startswith(b"data:") and b'"employee": "card"' in line:  # ours, not a leftover
                arrivals[i].append(time.perf_counter())
            card = line.startswith(b"event: CardShown")
        writer.close()

    tasks = [asyncio.create_task(reader(i)) for i in range(streams)]
    for _ in range(streams):
        await asyncio.wait_for(ready.acquire(), 60)
    sent = []
    async with httpx.AsyncClient(timeout=10) as http:
        for n in range(events):
            sent.append(time.perf_counter())
            (await http.post(f"{base}{post}", data=body(n))).raise_for_status()
            await asyncio.sleep(0.1)
    for _ in range(100):
        if all(len(a) >= events for a in arrivals):
            break
        await asyncio.sleep(0.1)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    took = [a[k] - sent[k] for a in arrivals for k in range(min(len(a), events))]
    cuts = statistics.quantiles(took, n=100)
    return cuts[49] * 1000, cuts[98] * 1000, streams * events - len(took)


async def webhook_rate(base: str, url: str, receiver: str, target: dict, clients: int, args, folder: Path) -> dict:
    """PBX events under load with a webhook for every event to a receiver that is down (what the PBX sees must not
    change), then to a loopback receiver that answers: deliveries/s until all queued meanwhile are done."""
    ingest = INGEST_LUA.format(run=uuid.uuid4().hex[:6], clients=clients, **target)
    # the same database as the phases below, just before them: what they compare to
    figures = {"ingest events/s, no webhook": (await asyncio.to_thread(wrk, base, ingest, args.seconds, folder))[0]}
    async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {target['key']}"},
                                 timeout=30) as api:  # fmt: skip
        for phase, address in (("dead", f"http://127.0.0.1:{free_port()}/gone"), ("live", receiver)):
            hook = (await api.post("/api/webhooks", json={"url": address})).json()
            await asyncio.sleep(6)  # the server's cache of webhooks
            ingest = INGEST_LUA.format(run=uuid.uuid4().hex[:6], clients=clients, **target)
            began = time.perf_counter()
            events, failed = await asyncio.to_thread(wrk, base, ingest, args.seconds, folder)
            figures |= {f"ingest events/s, receiver {phase}": events, f"non-2xx, receiver {phase}": failed}
            if phase == "dead":  # what the PBX and the browsers see while every delivery fails
                lookups = LOOKUP_LUA.format(clients=clients, **target)
                figures["lookup req/s, receiver dead"] = (await asyncio.to_thread(wrk, base, lookups, args.seconds,
                                                                                  folder))[0]  # fmt: skip
                run = uuid.uuid4().hex[:6]

                def incoming(n: int, run=run) -> dict[str, str]:
                    return {"cmd": "event", "type": "INCOMING", "callid": f"dead-{run}-{n}", "phone": phone_of(n),
                            "user": "card", "crm_token": target["token"]}  # fmt: skip

                card = await card_latency(base, "/api/live", target["key"], target["path"], incoming, args.streams)
                figures["card p99 ms, receiver dead"] = card[1]
            if phase == "live":
                while await deliveries(url, hook["id"], "pending") and time.perf_counter() - began < 300:
                    await asyncio.sleep(0.2)  # until the outbox has delivered everything queued meanwhile
                figures["webhook deliveries/s"] = await deliveries(url, hook["id"], "done") / (time.perf_counter()
                                                                                               - began)  # fmt: skip
            await api.delete(f"/api/webhooks/{hook['id']}")
        # the most webhooks a company may have (MAX_WEBHOOKS), every one down: what one event's fan-out costs
        dead = f"http://127.0.0.1:{free_port()}/gone"
        for n in range(MAX_WEBHOOKS):  # left in place: the last phase on this database, which is dropped after
            await api.post("/api/webhooks", json={"url": f"{dead}/{n}"})
        await asyncio.sleep(6)
        ingest = INGEST_LUA.format(run=uuid.uuid4().hex[:6], clients=clients, **target)
        figures[f"ingest events/s, {MAX_WEBHOOKS} webhooks"] = (await asyncio.to_thread(wrk, base, ingest, args.seconds,
                                                                                        folder))[0]  # fmt: skip
    return figures


async def deliveries(url: str, webhook_id: int, status: str) -> int:
    engine = create_async_engine(url)
    async with engine.connect() as connection:
        found = await connection.scalar(select(func.count()).select_from(OutboxRequest).where(
            OutboxRequest.webhook_id == webhook_id, OutboxRequest.status == status))  # fmt: skip
    await engine.dispose()
    return int(found or 0)


def import_rate(url: str, rows: int, area: int, folder: Path, during=None) -> tuple[float, object]:
    """`callbridge import clients` of `rows` new clients (numbers +7 <area> ...): rows/s, and what `during` (run
    in a thread while the import runs: live traffic) returned."""
    csv = folder / f"import-{area}.csv"
    csv.write_text("name,phones,responsible\n" + "".join(f"Импорт {n},+7{area}{n:07d},andy\n" for n in range(rows)))
    command = [str(BIN / "callbridge"), "import", "clients", str(csv), "--database-url", url]
    began = time.perf_counter()
    importing = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    beside = during() if during else None
    if importing.wait() != 0:
        raise RuntimeError(f"import failed: {importing.stderr.read().decode()[-500:]}")
    return rows / (time.perf_counter() - began), beside


# ---- one run ------------------------------------------------------------------------------------


def measure(base: str, target: dict[str, str], clients: int, args, folder: Path, bare: bool = False) -> dict:
    rnd = random.Random(1)
    lookups = [{"cmd": "contact", "callid": f"l{i}", "phone": phone_of(rnd.randrange(clients)),
                "crm_token": target["token"]} for i in range(args.requests)]  # fmt: skip
    path = "/hooks/bare" if bare else target["path"]
    p50, p99 = asyncio.run(latency(f"{base}{path}", lookups))
    fields = {"clients": clients, "token": target["token"], "path": path}
    lookup_rps, lookup_errors = steady(lambda: wrk(base, LOOKUP_LUA.format(**fields), args.seconds, folder), args.runs)
    ingest_rps, ingest_errors = steady(lambda: wrk(base, INGEST_LUA.format(run=uuid.uuid4().hex[:6], **fields),
                                                   args.seconds, folder), args.runs)  # fmt: skip
    run = uuid.uuid4().hex[:6]

    def incoming(n: int) -> dict[str, str]:
        return {"cmd": "event", "type": "INCOMING", "callid": f"card-{run}-{n}", "phone": phone_of(n),
                "user": "card", "crm_token": target["token"]}  # fmt: skip

    card = asyncio.run(card_latency(base, "/live" if bare else "/api/live", target.get("key", ""),
                                    "/publish" if bare else path, incoming, args.streams))  # fmt: skip
    return {"lookup p50 ms": p50, "lookup p99 ms": p99, "lookup req/s": lookup_rps, "ingest events/s": ingest_rps,
            "card p50 ms": card[0], "card p99 ms": card[1], "cards lost": card[2],
            "non-2xx": lookup_errors + ingest_errors, "journal rows": 0}  # fmt: skip


def measure_bare(clients: int, args, folder: Path) -> dict:
    """The bare endpoints, measured just before each callbridge figure they are the baseline of: this machine's
    speed drifts by half within an hour, which a baseline measured once for the whole run would take for
    callbridge's."""
    port = free_port()
    bare = start([str(BIN / "uvicorn"), "bench.bare:app"], port, dict(os.environ))
    try:
        console.print("measuring the bare baseline")
        return measure(f"http://127.0.0.1:{port}", {"token": "-"}, clients, args, folder, bare=True)
    finally:
        stop(bare)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,1000000", help="client table sizes, comma-separated")
    parser.add_argument("--seconds", type=int, default=10, help="length of each wrk run")
    parser.add_argument("--runs", type=int, default=3, help="wrk runs per throughput figure, which is their median")
    parser.add_argument("--requests", type=int, default=2000, help="lookups for the latency figures")
    parser.add_argument("--streams", type=int, default=1000, help="open SSE streams for the card figure")
    parser.add_argument("--postgres", default="postgresql+asyncpg://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--no-sqlite", action="store_true")
    parser.add_argument("--pg-workers", type=int, default=2)
    parser.add_argument("--import-rows", type=int, default=100_000, help="clients per import figure (0: none)")
    parser.add_argument("--no-webhooks", dest="webhooks", action="store_false", help="skip the webhook figure")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        backends = [("SQLite", None)] * (not args.no_sqlite) + [("PostgreSQL", args.postgres)] * (not args.no_postgres)
        for name, admin in backends:
            for size in sizes:
                url = sqlite_url(folder / f"bench-{size}.db") if admin is None else asyncio.run(pg_database(admin))
                if url is None:
                    break
                target = asyncio.run(fill(url, size))
                workers = 1 if admin is None else args.pg_workers
                env = os.environ | {"CALLBRIDGE_DATABASE_URL": url, "CALLBRIDGE_BACKFILL_MINUTES": "0",
                                    "CALLBRIDGE_RECORDINGS_DIR": str(folder / "recordings"),
                                    "CALLBRIDGE_OUTBOUND_ALLOW": "127.0.0.1",  # the webhook receiver
                                    # a thousand browsers' card streams, all from this machine and with one key
                                    "CALLBRIDGE_MAX_CONNECTIONS_PER_ADDRESS": "4096",
                                    "CALLBRIDGE_LIVE_STREAMS_PER_KEY": str(args.streams + 10)}  # fmt: skip
                port = free_port()
                label = f"{name} {size:,} clients" + (f", {workers} workers" if workers > 1 else "")
                results[f"bare, just before {name} {size:,}"] = measure_bare(size, args, folder)
                console.print(f"measuring callbridge on {label}")
                server = start([str(BIN / "callbridge"), "serve", "--workers", str(workers)], port, env)
                base = f"http://127.0.0.1:{port}"
                try:
                    results[label] = measure(base, target, size, args, folder)
                    if args.import_rows:  # beside live traffic: PBX events all the while the import runs
                        ingest = INGEST_LUA.format(run=uuid.uuid4().hex[:6], clients=size, **target)
                        traffic = lambda: wrk(base, ingest, args.seconds, folder)  # noqa: E731
                        rate, (events, failed) = import_rate(url, args.import_rows, 917, folder, traffic)
                        results[label] |= {"import rows/s beside": rate, "ingest events/s beside import": events,
                                           "non-2xx beside import": failed}  # fmt: skip
                    if args.webhooks:  # a receiver of every event, on loopback
                        receiver_port = free_port()
                        receiver = start([str(BIN / "uvicorn"), "bench.bare:app"], receiver_port, dict(os.environ))
                        try:
                            results[label] |= asyncio.run(webhook_rate(
                                base, url, f"http://127.0.0.1:{receiver_port}/receive", target, size, args, folder))
                        finally:
                            stop(receiver)
                finally:
                    stop(server)
                if args.import_rows:
                    results[label]["import rows/s alone"] = import_rate(url, args.import_rows, 918, folder)[0]
                results[label]["journal rows"] = asyncio.run(journaled(url))
                if admin is not None:
                    asyncio.run(drop_pg(admin, url))
    report(results)


def report(results: dict[str, dict]) -> None:
    """A column per measurement; callbridge's ratios are to the bare column just before it."""
    table = Table(title="callbridge vs a bare Starlette endpoint (same machine, just before)")
    table.add_column("")
    for name in results:
        table.add_column(name, justify="right")
    for metric in ("lookup p50 ms", "lookup p99 ms", "lookup req/s", "ingest events/s", "card p50 ms",
                   "card p99 ms", "cards lost", "non-2xx", "import rows/s alone", "import rows/s beside",
                   "ingest events/s beside import", "non-2xx beside import", "ingest events/s, no webhook",
                   "ingest events/s, receiver dead", "non-2xx, receiver dead", "lookup req/s, receiver dead",
                   "card p99 ms, receiver dead",
                   "ingest events/s, receiver live", "non-2xx, receiver live",
                   "webhook deliveries/s", f"ingest events/s, {MAX_WEBHOOKS} webhooks", "journal rows"):  # fmt: skip
        cells = []
        bare: dict = {}
        for name, r in results.items():
            is_bare = name.startswith("bare")
            bare = r if is_bare else bare
            if metric not in r:
                cells.append("")
                continue
            cell = f"{r[metric]:,.2f}" if "ms" in metric else f"{r[metric]:,.0f}"
            if (
                not is_bare
                and bare.get(metric)
                and metric in TARGETS | {"lookup p50 ms": 0, "card p50 ms": 0}
            ):
                cell += f" ({r[metric] / bare[metric]:.2f}x)"
            op, limit = TARGETS.get(metric, ("", 0))
            if op and not is_bare and (op != ">=x" or bare.get(metric)):  # a ratio needs its bare figure
                value = r[metric] / bare[metric] if op == ">=x" else r[metric]
                cell += " ✓" if (value < limit if op == "<" else value >= limit) else " ✗"
            cells.append(cell)
        table.add_row(metric, *cells)
    console.print(table)
    console.print(
        "(x) = callbridge / bare.  targets: " + ", ".join(f"{m} {op} {v:g}" for m, (op, v) in TARGETS.items())
    )


if __name__ == "__main__":
    main()
