"""Durable outbound requests: a row first, then delivery by whichever worker claims it, with retries,
exponential backoff with jitter, a log row per attempt and a per-integration rate limit.

A refusal that needs a person (a wrong token, an unknown employee) fails at once; "not now" (no answer, 5xx,
a rate limit) is tried again until the action's attempts or time run out. Either way the last state and its
reason stay on the row, for people to see and retry.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from . import metrics
from .domain.pbx import PbxError
from .store import outbox as outbox_store
from .store.tables import Integration, OutboxRequest

if TYPE_CHECKING:
    from .services import Services

log = logging.getLogger("callbridge.outbox")

CLAIMED_AT_ONCE = 20  # requests a worker takes and makes side by side


@dataclass(frozen=True)
class Policy:
    attempts: int  # then the request fails for good
    first_retry: float = 0.0  # seconds before the second attempt; doubles each time, with jitter
    max_retry: float = 3600.0
    expires: float | None = None  # seconds after which doing it is pointless (nobody waits for that call now)
    schedule: tuple[float, ...] = ()  # or: the seconds before each retry, as a published schedule says

    def delay(self, attempts: int, asked: float | None = None) -> timedelta:
        """Exponential backoff with jitter, so a PBX that comes back is not hit by every request at once (or the
        schedule's next step, with a little jitter); never sooner than the peer `asked` (Retry-After)."""
        if self.schedule:
            base = self.schedule[min(attempts, len(self.schedule)) - 1] * random.uniform(0.9, 1.1)
        else:
            base = min(self.first_retry * 2 ** (attempts - 1), self.max_retry) * random.uniform(0.5, 1.5)
        return timedelta(seconds=max(base, min(asked or 0.0, 24 * 3600.0)))

    def expiry(self, now: datetime) -> datetime | None:
        return now + timedelta(seconds=self.expires) if self.expires is not None else None


Deliver = Callable[["Services", Integration | None, dict[str, Any]], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class Action:
    deliver: Deliver  # makes the request; returns what to keep as the result, raises PbxError
    policy: Policy
    of_a_pbx: bool = True  # made of the integration's PBX (its dialect, its rate limit), not of another peer


ACTIONS: dict[str, Action] = {}


def register(actions: dict[str, Action]) -> None:
    """Say what outbox requests of these names do (the flows define them; the outbox knows no flow)."""
    ACTIONS.update(actions)


class StillTrying(PbxError):
    """The PBX did not take the request yet; it stays queued and is retried by the server."""

    def __init__(self, request: OutboxRequest) -> None:
        self.request = request
        when = request.next_attempt_at.strftime("%H:%M:%S UTC")
        super().__init__(f"{request.error}; callbridge will try again at {when} (outbox #{request.id})", retryable=True)


async def enqueue(session, name: str, integration_id: int, **values) -> OutboxRequest:
    """Keep a request in the caller's transaction; it is made once that commits."""
    now = datetime.now(UTC)
    policy = ACTIONS[name].policy
    return await outbox_store.add(
        session, action=name, integration_id=integration_id, next_attempt_at=now, expires_at=policy.expiry(now),
        **values,
    )  # fmt: skip


async def deliver_now(services: Services, request_id: int) -> OutboxRequest:
    """Make this request at once, for a person waiting on it; its state afterwards (another worker's attempt
    under way or a retry later included)."""
    await _deliver(services, datetime.now(UTC), request_id=request_id)
    async with services.db.read() as session:
        return await outbox_store.get(session, request_id)


def result_of(request: OutboxRequest) -> dict[str, Any]:
    """The result of a done request; PbxError if it failed, StillTrying while it is queued."""
    if request.status == "done":
        return request.result or {}
    if request.status == "failed":
        raise PbxError(request.error or "failed")
    raise StillTrying(request)


async def drain(services: Services, now: datetime) -> int:
    """The worker: make the requests that are due, a batch at a time until none is; returns how many were tried."""
    tried = 0
    while count := await _deliver(services, now):
        tried += count
        if count < CLAIMED_AT_ONCE:
            break
    return tried


async def retry(services: Services, request_id: int) -> OutboxRequest | None:
    """A person asks for a failed request again: fresh attempts, and one made now."""
    async with services.db.transaction() as session:
        request = await outbox_store.get(session, request_id)
        if request is None:
            return None
        policy = ACTIONS[request.action].policy if request.action in ACTIONS else None
        now = datetime.now(UTC)
        requeued = await outbox_store.requeue(session, request_id, now, policy.expiry(now) if policy else None)
    return await deliver_now(services, request_id) if requeued else request


async def _deliver(services: Services, now: datetime, request_id: int | None = None) -> int:
    """Claim the due requests (or the one given) and make them side by side: one slow peer holds up no other."""
    receivers = []
    if request_id is None:
        async with services.db.read() as session:  # a read first: on SQLite a claim takes the write lock
            receivers = await outbox_store.receivers(session, services.paused_webhooks())
            if not await outbox_store.any_due(session, now, receivers):
                return 0
    async with services.db.transaction() as session:
        lease = timedelta(seconds=services.settings.outbox_lease_seconds)
        claimed = await outbox_store.claim(session, now, lease, limit=CLAIMED_AT_ONCE, request_id=request_id,
                                           receivers=receivers)  # fmt: skip
    by_receiver: dict[int | None, list[OutboxRequest]] = {}
    for request in claimed:
        by_receiver.setdefault(request.webhook_id, []).append(request)
    await asyncio.gather(*(_attempt(services, request) for request in by_receiver.pop(None, [])),
                         *(_to_receiver(services, requests) for requests in by_receiver.values()))  # fmt: skip
    return len(claimed)


async def _to_receiver(services: Services, requests: list[OutboxRequest]) -> None:
    """One webhook's deliveries, side by side; after its receiver failed, one goes first, and if the receiver is
    still down the others wait out the next pause without an attempt (a dead receiver costs one try per pause)."""
    webhook_id, rest = requests[0].webhook_id, requests
    if webhook_id in services.receivers_down:
        await _attempt(services, requests[0])
        rest = requests[1:]
        if rest and (seconds := services.receiver_down_for(webhook_id)):
            async with services.db.transaction() as session:
                at = datetime.now(UTC) + timedelta(seconds=seconds)
                await outbox_store.postpone(session, [request.id for request in rest], at)
            return
    await asyncio.gather(*(_attempt(services, request) for request in rest))


async def _attempt(services: Services, request: OutboxRequest) -> None:
    now = datetime.now(UTC)
    known = ACTIONS.get(request.action)
    integration = await services.integration(request.integration_id)
    dialect = services.dialects.get(integration.kind) if integration else None
    outcome, detail, values = "failed", None, {}
    if known is None or (known.of_a_pbx and dialect is None):
        detail = f"nothing knows how to do {request.action!r} for integration {request.integration_id}"
    elif request.expires_at is not None and request.expires_at <= now:
        detail = "too late: nobody waits for it any more"
    else:
        if known.of_a_pbx:
            await services.rate.wait(integration.id, dialect.rate_per_second / max(1, services.settings.workers))
        try:
            values["result"] = await known.deliver(services, integration, request.payload)
            outcome = "done"
            values["response_code"] = values["result"].get("response_code")
        except PbxError as exc:
            detail = str(exc)
            values["response_code"] = exc.response_code
            if exc.retryable and request.attempts + 1 < known.policy.attempts:
                retry_at = now + known.policy.delay(request.attempts + 1, exc.retry_after)
                if request.expires_at is None or retry_at < request.expires_at:
                    outcome, values["next_attempt_at"] = "retry", retry_at
        except Exception:
            log.exception("outbox request %s (%s) failed", request.id, request.action)
            detail = "internal error (see the server log)"
    values["status"] = "pending" if outcome == "retry" else outcome
    metrics.OUTBOX.labels(request.action, outcome).inc()
    if outcome != "done":
        log.warning("outbox #%s %s: %s (%s)", request.id, request.action, detail, outcome)
    async with services.db.transaction() as session:
        await outbox_store.finish(session, request, outcome, detail, **values)
