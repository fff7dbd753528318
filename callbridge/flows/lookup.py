"""Caller lookup under its deadline: a ringing call never waits longer than the integration allows."""

from __future__ import annotations

import asyncio
import logging
import time

from .. import lookup_source, metrics
from ..domain.pbx import CallerInfo
from ..domain.phones import normalize
from ..services import Services
from ..store import crm, directory

log = logging.getLogger("callbridge.flows")


async def lookup(
    services: Services, raw_phone: str | None, integration_id: int, *, call_key: str | None = None,
    problems: list[str] | None = None,
) -> CallerInfo | None:
    """Who is calling: the client and who to route the call to, or None for an unknown number.

    A number callbridge does not know is asked of the company's lookup source, if there is one. A responsible
    manager who is away (or no longer active) is replaced by the integration's fallback employee, or left out so
    the PBX routes the call its own way. A ringing call never waits for the store or the source: past
    `lookup_deadline_ms`, or when the store fails, the answer is "unknown" or the integration's `deadline_route`.
    What went wrong is added to `problems`, for the call to show.
    """
    problems = [] if problems is None else problems
    phone = normalize(raw_phone, services.settings.default_region)
    if phone is None:
        metrics.LOOKUPS.labels("unknown").inc()
        return None
    started = time.perf_counter()
    try:
        info = await _within(services.settings.lookup_deadline_ms / 1000,
                             _caller(services, phone, integration_id, call_key, problems))  # fmt: skip
    except Exception as exc:  # the deadline passed, or the store is down: answer anyway
        metrics.LOOKUPS.labels("deadline").inc()
        log.warning("caller lookup gave up (%s): answering with the default route", exc.__class__.__name__)
        problems.append(f"the caller lookup gave up ({exc.__class__.__name__}: {exc}); the PBX was told the default")
        route = (await services.rules(integration_id)).deadline_route
        return CallerInfo(None, None, None, None, route, route) if route else None
    metrics.LOOKUP_SECONDS.observe(time.perf_counter() - started)
    metrics.LOOKUPS.labels("known" if info else "unknown").inc()
    return info


async def _caller(
    services: Services, phone: str, integration_id: int, call_key: str | None, problems: list[str]
) -> CallerInfo | None:
    async with services.db.connect() as connection:
        info = await directory.lookup_caller(connection, phone)
    if info is None:
        try:
            info = await lookup_source.ask(services, phone, call_key=call_key, integration_id=integration_id)
        except lookup_source.SourceFailed as exc:
            metrics.FAILURES.labels("lookup_source").inc()
            log.warning("caller lookup: %s", exc)
            problems.append(str(exc))
    if info is None or info.responsible_id is None or info.responsible_available:
        return info
    rules = await services.rules(integration_id)
    async with services.db.read() as session:
        fallback = await crm.available_employee(session, rules.routing_fallback_employee_id)
    return info.routed_to(fallback)


async def _within(seconds: float, work):
    """The result of `work`, or TimeoutError after `seconds` without waiting for it to wind down."""
    task = asyncio.ensure_future(work)
    done, _ = await asyncio.wait({task}, timeout=seconds)
    if task in done:
        return task.result()
    task.cancel()
    task.add_done_callback(lambda t: t.cancelled() or t.exception())  # nobody waits for it; no warning
    raise TimeoutError(f"no answer in {seconds:.3f} s")
