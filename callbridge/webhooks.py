"""Signed webhooks to any CRM (Standard Webhooks): the event types, queueing an event for the receivers that want
it (in the transaction that made it, so it is delivered at least once), and its delivery through the outbox,
signed with the `standardwebhooks` package, on the Svix retry schedule.

What an event's `data` is (the call as the API shows it) is the API's to say: `deliver` takes it as `render`.
"""

from __future__ import annotations

import base64
import json
import logging
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import httpx
from standardwebhooks.webhooks import Webhook as Signer

from . import metrics, outbound, outbox
from .domain.pbx import PbxError
from .store import outbox as outbox_store
from .store import webhooks as webhook_store
from .store.tables import Integration, Webhook

if TYPE_CHECKING:
    from .services import Services

log = logging.getLogger("callbridge.webhooks")

EVENT_TYPES = ("call.ringing", "call.answered", "call.ended", "call.missed", "call.recording_ready",
               "task.created", "task.closed", "client.created")  # fmt: skip
TEST = "webhook.test"  # what `webhook test` sends
SCHEDULE = (5, 300, 1800, 7200, 18000, 36000, 36000)  # seconds before each retry (Standard Webhooks / Svix)
TIMEOUT = 15.0  # a 2xx within this counts
ANSWER_EXCERPT = 4_000  # bytes of a receiver's answer read: its status counts, and an excerpt of an error page
GIVE_UP_AFTER = timedelta(days=5)  # a receiver failing this long in a row is switched off
ROTATION_OVERLAP = timedelta(hours=24)  # the old secret still signs beside the new one this long
MAX_WEBHOOKS = 50  # receivers in all: 1,000 made one event's worst latency 1.6 s
PAUSE_WHEN_DOWN = 5.0  # seconds a receiver that failed is left alone (the schedule's first step)
RETRYABLE = {408, 429}  # and every 5xx; any other status is a refusal that retrying will not change


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


async def emit(session, services: Services, events: list[tuple[str, dict[str, int]]],
               integration_id: int | None = None) -> None:  # fmt: skip
    """Queue the events (type, subject) for every enabled webhook that wants them, in the caller's transaction and
    one statement (nothing if none); the caller wakes the outbox once that commits."""
    hooks = await services.webhooks()
    at = datetime.now(UTC).isoformat()
    rows = [{"integration_id": integration_id, "webhook_id": hook.id,
             "payload": {"type": event_type, "timestamp": at, "message_id": message_id(), "webhook_id": hook.id}
             | subject} for event_type, subject in events for hook in hooks
            if event_type in hook.events and hook.integration_id in (None, integration_id)]  # fmt: skip
    await outbox_store.add_many(session, "webhook", rows)


def message_id() -> str:
    return f"msg_{uuid.uuid4().hex}"


# ---- administering -----------------------------------------------------------------------------


class TooManyWebhooks(LookupError):
    """Every event is queued once per receiver: past MAX_WEBHOOKS, one event's fan-out is a stall of its own."""

    def __init__(self) -> None:
        super().__init__(f"at most {MAX_WEBHOOKS} webhooks: remove one you no longer use first")


async def add(services: Services, url: str, events: list[str] | None, integration_id: int | None) -> Webhook:
    """A new receiver (TooManyWebhooks past MAX_WEBHOOKS)."""
    async with services.db.transaction() as session:
        if await webhook_store.count_webhooks(session) >= MAX_WEBHOOKS:
            raise TooManyWebhooks()
        webhook = await webhook_store.add_webhook(session, url=url, events=list(events or EVENT_TYPES),
                                                  integration_id=integration_id, secret=new_secret())  # fmt: skip
    services.forget_webhooks()
    return webhook


async def rotate(services: Services, webhook_id: int) -> Webhook | None:
    """A new secret; the old one signs beside it for ROTATION_OVERLAP, so receivers can switch without a gap."""
    async with services.db.transaction() as session:
        webhook = await webhook_store.get_webhook(session, webhook_id)
        if webhook is None:
            return None
        await webhook_store.update_webhook(session, webhook_id, secret=new_secret(), previous_secret=webhook.secret,
                                           previous_until=datetime.now(UTC) + ROTATION_OVERLAP)  # fmt: skip
        webhook = await webhook_store.get_webhook(session, webhook_id)
    services.forget_webhooks()
    return webhook


async def change(services: Services, webhook_id: int, **values: Any) -> Webhook | None:
    """Change a webhook (switching it on again forgets why it was off); None if there is none."""
    if values.get("enabled"):
        values |= {"failing_since": None, "disabled_reason": None}
    async with services.db.transaction() as session:
        if values and not await webhook_store.update_webhook(session, webhook_id, **values):
            return None
        webhook = await webhook_store.get_webhook(session, webhook_id)
    services.forget_webhooks()
    return webhook


async def remove(services: Services, webhook_id: int) -> bool:
    async with services.db.transaction() as session:
        removed = await webhook_store.remove_webhook(session, webhook_id)
    services.forget_webhooks()
    return removed


async def send_test(services: Services, webhook_id: int):
    """Deliver a `webhook.test` event now; the delivery as it went (an outbox row)."""
    async with services.db.transaction() as session:
        webhook = await webhook_store.get_webhook(session, webhook_id)
        if webhook is None:
            return None
        payload = {"type": TEST, "timestamp": datetime.now(UTC).isoformat(), "message_id": message_id(),
                   "webhook_id": webhook_id}  # fmt: skip
        request = await outbox.enqueue(session, "webhook", None, webhook_id=webhook_id, payload=payload)
    return await outbox.deliver_now(services, request.id)


# ---- delivering ---------------------------------------------------------------------------------

Render = Callable[["Services", dict[str, Any]], Awaitable[dict[str, Any] | None]]


def delivery(render: Render) -> outbox.Action:
    """The outbox action that delivers events, with `render` saying what an event's `data` is."""

    async def deliver(services: Services, _integration: Integration | None, payload: dict[str, Any]) -> dict:
        webhook = next((w for w in await services.webhooks() if w.id == payload["webhook_id"]), None)
        if webhook is None:  # not among the enabled ones this process knows: new, or switched off or removed
            async with services.db.read() as session:
                webhook = await webhook_store.get_webhook(session, payload["webhook_id"])
        if webhook is None or not webhook.enabled:
            raise PbxError("the webhook was removed or switched off")
        data = await render(services, payload)
        body = json.dumps({"type": payload["type"], "timestamp": payload["timestamp"], "data": data},
                          ensure_ascii=False, default=str)  # fmt: skip
        try:
            response = await _post(services, webhook, payload["message_id"], body)
        except PbxError as exc:
            if exc.retryable:  # the receiver is down: its other deliveries wait, rather than each fail on its own
                services.receivers_down[webhook.id] = time.monotonic() + PAUSE_WHEN_DOWN
            await _failed(services, webhook, str(exc))
            raise
        services.receivers_down.pop(webhook.id, None)
        await _succeeded(services, webhook)
        return {"response_code": response.status_code}

    return outbox.Action(deliver, outbox.Policy(attempts=len(SCHEDULE) + 1, schedule=SCHEDULE), of_a_pbx=False)


def signed_headers(secrets: list[str], message_id: str, body: str) -> dict[str, str]:
    """The Standard Webhooks headers of a JSON body, a `v1,<base64>` signature per secret, space-separated (webhooks
    and the lookup source alike)."""
    at = datetime.now(UTC)
    return {"content-type": "application/json", "webhook-id": message_id, "webhook-timestamp": str(int(at.timestamp())),
            "webhook-signature": " ".join(Signer(key).sign(message_id, at, body) for key in secrets)}  # fmt: skip


def secrets_of(webhook: Webhook) -> list[str]:
    """The secrets that sign now: two while a rotation overlaps."""
    overlap = webhook.previous_secret and webhook.previous_until and webhook.previous_until > datetime.now(UTC)
    return [webhook.secret, webhook.previous_secret] if overlap else [webhook.secret]


async def _post(services: Services, webhook: Webhook, message_id: str, body: str) -> httpx.Response:
    headers = signed_headers(secrets_of(webhook), message_id, body)
    try:
        http = services.http_client(max_answer=ANSWER_EXCERPT)
        response = await http.post(webhook.url, content=body.encode(), headers=headers, timeout=TIMEOUT)
    except outbound.Refused as exc:  # an address callbridge does not fetch from: an admin must allow it
        raise PbxError(str(exc)[:300]) from None
    except httpx.HTTPError as exc:  # no answer, a timeout
        raise PbxError(f"the receiver did not answer: {exc.__class__.__name__}: {exc}"[:300], retryable=True) from None
    metrics.WEBHOOKS.labels(str(response.status_code // 100) + "xx").inc()
    if 200 <= response.status_code < 300:
        return response
    retryable = response.status_code >= 500 or response.status_code in RETRYABLE
    raise PbxError(f"the receiver answered {response.status_code}: {outbound.excerpt(response.text)}",
                   retryable=retryable, retry_after=_retry_after(response),
                   response_code=response.status_code)  # fmt: skip


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "").strip()
    return float(value) if value.isdigit() else None


async def _succeeded(services: Services, webhook: Webhook) -> None:
    if webhook.failing_since is not None:
        async with services.db.transaction() as session:
            await webhook_store.note_outcome(session, webhook.id, ok=True, now=datetime.now(UTC))


async def _failed(services: Services, webhook: Webhook, reason: str) -> None:
    """Keep when it started failing; past GIVE_UP_AFTER of failures in a row, switch the webhook off."""
    now = datetime.now(UTC)
    async with services.db.transaction() as session:
        current = await webhook_store.note_outcome(session, webhook.id, ok=False, now=now)
        since = current.failing_since if current is not None else None
        if since is not None and now - since > GIVE_UP_AFTER:
            why = f"failing since {since.strftime('%Y-%m-%d %H:%M')} UTC: {reason}"[:1000]
            await webhook_store.update_webhook(session, webhook.id, enabled=False, disabled_reason=why)
            log.warning("webhook %s switched off: failing for %s", webhook.id, GIVE_UP_AFTER)
    services.forget_webhooks()
