"""The outbox worker in a process of its own, below the server's CPU priority (`serve` runs it so): webhook
deliveries and the PBX requests queued in the outbox never take the CPU from a PBX request, and take another core
where there is one.

The server and its outbox process talk over the process's pipes. A line on its stdin says "something is due now",
so a delivery waits for no poll. The end of its stdin says the server is gone, and the process ends with it, a
killed server's included. On its stdout it writes its counters, which the server's /metrics shows as its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, TextIO

from pydantic import SecretStr

from . import metrics
from .config import Settings

if TYPE_CHECKING:
    from .services import Services

log = logging.getLogger("callbridge.outbox")

NICENESS = 10  # how much lower its CPU priority is than the server's
COUNTED_APART = (metrics.OUTBOX, metrics.WEBHOOKS)  # what only the outbox worker counts
WAKE_GAP = 0.2  # seconds between two wake-ups of the outbox process at least
COMMAND = [sys.executable, "-m", "callbridge.cli.outbox_worker"]


async def keep_running(settings: Settings, due: asyncio.Event) -> None:
    """The server's side: the outbox process started, told when something is due, and started again if it ends
    (its counters carry on); it is stopped when this task is cancelled."""
    while True:
        pipe = asyncio.subprocess.PIPE
        try:
            # a session of its own: a Ctrl+C, which signals the terminal's whole process group, stops the server,
            # which ends this process once it has finished, instead of this one dying first and being started again
            process = await asyncio.create_subprocess_exec(*COMMAND, stdin=pipe, stdout=pipe, start_new_session=True,
                                                           env=_environment(settings))  # fmt: skip
        except OSError as exc:
            log.error("the outbox process could not start (%s); trying again", exc)
            await asyncio.sleep(5)
            continue
        talk = [asyncio.create_task(_tell_when_due(due, process.stdin)), asyncio.create_task(_count(process.stdout))]
        try:
            code = await process.wait()
        finally:
            for task in talk:
                task.cancel()
            if process.returncode is None:  # the server is stopping: the end of stdin stops the process
                process.stdin.close()
                try:
                    await asyncio.wait_for(process.wait(), 10)
                except TimeoutError:
                    process.kill()
        log.error("the outbox process ended (exit code %s); starting it again", code)
        await asyncio.sleep(1)


async def work(services: Services, jobs: Coroutine[Any, Any, None]) -> None:
    """The outbox process's side: run `jobs` (the outbox worker, woken by `services.outbox_due`) until stdin
    ends, writing the counters on stdout after every change."""
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    running = [asyncio.create_task(jobs), asyncio.create_task(_report(sys.stdout))]
    try:
        while await stdin.readline():
            services.outbox_due.set()
    finally:
        for task in running:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _environment(settings: Settings) -> dict[str, str]:
    """The server's settings, as the outbox process reads them (given on the command line or not)."""
    plain = {name: value.get_secret_value() if isinstance(value, SecretStr) else value
             for name, value in settings.model_dump().items()}  # fmt: skip
    inherited = {name: value for name, value in os.environ.items() if name != metrics.SHARED}  # it reports its own
    return inherited | {f"CALLBRIDGE_{name.upper()}": str(value) for name, value in plain.items()}


async def _tell_when_due(due: asyncio.Event, stdin: asyncio.StreamWriter) -> None:
    """A line when something is due, and no more than one per WAKE_GAP: under a stream of PBX events the outbox
    process looks for them a batch at a time, not once per event."""
    with contextlib.suppress(ConnectionError):
        while True:
            await due.wait()
            due.clear()
            stdin.write(b"\n")
            await stdin.drain()
            await asyncio.sleep(WAKE_GAP)


def _totals() -> dict[str, float]:
    """Every counted value, by counter and labels."""
    return {json.dumps([family.name, sample.labels]): sample.value
            for counter in COUNTED_APART for family in counter.collect()
            for sample in family.samples if sample.name.endswith("_total")}  # fmt: skip


async def _report(stdout: TextIO) -> None:
    reported: dict[str, float] = {}
    while True:
        if (totals := _totals()) != reported:
            stdout.write(json.dumps(totals) + "\n")
            stdout.flush()
            reported = totals
        await asyncio.sleep(1)


async def _count(stdout: asyncio.StreamReader) -> None:
    """Add to the server's counters what the outbox process counted since its last report."""
    counters = {family.name: counter for counter in COUNTED_APART for family in counter.describe()}
    seen: dict[str, float] = {}
    while line := await stdout.readline():
        try:
            totals: dict[str, Any] = json.loads(line)
        except ValueError:  # not a report (something printed): not a count either
            continue
        for key, total in totals.items():
            name, labels = json.loads(key)
            if total > seen.get(key, 0.0):
                counters[name].labels(**labels).inc(total - seen.get(key, 0.0))
        seen = totals
