"""A real uvicorn server in a thread, for the app and for fake PBXs."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import uvicorn

from callbridge.app import create_app
from callbridge.config import Settings
from callbridge.server import uvicorn_config


@contextmanager
def serve_app(app, settings: Settings | None = None) -> Iterator[str]:
    """Serve an ASGI app on 127.0.0.1 on a free port until the block ends; yields its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    # open live streams (a browser's) would hold a graceful shutdown forever: cut them after a second
    config = uvicorn_config(app, settings or Settings(), log_level="warning", lifespan="on",
                            timeout_graceful_shutdown=1)  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("test server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
        # a server left running keeps its background jobs on the shared test database: later tests fail oddly
        assert not thread.is_alive(), "the test server did not stop within 10 s"


@contextmanager
def running_server(settings: Settings) -> Iterator[str]:
    with serve_app(create_app(settings), settings) as url:
        yield url


async def collect_live(http, url: str, key: str, into: list[dict], opened: asyncio.Event | None = None) -> None:
    """Append every message of a live SSE stream to `into` until cancelled (setting `opened` once the server says
    the stream is subscribed)."""
    import json

    async with http.stream("GET", url, headers={"Authorization": f"Bearer {key}"}) as stream:
        async for line in stream.aiter_lines():
            if line.startswith("data: "):
                into.append(json.loads(line[6:]))
            elif line == ": connected" and opened is not None:
                opened.set()


async def live_listener(http, url: str, key: str, into: list[dict]) -> asyncio.Task:
    """A task collecting a live stream into `into` (see collect_live), returned once the server has subscribed the
    stream, so a card sent next reaches it."""
    opened = asyncio.Event()
    listener = asyncio.create_task(collect_live(http, url, key, into, opened))
    waiting = asyncio.create_task(opened.wait())
    await asyncio.wait([listener, waiting], timeout=30, return_when=asyncio.FIRST_COMPLETED)
    waiting.cancel()
    if listener.done():
        listener.result()  # the stream was refused or failed: say why
    if not opened.is_set():
        listener.cancel()
        raise AssertionError(f"the live stream {url} did not open in 30 s")
    return listener


@contextmanager
def serve_process(database_url: str, folder, *options: str, **env: str) -> Iterator[tuple[str, subprocess.Popen]]:
    """`callbridge serve` as an admin starts it (with `options`, such as `--workers 2`), in its own process, session
    and folder (CALLBRIDGE_* settings in env); yields its base URL and the process (its output goes to
    folder/server.log)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    log = open(folder / "server.log", "wb")  # noqa: SIM115 - closed below
    command = [str(Path(sys.executable).with_name("callbridge")), "serve", "--port", str(port),
               "--database-url", database_url, *options]  # fmt: skip
    variables = os.environ | {f"CALLBRIDGE_{k.upper()}": v for k, v in env.items()}
    process = subprocess.Popen(command, cwd=folder, stdout=log, stderr=subprocess.STDOUT, env=variables,
                               start_new_session=True)  # as a terminal would, a process group of its own
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"callbridge serve did not start: {(folder / 'server.log').read_text()[-2000:]}")
        time.sleep(0.1)
    try:
        yield url, process
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
