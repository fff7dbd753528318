"""The JSON API's bridge to a company's own CRM: webhooks (receivers, their deliveries, a retry, and what each
event's `data` is, for the outbox action that delivers them) and the lookup source."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException

from .. import lookup_source, outbox, webhooks
from ..store import directory
from ..store import outbox as outbox_store
from ..store import webhooks as webhook_store
from ..store.tables import Task
from .routes import IdPath, Services, StrictJsonRoute, _clients_out, call_detail, require_key
from .schemas import (
    DeliveryAttemptOut,
    DeliveryOut,
    LookupSourceIn,
    LookupSourceOut,
    LookupSourceSet,
    TaskOut,
    WebhookCreated,
    WebhookEvent,
    WebhookIn,
    WebhookOut,
    WebhookPatch,
)

router = APIRouter(prefix="/api", dependencies=[Depends(require_key)], route_class=StrictJsonRoute, tags=["webhooks"])


async def render(services, payload: dict[str, Any]) -> dict[str, Any] | None:
    """An event's `data`, as it is when delivered (a call's `sequence` says which copy is newer)."""
    if "call_id" in payload:
        detail = await call_detail(services, payload["call_id"])
        return detail.model_dump(mode="json") if detail else {"id": payload["call_id"], "removed": True}
    async with services.db.read() as session:
        if "task_id" in payload:
            task = await session.get(Task, payload["task_id"])
            return TaskOut.model_validate(task).model_dump(mode="json") if task else {"id": payload["task_id"]}
        if "client_id" in payload:
            client = await directory.get_client(session, payload["client_id"])
            if client is None:
                return {"id": payload["client_id"], "removed": True}
            return (await _clients_out(session, [client]))[0].model_dump(mode="json")
    return {"webhook_id": payload["webhook_id"], "message": "a test event from callbridge"}


outbox.register({"webhook": webhooks.delivery(render)})


@router.get("/webhooks", response_model=list[WebhookOut])
async def list_webhooks(services: Services):
    async with services.db.read() as session:
        return await webhook_store.list_webhooks(session)


@router.post("/webhooks", response_model=WebhookCreated, status_code=201)
async def add_webhook(body: WebhookIn, services: Services):
    """A receiver of signed events; its `secret` is shown here and on rotation only."""
    await _integration_exists(services, body.integration_id)
    try:
        return await webhooks.add(services, str(body.url), body.events, body.integration_id)
    except webhooks.TooManyWebhooks as exc:
        raise HTTPException(409, str(exc)) from None


@router.get("/webhooks/{webhook_id}", response_model=WebhookOut)
async def get_webhook(webhook_id: IdPath, services: Services):
    async with services.db.read() as session:
        return _found(await webhook_store.get_webhook(session, webhook_id))


@router.patch("/webhooks/{webhook_id}", response_model=WebhookOut)
async def change_webhook(webhook_id: IdPath, body: WebhookPatch, services: Services):
    values = body.model_dump(exclude_unset=True)
    if values.get("url") is not None:
        values["url"] = str(values["url"])
    if None in (values.get("url", 1), values.get("events", 1), values.get("enabled", 1)):
        raise HTTPException(400, "url, events and enabled cannot be null")
    await _integration_exists(services, values.get("integration_id"))
    return _found(await webhooks.change(services, webhook_id, **values))


@router.delete("/webhooks/{webhook_id}", status_code=204)
async def remove_webhook(webhook_id: IdPath, services: Services):
    if not await webhooks.remove(services, webhook_id):
        raise HTTPException(404, "no such webhook")


@router.post("/webhooks/{webhook_id}/rotate", response_model=WebhookCreated)
async def rotate_secret(webhook_id: IdPath, services: Services):
    """A new secret; the old one still signs beside it for 24 hours."""
    return _found(await webhooks.rotate(services, webhook_id))


@router.post("/webhooks/{webhook_id}/test", response_model=DeliveryOut)
async def test_webhook(webhook_id: IdPath, services: Services):
    """Send a `webhook.test` event now, and say how it went."""
    request = _found(await webhooks.send_test(services, webhook_id))
    return (await _deliveries_out(services, [request]))[0]


@router.get("/webhooks/{webhook_id}/deliveries", response_model=list[DeliveryOut])
async def list_deliveries(webhook_id: IdPath, services: Services):
    """The newest deliveries, each with every attempt."""
    async with services.db.read() as session:
        _found(await webhook_store.get_webhook(session, webhook_id))
        requests = await webhook_store.deliveries(session, webhook_id)
    return await _deliveries_out(services, requests)


@router.post("/webhooks/{webhook_id}/deliveries/{delivery_id}/retry", response_model=DeliveryOut)
async def retry_delivery(webhook_id: IdPath, delivery_id: IdPath, services: Services):
    """Deliver a failed event again (with its `webhook-id`), now."""
    async with services.db.read() as session:
        request = await outbox_store.get(session, delivery_id)
    if request is None or request.webhook_id != webhook_id:
        raise HTTPException(404, "no such delivery")
    if request.status != "failed":
        raise HTTPException(409, f"the delivery is {request.status}, not failed")
    return (await _deliveries_out(services, [await outbox.retry(services, delivery_id)]))[0]


@router.get("/lookup-source", response_model=LookupSourceOut, tags=["lookup source"])
async def get_lookup_source(services: Services):
    """The system asked about numbers callbridge does not know (404 if there is none)."""
    source = await services.lookup_source()
    if source is None:
        raise HTTPException(404, "no lookup source is set")
    return source


@router.put("/lookup-source", response_model=LookupSourceSet, tags=["lookup source"])
async def set_lookup_source(body: LookupSourceIn, services: Services):
    """Ask this URL about unknown callers: a signed POST `{"phone", "call_id", "integration_id"}`, answered with
    `{"name", "responsible", "external_id", "deal": {"title", "amount"}}`, or 404 / `{}` for unknown."""
    return await lookup_source.configure(services, str(body.url), body.cache_seconds)


@router.delete("/lookup-source", status_code=204, tags=["lookup source"])
async def clear_lookup_source(services: Services):
    if not await lookup_source.clear(services):
        raise HTTPException(404, "no lookup source is set")


async def _deliveries_out(services: Services, requests) -> list[DeliveryOut]:
    async with services.db.read() as session:
        attempts = await webhook_store.attempts_of(session, [r.id for r in requests])
    return [
        DeliveryOut(id=r.id, message_id=r.payload.get("message_id", ""), type=r.payload.get("type", ""),
                    status=r.status, attempts=r.attempts, response_code=r.response_code, error=r.error,
                    next_attempt_at=r.next_attempt_at if r.status == "pending" else None, created_at=r.created_at,
                    attempt_log=[DeliveryAttemptOut.model_validate(a) for a in attempts[r.id]])
        for r in requests
    ]  # fmt: skip


async def _integration_exists(services: Services, integration_id: int | None) -> None:
    if integration_id is not None and await services.integration(integration_id) is None:
        raise HTTPException(400, f"integration {integration_id} does not exist")


def _found(value):
    if value is None:
        raise HTTPException(404, "no such webhook")
    return value


def document(app) -> None:
    """The deliveries in the OpenAPI document's `webhooks` section, one per event type."""
    for event_type in webhooks.EVENT_TYPES:

        def receiver(body: WebhookEvent) -> None: ...

        receiver.__doc__ = (f"`{event_type}`: a POST with the Standard Webhooks headers `webhook-id`, "
                            "`webhook-timestamp` and `webhook-signature` (`v1,` + base64 HMAC-SHA256 of "
                            "`id.timestamp.body` with the webhook's secret). See docs/webhooks.md.")  # fmt: skip
        app.webhooks.post(event_type)(receiver)
