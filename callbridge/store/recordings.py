"""Recordings to download and the ones we keep."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from .statements import insert_for
from .tables import CallRow, Recording, utcnow


async def queue(session: AsyncSession, call_id: int, url: str, temporary: bool) -> None:
    """Download this link for the call; a new link replaces an older one and starts afresh."""
    fresh = {"url": url, "temporary": temporary, "status": "queued", "file": None, "attempts": 0,
             "next_attempt_at": utcnow(), "error": None, "updated_at": utcnow()}  # fmt: skip
    await session.execute(
        insert_for(session, Recording)
        .values(call_id=call_id, **fresh)
        .on_conflict_do_update(index_elements=["call_id"], set_=fresh, where=Recording.url != url)
    )


async def keep_upload(session: AsyncSession, call_id: int, *, file: str, content_type: str, size: int) -> None:
    """A recording the PBX uploaded itself: nothing to download, it is kept at once."""
    kept = {"url": "upload", "temporary": False, "status": "kept", "file": file, "content_type": content_type,
            "size": size, "attempts": 0, "next_attempt_at": utcnow(), "error": None,
            "updated_at": utcnow()}  # fmt: skip
    await session.execute(
        insert_for(session, Recording)
        .values(call_id=call_id, **kept)
        .on_conflict_do_update(index_elements=["call_id"], set_=kept)
    )


async def claim_due(session: AsyncSession, now: datetime, lease: timedelta, limit: int) -> list[Recording]:
    """Recordings due for a download attempt, temporary links first, leased so no other worker takes them."""
    due = list(
        await session.scalars(
            select(Recording)
            .where(Recording.status == "queued", Recording.next_attempt_at <= now)
            .order_by(Recording.temporary.desc(), Recording.next_attempt_at)
            .limit(limit)
        )
    )
    claimed = []
    for recording in due:
        result = await session.execute(
            update(Recording)
            .where(
                Recording.call_id == recording.call_id,
                Recording.status == "queued",
                Recording.next_attempt_at <= now,
            )
            .values(next_attempt_at=now + lease)
        )
        if result.rowcount == 1:
            claimed.append(recording)
    return claimed


async def mark(session: AsyncSession, call_id: int, url: str, **values) -> None:
    """Record an attempt's outcome, unless the call got a new link meanwhile."""
    await session.execute(
        update(Recording)
        .where(Recording.call_id == call_id, Recording.url == url)
        .values(updated_at=utcnow(), **values)
    )


async def of_calls(session: AsyncSession, call_ids: list[int]) -> dict[int, Recording]:
    if not call_ids:
        return {}
    rows = await session.scalars(select(Recording).where(Recording.call_id.in_(call_ids)))
    return {r.call_id: r for r in rows}


async def get(session: AsyncSession, call_id: int) -> Recording | None:
    return await session.get(Recording, call_id)


async def integration_of(session: AsyncSession, call_id: int) -> int | None:
    """The integration whose PBX sent the call (its admin-set addresses are trusted for its links)."""
    return await session.scalar(select(CallRow.integration_id).where(CallRow.id == call_id))
