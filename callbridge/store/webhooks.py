"""Webhook receivers and their deliveries (outbox rows of action `webhook`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from .tables import OutboxAttempt, OutboxRequest, Webhook


async def add_webhook(session: AsyncSession, **values: Any) -> Webhook:
    webhook = Webhook(**values)
    session.add(webhook)
    await session.flush()
    return webhook


async def count_webhooks(session: AsyncSession) -> int:
    return await session.scalar(select(func.count()).select_from(Webhook)) or 0


async def get_webhook(session: AsyncSession, webhook_id: int) -> Webhook | None:
    return await session.get(Webhook, webhook_id, populate_existing=True)


async def list_webhooks(session: AsyncSession, *, enabled_only: bool = False) -> list[Webhook]:
    query = select(Webhook).order_by(Webhook.id)
    if enabled_only:
        query = query.where(Webhook.enabled)
    return list(await session.scalars(query))


async def update_webhook(session: AsyncSession, webhook_id: int, **values: Any) -> bool:
    result = await session.execute(update(Webhook).where(Webhook.id == webhook_id).values(**values))
    return result.rowcount > 0


async def remove_webhook(session: AsyncSession, webhook_id: int) -> bool:
    result = await session.execute(delete(Webhook).where(Webhook.id == webhook_id))
    return result.rowcount > 0


async def deliveries(session: AsyncSession, webhook_id: int, limit: int = 100) -> list[OutboxRequest]:
    """The webhook's newest deliveries."""
    query = select(OutboxRequest).where(OutboxRequest.webhook_id == webhook_id)
    return list(await session.scalars(query.order_by(OutboxRequest.id.desc()).limit(limit)))


async def attempts_of(session: AsyncSession, request_ids: list[int]) -> dict[int, list[OutboxAttempt]]:
    found: dict[int, list[OutboxAttempt]] = {i: [] for i in request_ids}
    if request_ids:
        rows = await session.scalars(
            select(OutboxAttempt).where(OutboxAttempt.request_id.in_(request_ids)).order_by(OutboxAttempt.id)
        )
        for attempt in rows:
            found[attempt.request_id].append(attempt)
    return found


async def note_outcome(session: AsyncSession, webhook_id: int, *, ok: bool, now: datetime) -> Webhook | None:
    """Keep when the webhook started failing (a success clears it); the webhook as it is now."""
    if ok:
        await session.execute(update(Webhook).where(Webhook.id == webhook_id).values(failing_since=None))
    else:
        await session.execute(
            update(Webhook).where(Webhook.id == webhook_id, Webhook.failing_since.is_(None)).values(failing_since=now)
        )
    return await get_webhook(session, webhook_id)
