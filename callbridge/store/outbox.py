"""The outbox: requests to PBXs kept before they are made, claimed by one worker at a time."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from .statements import execute_hot
from .tables import Employee, OutboxAttempt, OutboxRequest, Webhook, utcnow


async def add(session: AsyncSession, **values) -> OutboxRequest:
    request = OutboxRequest(**values)
    session.add(request)
    await session.flush()
    return request


_ADD = insert(OutboxRequest.__table__)
_ATTEMPT = insert(OutboxAttempt.__table__)
_FINISH = update(OutboxRequest.__table__).where(OutboxRequest.__table__.c.id == bindparam("request_id"))
_NEW = {"integration_id": None, "webhook_id": None, "subject": None, "employee_id": None, "status": "pending",
        "attempts": 0, "expires_at": None, "result": None, "error": None, "response_code": None}  # fmt: skip


async def add_many(session: AsyncSession, action: str, rows: list[dict]) -> None:
    """Requests due now, in one statement (webhook deliveries, queued on every call event); no ids come back."""
    now = utcnow()
    values = [_NEW | {"action": action, "next_attempt_at": now, "created_at": now, "updated_at": now} | row
              for row in rows]  # fmt: skip
    await execute_hot(session, _ADD, values)


async def recent(session: AsyncSession, action: str, subject: str, since: datetime) -> OutboxRequest | None:
    """The same request made since then and not failed; a double click joins it (locks the employee asking)."""
    request = (
        await session.scalars(
            select(OutboxRequest)
            .where(
                OutboxRequest.action == action,
                OutboxRequest.subject == subject,
                OutboxRequest.created_at >= since,
                OutboxRequest.status != "failed",
            )
            .order_by(OutboxRequest.id.desc())
        )
    ).first()
    return request


async def lock_employee(session: AsyncSession, employee_id: int) -> None:
    """Serialise one employee's clicks, so two at once see each other (a no-op lock on SQLite's one writer)."""
    await session.execute(select(Employee.id).where(Employee.id == employee_id).with_for_update())


def _pending(now: datetime):
    return select(OutboxRequest).where(OutboxRequest.status == "pending", OutboxRequest.next_attempt_at <= now)


async def receivers(session: AsyncSession, paused_webhooks: list[int]) -> list[int | None]:
    """Whose due requests a drain looks at: the PBXs' (None), then each webhook's but the paused ones."""
    return [None, *(i for i in await session.scalars(select(Webhook.id)) if i not in paused_webhooks)]


def _due(now: datetime, receivers: list[int | None]) -> list:
    """A query of due requests per receiver, oldest first: each reads only the index range of its own receiver, so
    a paused receiver's queue, however long, is not read."""
    due = _pending(now)
    return [due.where(OutboxRequest.webhook_id.is_(None) if receiver is None else OutboxRequest.webhook_id == receiver)
            .order_by(OutboxRequest.next_attempt_at) for receiver in receivers]  # fmt: skip


async def any_due(session: AsyncSession, now: datetime, receivers: list[int | None]) -> bool:
    """Whether a claim would find anything, asked in a read: on SQLite a claim takes the one write lock."""
    for query in _due(now, receivers):
        if await session.scalar(query.with_only_columns(OutboxRequest.id).limit(1)) is not None:
            return True
    return False


async def claim(
    session: AsyncSession, now: datetime, lease: timedelta, *, receivers: list[int | None], limit: int = 10,
    request_id: int | None = None,
) -> list[OutboxRequest]:
    """Due requests (up to `limit` of each of the `receivers`', or the one given), leased to the caller: SKIP LOCKED
    on PostgreSQL, so workers never wait for each other or take the same row; SQLite has one writer and needs no row
    locks."""
    queries = [_pending(now).where(OutboxRequest.id == request_id)] if request_id is not None else _due(now, receivers)
    claimed = [request for query in queries
               for request in await session.scalars(query.limit(limit).with_for_update(skip_locked=True))]  # fmt: skip
    for request in claimed:
        request.next_attempt_at = now + lease
    return claimed


async def finish(session: AsyncSession, request: OutboxRequest, outcome: str, detail: str | None, *, status: str,
                 result: dict | None = None, response_code: int | None = None,
                 next_attempt_at: datetime | None = None) -> None:  # fmt: skip
    """Record an attempt and the request's new state (two statements built once: deliveries run by the hundred)."""
    now = utcnow()
    attempt = {"request_id": request.id, "number": request.attempts + 1, "at": now, "outcome": outcome,
               "detail": detail, "response_code": response_code}  # fmt: skip
    await execute_hot(session, _ATTEMPT, attempt)
    await execute_hot(session, _FINISH, {
        "request_id": request.id, "attempts": request.attempts + 1, "updated_at": now, "status": status,
        "error": detail, "result": result if result is not None else request.result, "response_code": response_code,
        "next_attempt_at": next_attempt_at or request.next_attempt_at})  # fmt: skip


async def postpone(session: AsyncSession, request_ids: list[int], at: datetime) -> None:
    """Claimed requests put back, due at `at`, without an attempt (their receiver is known to be down)."""
    await session.execute(update(OutboxRequest).where(OutboxRequest.id.in_(request_ids)).values(next_attempt_at=at))


async def get(session: AsyncSession, request_id: int) -> OutboxRequest | None:
    return await session.get(OutboxRequest, request_id, populate_existing=True)


async def attempts_of(session: AsyncSession, request_id: int) -> list[OutboxAttempt]:
    rows = await session.scalars(
        select(OutboxAttempt).where(OutboxAttempt.request_id == request_id).order_by(OutboxAttempt.id)
    )
    return list(rows)


async def listing(
    session: AsyncSession, *, status: str | None = None, integration_id: int | None = None, limit: int = 50
) -> list[OutboxRequest]:
    """The newest requests, for people to see what was asked of the PBXs and how it went."""
    query = select(OutboxRequest).order_by(OutboxRequest.id.desc()).limit(limit)
    if status:
        query = query.where(OutboxRequest.status == status)
    if integration_id:
        query = query.where(OutboxRequest.integration_id == integration_id)
    return list(await session.scalars(query))


async def requeue(session: AsyncSession, request_id: int, now: datetime, expires_at: datetime | None) -> bool:
    """A failed request gets a fresh set of attempts (a person asked); False unless it had failed."""
    result = await session.execute(
        update(OutboxRequest)
        .where(OutboxRequest.id == request_id, OutboxRequest.status == "failed")
        .values(status="pending", attempts=0, next_attempt_at=now, expires_at=expires_at, error=None, updated_at=now)
    )
    return result.rowcount == 1


async def cancel(session: AsyncSession, integration_id: int, action: str, reason: str) -> None:
    """Give up pending requests of this kind (the integration was switched off meanwhile)."""
    await session.execute(
        update(OutboxRequest)
        .where(
            OutboxRequest.integration_id == integration_id,
            OutboxRequest.action == action,
            OutboxRequest.status == "pending",
        )
        .values(status="failed", error=reason, updated_at=utcnow())
    )
