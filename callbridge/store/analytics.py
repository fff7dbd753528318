"""Figures for the analytics page."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from .tables import CallRow


@dataclass
class Figures:
    per_day: dict[date, tuple[int, int]] = field(default_factory=dict)  # day -> (calls, missed)
    per_employee: dict[int | None, dict[str, float]] = field(default_factory=dict)
    calls: int = 0
    missed: int = 0
    avg_wait: float = 0.0
    avg_talk: float = 0.0


async def figures(session: AsyncSession, since: datetime) -> Figures:
    """Calls per day, missed-call rate, average wait and talk, overall and per employee, since then."""
    rows = await session.execute(
        select(CallRow.started_at, CallRow.result, CallRow.wait_seconds, CallRow.talk_seconds, CallRow.employee_id)
        .where(CallRow.started_at >= since, CallRow.state == "ended")
        .order_by(CallRow.started_at)
    )
    out = Figures()
    days: dict[date, list[int]] = defaultdict(lambda: [0, 0])
    people: dict[int | None, list[float]] = defaultdict(
        lambda: [0, 0, 0.0, 0.0, 0]
    )  # calls, missed, wait, talk, answered
    waits, talks = [], []
    for started, result, wait, talk, employee in rows:
        missed = result != "answered"
        days[started.date()][0] += 1
        days[started.date()][1] += missed
        person = people[employee]
        person[0] += 1
        person[1] += missed
        person[2] += wait or 0
        if not missed:
            person[3] += talk or 0
            person[4] += 1
            talks.append(talk or 0)
        waits.append(wait or 0)
    out.per_day = {d: (v[0], v[1]) for d, v in sorted(days.items())}
    out.calls, out.missed = len(waits), sum(v[1] for v in days.values())
    out.avg_wait = sum(waits) / len(waits) if waits else 0.0
    out.avg_talk = sum(talks) / len(talks) if talks else 0.0
    out.per_employee = {
        e: {"calls": p[0], "missed": p[1], "avg_wait": p[2] / p[0], "avg_talk": p[3] / p[4] if p[4] else 0.0}
        for e, p in people.items()
    }
    return out
