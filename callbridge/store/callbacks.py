"""Missed calls and who returned them: an incoming call nobody answered is returned by the first later call with
its number that went out or was answered; until then someone owes the caller a call."""

from __future__ import annotations

import statistics
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import exists, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from .tables import CallRow, Client, LegRow

MOST = 5_000  # missed calls looked at once: a personal list, or a period's figures
CHUNK = 500  # numbers asked about in one statement


@dataclass
class Missed:
    call: CallRow
    rang: tuple[int, ...]  # the employees whose phones it rang
    returned_by: int | None = None  # the employee of the call that returned it
    returned_at: datetime | None = None

    @property
    def returned(self) -> bool:
        return self.returned_at is not None

    @property
    def seconds_to_callback(self) -> int | None:
        ended = self.call.ended_at or self.call.started_at
        return max(0, int((self.returned_at - ended).total_seconds())) if self.returned_at and ended else None


async def missed_calls(
    session: AsyncSession, *, since: datetime, until: datetime | None = None, employee_id: int | None = None
) -> list[Missed]:
    """Incoming calls nobody answered that started in [since, until), newest first, each with who returned it and
    when; with `employee_id`, only the ones that rang them or came from their clients."""
    query = select(CallRow).where(
        CallRow.direction == "in",
        CallRow.ended_at.is_not(None),
        CallRow.result != "answered",
        CallRow.phone.is_not(None),
        CallRow.started_at >= since,
    )
    if until is not None:
        query = query.where(CallRow.started_at < until)
    if employee_id is not None:
        rang = exists().where(LegRow.call_id == CallRow.id, LegRow.employee_id == employee_id)
        theirs = exists().where(Client.id == CallRow.client_id, Client.responsible_id == employee_id)
        query = query.where(or_(rang, theirs))
    rows = list(await session.scalars(query.order_by(CallRow.started_at.desc(), CallRow.id.desc()).limit(MOST)))
    if not rows:
        return []
    rang_by = await _rang(session, [r.id for r in rows])
    returns = await _returns(session, {r.phone for r in rows}, min(r.started_at for r in rows))
    found = []
    for row in rows:
        later = returns.get(row.phone, [])
        at = bisect_right([when for when, _ in later], row.started_at)
        back = later[at] if at < len(later) else None
        found.append(Missed(row, rang_by.get(row.id, ()), back[1] if back else None, back[0] if back else None))
    return found


async def _rang(session: AsyncSession, call_ids: list[int]) -> dict[int, tuple[int, ...]]:
    rang: dict[int, list[int]] = defaultdict(list)
    for start in range(0, len(call_ids), CHUNK):
        query = select(LegRow.call_id, LegRow.employee_id).where(
            LegRow.call_id.in_(call_ids[start : start + CHUNK]), LegRow.employee_id.is_not(None)
        )
        for call_id, employee_id in await session.execute(query):
            rang[call_id].append(employee_id)
    return {call_id: tuple(sorted(set(ids))) for call_id, ids in rang.items()}


async def _returns(session: AsyncSession, phones: Iterable[str], since: datetime):
    """For each number, the calls that returned a call to it (out, or answered), oldest first: (when, employee)."""
    phones, returns = sorted(phones), defaultdict(list)
    for start in range(0, len(phones), CHUNK):
        query = (
            select(CallRow.phone, CallRow.started_at, CallRow.employee_id)
            .where(
                CallRow.phone.in_(phones[start : start + CHUNK]),
                CallRow.started_at > since,
                or_(CallRow.direction == "out", CallRow.result == "answered"),
            )
            .order_by(CallRow.started_at)
        )
        for phone, started_at, employee_id in await session.execute(query):
            returns[phone].append((started_at, employee_id))
    return returns


@dataclass
class Callbacks:
    """How missed calls were recovered in a period: how many, how many returned, within the SLA, how fast."""

    missed: int = 0
    returned: int = 0
    returned_within_sla: int = 0
    seconds: list[int] = field(default_factory=list)

    @property
    def median_seconds_to_callback(self) -> int | None:
        return int(statistics.median(self.seconds)) if self.seconds else None

    @property
    def never_returned(self) -> int:
        return self.missed - self.returned

    def count(self, missed: Missed, sla_seconds: int) -> None:
        """One more missed call, returned within `sla_seconds` or later or not at all."""
        self.missed += 1
        if missed.returned:
            self.returned += 1
            waited = missed.seconds_to_callback or 0
            self.seconds.append(waited)
            self.returned_within_sla += waited <= sla_seconds


@dataclass
class Recovery:
    company: Callbacks
    per_employee: dict[int | None, Callbacks]  # every employee a missed call rang (None: it rang nobody)
    per_line: dict[str, Callbacks]  # the company's number called ("" when the PBX did not say)
    sla_minutes: int = 30  # the SLA the calls were judged by (the default when integrations differ)


def recovered(missed: list[Missed], sla_seconds: Mapping[int, int], default_sla: int) -> Recovery:
    """The figures of these missed calls, each judged by its integration's SLA (seconds)."""
    found = Recovery(Callbacks(), defaultdict(Callbacks), defaultdict(Callbacks))
    for one in missed:
        sla = sla_seconds.get(one.call.integration_id, default_sla)
        found.company.count(one, sla)
        for employee in one.rang or (None,):
            found.per_employee[employee].count(one, sla)
        found.per_line[one.call.virtual_number or ""].count(one, sla)
    found.per_employee, found.per_line = dict(found.per_employee), dict(found.per_line)
    return found
