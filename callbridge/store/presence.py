"""Who is on the line now: each active employee free, ringing, talking (on which call, since when) or away."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from .tables import CallRow, Employee, LegRow


@dataclass(frozen=True)
class Presence:
    employee_id: int
    state: str  # free, ringing, talking, away
    call_id: int | None = None
    since: datetime | None = None


async def presence(session: AsyncSession) -> list[Presence]:
    """Every active employee's state; talking wins over ringing (a second call may ring while one talks), and away
    over both (as the employee said: no card, not named as anyone's manager to a PBX)."""
    people = list(await session.scalars(select(Employee).where(Employee.active).order_by(Employee.name)))
    talking = await session.execute(
        select(CallRow.employee_id, CallRow.id, CallRow.answered_at).where(
            CallRow.state == "talking", CallRow.employee_id.is_not(None)
        )
    )
    ringing = await session.execute(
        select(LegRow.employee_id, CallRow.id, LegRow.rang_at)
        .join(CallRow, CallRow.id == LegRow.call_id)
        .where(CallRow.state == "ringing", LegRow.state == "ringing", LegRow.employee_id.is_not(None))
    )
    now = {employee: Presence(employee, "ringing", call, at) for employee, call, at in ringing}
    now |= {employee: Presence(employee, "talking", call, at) for employee, call, at in talking}
    return [
        Presence(person.id, "away") if person.away else now.get(person.id, Presence(person.id, "free"))
        for person in people
    ]
