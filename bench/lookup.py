"""Caller-lookup benchmark: `contact` through the real HTTP server vs a bare Starlette endpoint.

    .venv/bin/python bench/lookup.py [--clients 100000] [--requests 5000] [--concurrency 8]

Both servers run as separate uvicorn processes started the same way; latency is measured with one
client at a time (p50/p99), throughput with `--concurrency` clients. Prints figures and ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from rich.console import Console
from rich.progress import track
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from callbridge.app import build_services  # noqa: E402
from callbridge.config import Settings, sqlite_url  # noqa: E402
from callbridge.store import directory, integrations  # noqa: E402

console = Console()


def phone_of(n: int) -> str:
    return f"+7916{n:07d}"


async def fill(url: str, clients: int) -> tuple[int, str]:
    """An integration and `clients` clients, each with one phone and a responsible manager."""
    services = build_services(Settings(database_url=url))
    await services.db.migrate()
    async with services.db.transaction() as session:
        manager = await directory.add_employee(session, name="Manager", pbx_login="andy")
        pbx = await integrations.add_integration(session, kind="cloudpbx", name="bench", settings={})
    batch = 5000
    for start in track(range(0, clients, batch), description=f"loading {clients:,} clients", console=console):
        rows = [(f"Client {n}", [phone_of(n)], manager.id) for n in range(start, min(start + batch, clients))]
        async with services.db.transaction() as session:
            await directory.add_clients_bulk(session, rows)
    await services.close()
    return pbx.id, pbx.token


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(command: list[str], port: int, env: dict[str, str]) -> subprocess.Popen:
    process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return process
        except OSError:
            if process.poll() is not None:
                raise RuntimeError(process.stderr.read().decode()) from None
            time.sleep(0.1)
    raise RuntimeError(f"{command} did not start")


async def measure(url: str, bodies: list[dict[str, str]], concurrency: int) -> dict[str, float]:
    """p50/p99 latency of one client in a row, and requests per second with `concurrency` clients."""
    async with httpx.AsyncClient(timeout=10, limits=httpx.Limits(max_connections=concurrency)) as http:
        for body in bodies[:200]:  # warm up
            (await http.post(url, data=body)).raise_for_status()
        latencies = []
        for body in bodies:
            began = time.perf_counter()
            (await http.post(url, data=body)).raise_for_status()
            latencies.append(time.perf_counter() - began)
        queue = list(bodies)

        async def worker():
            while queue:
                (await http.post(url, data=queue.pop())).raise_for_status()

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
    cuts = statistics.quantiles(latencies, n=100)
    return {"p50_ms": cuts[49] * 1000, "p99_ms": cuts[98] * 1000, "rps": len(bodies) / elapsed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--database-url", help="defaults to a fresh SQLite file")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or sqlite_url(Path(tmp) / "bench.db")
        integration_id, token = asyncio.run(fill(url, args.clients))
        rnd = random.Random(1)
        bodies = [  # nine in ten callers are clients, one in ten is an unknown number
            {
                "cmd": "contact",
                "crm_token": token,
                "callid": f"b{i}",
                "phone": phone_of(rnd.randrange(args.clients))
                if rnd.random() < 0.9
                else f"+7495{rnd.randrange(10**7):07d}",
            }
            for i in range(args.requests)
        ]
        env = os.environ | {"CALLBRIDGE_DATABASE_URL": url}
        bin_dir = Path(sys.executable).parent
        results = {}
        for name, command, path in [
            ("bare Starlette", [str(bin_dir / "uvicorn"), "bench.bare:app"], "/hooks/bare"),
            (
                "callbridge lookup",
                [str(bin_dir / "callbridge"), "serve"],
                f"/hooks/cloudpbx/{integration_id}",
            ),
        ]:
            port = free_port()
            process = start([*command, "--port", str(port), "--log-level", "warning"], port, env)
            try:
                results[name] = asyncio.run(measure(f"http://127.0.0.1:{port}{path}", bodies, args.concurrency))
            finally:
                process.terminate()
                process.wait(10)

    bare, ours = results["bare Starlette"], results["callbridge lookup"]
    table = Table(title=f"caller lookup, {args.clients:,} clients, {args.requests:,} requests, {url.split(':')[0]}")
    for column in ("", "p50 ms (1 client)", "p99 ms (1 client)", f"req/s ({args.concurrency} clients)"):
        table.add_column(column, justify="right")
    for name, r in results.items():
        table.add_row(name, f"{r['p50_ms']:.2f}", f"{r['p99_ms']:.2f}", f"{r['rps']:.0f}")
    table.add_row(
        "ratio (callbridge / bare)",
        f"{ours['p50_ms'] / bare['p50_ms']:.2f}x",
        f"{ours['p99_ms'] / bare['p99_ms']:.2f}x",
        f"{ours['rps'] / bare['rps']:.2f}x",
    )
    console.print(table)
    console.print(
        f"targets: lookup p99 < 10 ms -> {'met' if ours['p99_ms'] < 10 else 'NOT met'}; "
        f"throughput >= 0.3x bare -> {'met' if ours['rps'] >= 0.3 * bare['rps'] else 'NOT met'}"
    )


if __name__ == "__main__":
    main()
