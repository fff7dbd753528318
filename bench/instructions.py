"""CPU instructions per request, counted by valgrind (callgrind): callbridge beside the bare endpoint, in one run.

    .venv/bin/python bench/instructions.py                 # SQLite, 10k clients, 300 requests of each kind
    .venv/bin/python bench/instructions.py --postgres postgresql+asyncpg://postgres@127.0.0.1:5432/postgres

Requests/s on a shared machine move by half within an hour, so a change worth 5% cannot be seen in `bench/run.py`
without many alternating runs. An instruction count is the same from one run to the next (within 0.5%), whatever
else the machine does. Each server runs under callgrind, one request at a time after a warm-up, and only those
requests are counted: the same caller lookups and PBX events (a call ringing, answered, ended) as `bench/run.py`
posts, and the bare endpoint's form post as their floor. What it leaves out: one request at a time shares no
commit (under load ~7 share one), and on PostgreSQL the database server's own work is not counted (its CPU per
event is in docs/production.md).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.run import BIN, drop_pg, fill, free_port, pg_database, phone_of  # noqa: E402
from callbridge.config import sqlite_url  # noqa: E402

console = Console()
SERVE = "from callbridge.cli import app; app()"  # valgrind runs an executable, not the `callbridge` script
SETTLE = 2.0  # seconds: four times the batches of journaled lookups
# Periodic jobs that would run during the count and add what they cost per second, not per request, are put off.
QUIET = {"CALLBRIDGE_BACKFILL_MINUTES": "0", "CALLBRIDGE_RECORDING_POLL_SECONDS": "3600",
         "CALLBRIDGE_SWEEP_INTERVAL_SECONDS": "3600"}


def counted(command: list[str], env: dict[str, str], folder: Path, posts: dict[str, list[tuple[str, dict]]]) -> dict:
    """Instructions per request of each kind in `posts` ({kind: [(path, form)]}), the server `command` (which
    takes --port) under callgrind, counting only while that kind's requests are sent."""
    port = free_port()
    out = folder / f"callgrind-{port}.out"
    server = subprocess.Popen(
        ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}", *command,
         "--port", str(port)],
        env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(server, base)
        figures = {}
        with httpx.Client(base_url=base, timeout=60) as http:
            for kind, requests in posts.items():
                warm, measured = requests[:50], requests[50:]
                for path, form in warm:
                    http.post(path, data=form).raise_for_status()
                time.sleep(SETTLE)
                before = _total(server.pid, out)
                _control("-i", "on", server.pid)
                for path, form in measured:
                    http.post(path, data=form).raise_for_status()
                time.sleep(SETTLE)  # what the server does after answering (lookups are journaled in batches)
                _control("-i", "off", server.pid)
                figures[kind] = (_total(server.pid, out) - before) / len(measured)
        return figures
    finally:
        server.terminate()
        server.wait(60)


def _wait_until_up(server: subprocess.Popen, base: str) -> None:
    for _ in range(600):  # a Python server starts ~50 times slower under valgrind
        try:
            httpx.get(f"{base}/healthz", timeout=30)
            return
        except httpx.TransportError:
            if server.poll() is not None:
                raise RuntimeError("the server under valgrind exited") from None
            time.sleep(0.5)
    raise RuntimeError("the server under valgrind did not start")


def _control(*args) -> None:
    subprocess.run(["callgrind_control", *map(str, args)], check=True, capture_output=True)


def _total(pid: int, out: Path) -> int:
    """Every instruction counted so far: callgrind dumps its counters (and zeroes them) into a new file each time."""
    _control("-d", pid)
    return sum(_totals(dump) for dump in out.parent.glob(f"{out.name}*"))


def _totals(dump: Path) -> int:
    for line in dump.read_text(errors="replace").splitlines():
        if line.startswith("totals:"):
            return int(line.split()[1])
    return 0


def requests_for(target: dict[str, str], clients: int, count: int) -> dict[str, list[tuple[str, dict]]]:
    """`count` + 50 (the warm-up) caller lookups and PBX events, as `bench/run.py` posts them."""
    token, path = target["token"], target["path"]
    lookups = [(path, {"cmd": "contact", "callid": f"l{i}", "phone": phone_of(i * 7919 % clients), "crm_token": token})
               for i in range(count + 50)]  # fmt: skip
    kinds = ("INCOMING", "ACCEPTED", "COMPLETED")
    events = [(path, {"cmd": "event", "type": kinds[i % 3], "callid": f"call-{i // 3}", "phone": "79160000001",
                      "user": "andy", "direction": "in", "duration": "30", "crm_token": token})
              for i in range(count + 51 - (count + 51) % 3)]  # fmt: skip
    return {"event": events, "lookup": lookups}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=300, help="requests of each kind counted")
    parser.add_argument("--postgres", help="an admin URL: count one PostgreSQL server process too")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        bare_posts = [("/hooks/bare", {"cmd": "event", "callid": f"b{i}", "phone": "79160000001", "crm_token": "-"})
                      for i in range(args.requests + 50)]  # fmt: skip
        console.print("counting the bare endpoint")
        bare = counted([str(BIN / "python"), "-m", "uvicorn", "bench.bare:app", "--log-level", "warning"],
                       dict(os.environ), folder, {"form post": bare_posts})["form post"]  # fmt: skip
        results = {}
        for name, admin in [("SQLite", None)] + ([("PostgreSQL", args.postgres)] if args.postgres else []):
            url = sqlite_url(folder / "bench.db") if admin is None else asyncio.run(pg_database(admin))
            if url is None:
                continue
            target = asyncio.run(fill(url, args.clients))
            env = os.environ | QUIET | {"CALLBRIDGE_DATABASE_URL": url, "CALLBRIDGE_RECORDINGS_DIR": str(folder)}
            console.print(f"counting callbridge on {name}")
            command = [str(BIN / "python"), "-c", SERVE, "serve", "--log-level", "warning"]
            try:
                results[name] = counted(command, env, folder, requests_for(target, args.clients, args.requests))
            finally:
                if admin is not None:
                    asyncio.run(drop_pg(admin, url))
    table = Table(title=f"instructions per request (callgrind, one at a time, {args.clients:,} clients)")
    table.add_column("")
    table.add_column("bare form post", justify="right")
    for name in results:
        table.add_column(name, justify="right")
    for kind in ("event", "lookup"):
        cells = [f"{r[kind] / 1e6:.3f} M ({bare / r[kind]:.3f}x)" for r in results.values()]
        table.add_row(kind, f"{bare / 1e6:.3f} M", *cells)
    console.print(table)
    console.print("(x) = bare / callbridge: the share of the bare endpoint's rate a CPU-bound server would reach")


if __name__ == "__main__":
    main()
