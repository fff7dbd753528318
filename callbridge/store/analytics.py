"""Figures for the analytics page: a period's calls by day and by hour (the company's days and hours), per
employee, the calls still owed a call back, and the PBX's own analytics fields (Planfix `data_*`) as a breakdown."""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import Row, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from .calls import OWED
from .tables import CallRow, LegRow


@dataclass
class Person:
    calls: int = 0
    missed: int = 0
    waited: int = 0
    talked: int = 0
    answered: int = 0

    def count(self, missed: int, wait: int | None, talk: int | None, took: bool) -> None:
        """One more call that rang them: missed, answered by them (`took`), or answered by someone else."""
        self.calls += 1
        self.missed += missed
        self.waited += wait or 0
        if not missed and took:
            self.answered += 1
            self.talked += talk or 0

    @property
    def missed_rate(self) -> float:
        return self.missed / self.calls if self.calls else 0.0

    @property
    def avg_wait(self) -> float:
        return self.waited / self.calls if self.calls else 0.0

    @property
    def avg_talk(self) -> float:
        return self.talked / self.answered if self.answered else 0.0


@dataclass
class Figures:
    per_day: dict[date, list[int]] = field(default_factory=dict)  # every day of the period -> [answered, missed]
    per_hour: list[list[int]] = field(default_factory=lambda: [[0, 0] for _ in range(24)])
    per_employee: dict[int | None, Person] = field(default_factory=dict)
    total: Person = field(default_factory=Person)
    owed: int = 0  # missed calls nobody called back
    breakdown: dict[str, dict[str, list[int]]] = field(default_factory=dict)  # field -> value -> [calls, answered]


async def figures(session: AsyncSession, since: datetime, until: datetime, zone: ZoneInfo) -> Figures:
    """The figures of the calls that started in [since, until) and are over. A call counts once for the company,
    and once for each employee it rang or who took it: answered by whoever talked, missed by everyone it rang when
    nobody did (a group call missed by Дарья and Андрей is missed by both)."""
    in_period = (CallRow.started_at >= since, CallRow.started_at < until)
    rows = await session.execute(
        select(CallRow.id, CallRow.started_at, CallRow.result, CallRow.wait_seconds, CallRow.talk_seconds,
               CallRow.employee_id, CallRow.fields)
        .where(*in_period, CallRow.state == "ended")
    )  # fmt: skip
    rang = await session.execute(
        select(LegRow.call_id, LegRow.employee_id)
        .join(CallRow, CallRow.id == LegRow.call_id)
        .where(*in_period, CallRow.state == "ended", LegRow.employee_id.is_not(None))
    )
    # counted on a thread of its own: a year of a busy line's calls is a second of Python the loop need not wait for
    out = await asyncio.to_thread(_count, rows.all(), rang.all(), since, until, zone)
    owed = select(func.count()).select_from(CallRow).where(*in_period, OWED)
    out.owed = int(await session.scalar(owed) or 0)
    return out


def _count(rows: Sequence[Row], rang: Sequence[Row], since: datetime, until: datetime, zone: ZoneInfo) -> Figures:
    out = Figures()
    whom: dict[int, set[int]] = defaultdict(set)  # call id -> the employees its phones rang
    for call_id, employee_id in rang:
        whom[call_id].add(employee_id)
    first, last = since.astimezone(zone).date(), (until - timedelta(microseconds=1)).astimezone(zone).date()
    out.per_day = {first + timedelta(days=n): [0, 0] for n in range((last - first).days + 1)}
    people: dict[int | None, Person] = defaultdict(Person)
    values: dict[str, dict[str, Counter]] = defaultdict(lambda: defaultdict(Counter))
    for call_id, started, result, wait, talk, employee, fields in rows:
        missed = int(result != "answered")
        local = started.astimezone(zone)
        out.per_day.setdefault(local.date(), [0, 0])[missed] += 1
        out.per_hour[local.hour][missed] += 1
        out.total.count(missed, wait, talk, took=True)
        involved = whom.get(call_id, set()) | ({employee} if employee is not None else set())
        for someone in involved or {None}:
            people[someone].count(missed, wait, talk, took=someone == employee)
        for name, value in (fields or {}).items():
            if isinstance(value, str | int | float) and not name.startswith("pbx_"):
                values[name][str(value)]["calls"] += 1
                values[name][str(value)]["answered"] += 1 - missed
    out.per_employee = dict(people)
    out.breakdown = {name: {v: [c["calls"], c["answered"]] for v, c in sorted(by.items(), key=lambda i: -i[1]["calls"])}
                     for name, by in sorted(values.items()) if len(by) <= 50}  # fmt: skip
    return out
