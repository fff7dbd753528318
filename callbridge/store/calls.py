"""Calls, their legs, and the journal of inbound requests."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, bindparam, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ..domain.calls import Call, CallState, LegState
from . import directory
from .db import execute_hot, insert_for, prepared
from .tables import CallRow, InboundRequest, LegRow, utcnow

# The statements run on every PBX event address the tables (SQLAlchemy Core), not the mapped classes: the ORM's
# bulk paths cost more than the statement itself.
CALLS, LEGS, JOURNAL = CallRow.__table__, LegRow.__table__, InboundRequest.__table__
UPDATE_CALL = update(CALLS).where(CALLS.c.id == bindparam("row_id"))
DELETE_LEGS = delete(LEGS).where(LEGS.c.call_id == bindparam("row_id"))
INSERT_LEGS = LEGS.insert()


def _lock_call(insert):
    return (
        insert(CALLS)
        .on_conflict_do_update(
            index_elements=["integration_id", "pbx_call_id"], set_={"pbx_call_id": CALLS.c.pbx_call_id}
        )
        .returning(CALLS.c.id, CALLS.c.facts, CALLS.c.deal_id, CALLS.c.problem)
    )


def _journal(insert):
    return (
        insert(JOURNAL).on_conflict_do_nothing(index_elements=["integration_id", "dedupe_key"]).returning(JOURNAL.c.id)
    )


# ---- calls --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LockedCall:
    """A call row locked until commit: its facts (None: a new call) and what the CRM rules linked to it."""

    id: int
    call: Call | None
    deal_id: int | None
    problem: str | None


@dataclass(frozen=True)
class CallView:
    """A call's columns as this transaction left them, for the CRM rules and the live cards: they run on every
    event, and keeping what was written costs nothing where reading it back costs a statement."""

    id: int
    direction: str | None
    phone: str | None
    virtual_number: str | None
    state: str
    result: str | None
    employee_id: int | None
    client_id: int | None
    deal_id: int | None
    problem: str | None
    started_at: datetime | None
    talk_seconds: int | None
    recording_url: str | None
    leg_employees: dict[str, int]  # employee ids by the PBX user keys of its legs


_WRITTEN = ("direction", "phone", "virtual_number", "state", "result", "employee_id", "client_id", "started_at",
            "talk_seconds", "recording_url")  # fmt: skip


async def lock_call(session: AsyncSession, integration_id: int, key: str) -> LockedCall:
    """The call, creating an empty row if needed, locked until commit.

    One statement: an insert that, when the call exists, "updates" it to itself and returns it. The update
    takes the row lock, so two workers racing on one call's events take turns instead of creating it twice.
    """
    new = {"integration_id": integration_id, "pbx_call_id": key, "state": CallState.RINGING.value, "facts": {},
           "tags": [], "fields": {}, "recording_expected": False, "updated_at": utcnow()}  # fmt: skip
    [(row_id, facts, deal_id, problem)] = await execute_hot(session, prepared(session, _lock_call), new)
    return LockedCall(row_id, Call.model_validate(facts) if facts else None, deal_id, problem)


async def find_call(session: AsyncSession, integration_id: int, key: str) -> int:
    """The row id of the integration's call with this PBX key (LookupError if there is none)."""
    row_id = await session.scalar(
        select(CallRow.id).where(CallRow.integration_id == integration_id, CallRow.pbx_call_id == key)
    )
    if row_id is None:
        raise LookupError(f"no call {key!r}")
    return row_id


async def save_call(session: AsyncSession, locked: LockedCall, call: Call) -> CallView:
    """Write the call's facts and its derived view (what queries and the API read)."""
    row_id = locked.id
    keys = {leg.employee for leg in call.legs}
    employees = await directory.employees_by_keys(session, keys)
    client_id = await directory.client_id_by_phone(session, call.phone) if call.phone else None
    owner = call.answered_by or call.last_rung or (call.legs[0].employee if call.legs else None)
    view = CallView(
        id=row_id,
        direction=call.direction.value if call.direction else None,
        phone=call.phone,
        virtual_number=call.virtual_number,
        state=call.state.value,
        result=call.result.value if call.result else None,
        employee_id=employees.get(owner) if owner else None,
        client_id=client_id,
        deal_id=locked.deal_id,
        problem=locked.problem,
        started_at=call.started_at,
        talk_seconds=call.talk_seconds,
        recording_url=call.recording_url,
        leg_employees=employees,
    )
    await execute_hot(
        session,
        UPDATE_CALL,
        {name: getattr(view, name) for name in _WRITTEN}
        | dict(
            row_id=row_id,
            answered_at=call.answered_at,
            ended_at=call.ended_at,
            wait_seconds=call.wait_seconds,
            recording_expected=call.recording_expected,
            tags=list(call.tags),
            fields=call.fields,
            facts=call.model_dump(mode="json"),
            updated_at=utcnow(),
        ),
    )
    await execute_hot(session, DELETE_LEGS, {"row_id": row_id})
    await execute_hot(
        session,
        INSERT_LEGS,
        [
            {
                "call_id": row_id,
                "employee_key": leg.employee,
                "employee_id": employees.get(leg.employee),
                "state": call.leg_state(leg).value,
                "rang_at": leg.rang_at,
                "answered_at": leg.answered_at,
                "ended_at": leg.closed_at or (call.ended_at if call.leg_state(leg) is not LegState.RINGING else None),
            }
            for leg in call.legs
        ],
    )
    return view


async def open_calls_idle_since(
    session: AsyncSession, cutoff: datetime, limit: int = 500
) -> list[tuple[int, int, str]]:
    """(row id, integration id, PBX call id) of calls not ended and not touched since cutoff."""
    rows = await session.execute(
        select(CallRow.id, CallRow.integration_id, CallRow.pbx_call_id)
        .where(CallRow.state != CallState.ENDED.value, CallRow.updated_at < cutoff)
        .order_by(CallRow.updated_at)
        .limit(limit)
    )
    return [tuple(r) for r in rows]


@dataclass(frozen=True)
class CallFilter:
    phone: str | None = None
    employee_id: int | None = None
    client_id: int | None = None
    result: str | None = None
    direction: str | None = None
    state: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def apply(self, query: Select) -> Select:
        equal = {
            CallRow.phone: self.phone,
            CallRow.employee_id: self.employee_id,
            CallRow.client_id: self.client_id,
            CallRow.result: self.result,
            CallRow.direction: self.direction,
            CallRow.state: self.state,
        }
        query = query.where(*[column == value for column, value in equal.items() if value is not None])
        if self.since is not None:
            query = query.where(CallRow.started_at >= self.since)
        if self.until is not None:
            query = query.where(CallRow.started_at < self.until)
        return query


async def list_calls(
    session: AsyncSession, where: CallFilter, *, limit: int = 50, offset: int = 0
) -> tuple[list[CallRow], int]:
    """Calls newest first, with the total that matched."""
    query = where.apply(select(CallRow))
    total = await session.scalar(select(func.count()).select_from(query.subquery()))
    rows = await session.scalars(
        query.order_by(CallRow.started_at.desc(), CallRow.id.desc()).limit(limit).offset(offset)
    )
    return list(rows.all()), int(total or 0)


async def get_call(session: AsyncSession, call_id: int) -> CallRow | None:
    return await session.get(CallRow, call_id)


async def legs_of(session: AsyncSession, call_ids: list[int]) -> dict[int, list[LegRow]]:
    result: dict[int, list[LegRow]] = {i: [] for i in call_ids}
    if call_ids:
        rows = await session.scalars(
            select(LegRow).where(LegRow.call_id.in_(call_ids)).order_by(LegRow.rang_at, LegRow.id)
        )
        for leg in rows:
            result[leg.call_id].append(leg)
    return result


# ---- journal ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class JournalEntry:
    id: int
    status: str | None  # None: new; otherwise the status the same request got before


async def journal(
    session: AsyncSession,
    *,
    integration_id: int,
    dedupe_key: str,
    command: str | None,
    call_key: str | None,
    params: dict[str, Any],
    status: str,
    error: str | None = None,
    reply: dict[str, Any] | None = None,
) -> JournalEntry:
    """Keep an inbound request; a repeat is counted on the first one and its earlier status returned."""
    inserted = await execute_hot(
        session,
        prepared(session, _journal),
        dict(
            integration_id=integration_id,
            dedupe_key=dedupe_key,
            command=command,
            call_key=call_key,
            params=params,
            reply=reply,
            status=status,
            error=error,
            received_at=utcnow(),
            repeats=0,
        ),
    )
    if inserted:
        return JournalEntry(inserted[0][0], None)
    entry_id, previous = (
        await session.execute(
            select(InboundRequest.id, InboundRequest.status).where(
                InboundRequest.integration_id == integration_id, InboundRequest.dedupe_key == dedupe_key
            )
        )
    ).one()
    await session.execute(
        update(InboundRequest).where(InboundRequest.id == entry_id).values(repeats=InboundRequest.repeats + 1)
    )
    return JournalEntry(entry_id, previous)


async def journal_many(session: AsyncSession, entries: list[dict[str, Any]]) -> None:
    """Keep many requests in one statement; a repeat only raises the first one's count."""
    if not entries:
        return
    statement = insert_for(session, InboundRequest)
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=["integration_id", "dedupe_key"], set_={"repeats": InboundRequest.repeats + 1}
        ),
        [{"received_at": utcnow(), "repeats": 0, "error": None, "call_key": None, "reply": None} | e for e in entries],
    )


async def set_journal_status(
    session: AsyncSession, entry_id: int, status: str, error: str | None = None, call_key: str | None = None
) -> None:
    values = {"status": status, "error": error} | ({"call_key": call_key} if call_key else {})
    await session.execute(update(InboundRequest).where(InboundRequest.id == entry_id).values(**values))


async def journal_entries(
    session: AsyncSession,
    *,
    integration_id: int | None = None,
    call_key: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[InboundRequest]:
    """Journaled requests that changed or tried to change calls (not lookups), oldest first."""
    query = select(InboundRequest).where(InboundRequest.status != "answered")
    if integration_id is not None:
        query = query.where(InboundRequest.integration_id == integration_id)
    if call_key is not None:
        query = query.where(InboundRequest.call_key == call_key)
    if since is not None:
        query = query.where(InboundRequest.received_at >= since)
    if until is not None:
        query = query.where(InboundRequest.received_at < until)
    return list(await session.scalars(query.order_by(InboundRequest.id)))


async def journal_of_call(session: AsyncSession, integration_id: int, call_key: str) -> list[InboundRequest]:
    rows = await session.scalars(
        select(InboundRequest)
        .where(InboundRequest.integration_id == integration_id, InboundRequest.call_key == call_key)
        .order_by(InboundRequest.received_at, InboundRequest.id)
    )
    return list(rows.all())


async def failed_requests(session: AsyncSession, calls: list[CallRow]) -> dict[int, list[str]]:
    """For each call, the errors of its PBX requests that failed to apply (and were not applied since)."""
    if not calls:
        return {}
    by_key = {(c.integration_id, c.pbx_call_id): c.id for c in calls}
    rows = await session.execute(
        select(InboundRequest.integration_id, InboundRequest.call_key, InboundRequest.error).where(
            InboundRequest.status == "failed",
            InboundRequest.call_key.in_({c.pbx_call_id for c in calls}),
        )
    )
    failed: dict[int, list[str]] = {}
    for integration_id, key, error in rows:
        if (integration_id, key) in by_key:
            failed.setdefault(by_key[(integration_id, key)], []).append(error or "")
    return failed


async def count_journal(session: AsyncSession, integration_id: int | None = None) -> int:
    query = select(func.count(InboundRequest.id))
    if integration_id is not None:
        query = query.where(InboundRequest.integration_id == integration_id)
    return int(await session.scalar(query) or 0)
