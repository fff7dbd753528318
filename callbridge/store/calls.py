"""Calls, their legs, and the journal of inbound requests."""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, bindparam, cast, func, literal_column, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from ..domain.calls import Call, CallState, LegState
from ..domain.ids import own_id
from . import directory
from .statements import built_once, execute_hot, insert_for, round_trips_cost
from .tables import CallRow, InboundRequest, LegRow, utcnow

# The statements run on every PBX event address the tables (SQLAlchemy Core), not the mapped classes: the ORM's
# bulk paths cost more than the statement itself.
CALLS, LEGS, JOURNAL = CallRow.__table__, LegRow.__table__, InboundRequest.__table__
# The call's client is whoever owns its number when it is written; its employee, the one its owner's key names.
UPDATE_CALL = (
    update(CALLS)
    .where(CALLS.c.id == bindparam("row_id"))
    .values(
        client_id=directory.CLIENT_OF_NUMBER,
        employee_id=directory.employee_named(bindparam("owner"), bindparam("owner_own")),
        sequence=CALLS.c.sequence + literal_column("1"),  # no bound parameter: `execute_hot` binds by name
    )
    .returning(CALLS.c.client_id, CALLS.c.employee_id)
)


def _locking(insert_call):
    """An insert of a call that, when the call exists, "updates" it to itself, which takes the row lock."""
    return insert_call.on_conflict_do_update(
        index_elements=["integration_id", "pbx_call_id"], set_={"pbx_call_id": CALLS.c.pbx_call_id}
    )


_LOCKED = (CALLS.c.id, CALLS.c.facts, CALLS.c.deal_id, CALLS.c.problem)  # what `_locked` makes a LockedCall of


def _lock_call(insert):
    return _locking(insert(CALLS)).returning(*_LOCKED)


_LEG_FIELDS = ("state", "rang_at", "answered_at", "ended_at")


@functools.cache
def _put_legs(count: int):
    """`count` legs upserted in one statement, each naming its employee as it is written; returns each leg's key
    and employee. (A call's legs only ever grow: the engine merges an event into the leg of its employee.)"""

    def build(insert):
        rows = [{"call_id": bindparam("row_id"), "employee_key": bindparam(f"key{i}"),
                 "employee_id": directory.employee_named(bindparam(f"key{i}"), bindparam(f"own{i}"))}
                | {name: bindparam(f"{name}{i}", type_=LEGS.c[name].type) for name in _LEG_FIELDS}
                for i in range(count)]  # fmt: skip
        statement = insert(LEGS).values(rows)
        return statement.on_conflict_do_update(
            index_elements=["call_id", "employee_key"],
            set_={name: statement.excluded[name] for name in ("employee_id", *_LEG_FIELDS)},
        ).returning(LEGS.c.employee_key, LEGS.c.employee_id)

    return build


@functools.cache
def _save_call(count: int):
    """PostgreSQL: the legs' upsert and the call's update in one statement (a round trip less, as in
    `_journal_and_lock`); the legs' employees come back as JSON."""
    legs = _put_legs(count)(pg_insert).cte("legs")
    named = select(func.json_object_agg(legs.c.employee_key, legs.c.employee_id)).scalar_subquery()
    return UPDATE_CALL.add_cte(legs).returning(named)


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
    ended_at: datetime | None
    talk_seconds: int | None
    recording_url: str | None
    leg_employees: dict[str, int]  # employee ids by the PBX user keys of its legs


async def lock_call(session: AsyncSession, integration_id: int, key: str) -> LockedCall:
    """The call, creating an empty row if needed, locked until commit.

    One statement: an insert that, when the call exists, "updates" it to itself and returns it. The update
    takes the row lock, so two workers racing on one call's events take turns instead of creating it twice.
    """
    new = {"integration_id": integration_id, "pbx_call_id": key, "updated_at": utcnow()} | _NEW_CALL
    [row] = await execute_hot(session, built_once(session, _lock_call), new)
    return _locked(*row)


_NEW_CALL = {"state": CallState.RINGING.value, "facts": {}, "tags": [], "fields": {}, "recording_expected": False,
             "sequence": 0}


def _locked(row_id: int, facts: dict, deal_id: int | None, problem: str | None) -> LockedCall:
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
    legs = {"row_id": row_id}
    for i, leg in enumerate(call.legs):
        state = call.leg_state(leg)
        ended = leg.closed_at or (call.ended_at if state is not LegState.RINGING else None)
        legs |= {f"key{i}": leg.employee, f"own{i}": own_id(leg.employee), f"state{i}": state.value,
                 f"rang_at{i}": leg.rang_at, f"answered_at{i}": leg.answered_at, f"ended_at{i}": ended}  # fmt: skip
    written = dict(
        direction=call.direction.value if call.direction else None,
        phone=call.phone,
        virtual_number=call.virtual_number,
        state=call.state.value,
        result=call.result.value if call.result else None,
        started_at=call.started_at,
        ended_at=call.ended_at,
        talk_seconds=call.talk_seconds,
        recording_url=call.recording_url,
    )
    owner = call.answered_by or call.last_rung or (call.legs[0].employee if call.legs else None)
    update_call = written | dict(
        row_id=row_id,
        number=call.phone,
        owner=owner,
        owner_own=own_id(owner) if owner else None,
        answered_at=call.answered_at,
        wait_seconds=call.wait_seconds,
        recording_expected=call.recording_expected,
        tags=list(call.tags),
        fields=call.fields,
        facts=call.model_dump(mode="json"),
        updated_at=utcnow(),
    )
    if call.legs and round_trips_cost(session):
        [(client_id, employee_id, named)] = await execute_hot(session, _save_call(len(call.legs)), update_call | legs)
        named = named.items()  # JSON, decoded by the codec SQLAlchemy sets on each asyncpg connection
    else:
        named = await execute_hot(session, built_once(session, _put_legs(len(call.legs))), legs) if call.legs else []
        [(client_id, employee_id)] = await execute_hot(session, UPDATE_CALL, update_call)
    return CallView(id=row_id, client_id=client_id, employee_id=employee_id, deal_id=locked.deal_id,
                    problem=locked.problem, leg_employees={key: e for key, e in named if e is not None},
                    **written)  # fmt: skip


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
    owed: bool = False  # only missed calls nobody called back

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
        if self.owed:
            query = query.where(OWED)
        return query


def _owed():
    """A missed incoming call whose number nobody called since, and whose later calls nobody answered: one a
    manager still owes a call."""
    later = aliased(CallRow)
    since = select(later.id).where(later.phone == CallRow.phone, later.started_at > CallRow.started_at,
                                   or_(later.direction == "out", later.result == "answered"))  # fmt: skip
    return and_(CallRow.direction == "in", CallRow.ended_at.is_not(None), CallRow.result != "answered",
                CallRow.phone.is_not(None), ~since.exists())  # fmt: skip


OWED = _owed()


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


async def not_called_back(session: AsyncSession, rows: list[CallRow]) -> set[int]:
    """The calls among `rows` a manager still owes a call (OWED)."""
    missed = [r.id for r in rows if r.direction == "in" and r.result != "answered"]
    return set(await session.scalars(select(CallRow.id).where(CallRow.id.in_(missed), OWED))) if missed else set()


async def set_comment(session: AsyncSession, call_id: int, comment: str | None) -> bool:
    result = await session.execute(update(CallRow).where(CallRow.id == call_id).values(comment=comment))
    return result.rowcount > 0


async def get_call(session: AsyncSession, call_id: int) -> CallRow | None:
    return await session.get(CallRow, call_id)


async def calls_by_id(session: AsyncSession, call_ids: list[int]) -> list[CallRow]:
    return list(await session.scalars(select(CallRow).where(CallRow.id.in_(call_ids)))) if call_ids else []


async def problem_of(session: AsyncSession, call_id: int) -> str | None:
    return await session.scalar(select(CallRow.problem).where(CallRow.id == call_id))


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
    locked: LockedCall | None = None  # a new request's call, when `journal` was asked to lock it


@functools.cache
def _journal_and_lock():
    """PostgreSQL: a request journaled and, if it is new, its call locked as `lock_call` does, in one statement (a
    round trip less on every event, and the transactions that share a commit run one after another)."""
    entry = _journal(pg_insert).values({c.name: bindparam(c.name, type_=c.type) for c in JOURNAL.c if c.name != "id"})
    entry = entry.cte("entry")
    typed = {"call_key": CALLS.c.pbx_call_id.type} | {name: CALLS.c[name].type for name in _NEW_CALL}
    new = [bindparam("integration_id")] + [cast(bindparam(name, type_=t), t) for name, t in typed.items()]
    new.append(bindparam("received_at"))
    columns = ["integration_id", "pbx_call_id", *_NEW_CALL, "updated_at"]
    insert_call = pg_insert(CALLS).from_select(columns, select(*new).select_from(entry))
    return _locking(insert_call).returning(select(entry.c.id).scalar_subquery(), *_LOCKED).add_cte(entry)


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
    lock: bool = False,
) -> JournalEntry:
    """Keep an inbound request; a repeat is counted on the first one and its earlier status returned. With `lock`,
    a new request's call (`call_key`) is locked too, as `lock_call` does."""
    row = dict(integration_id=integration_id, dedupe_key=dedupe_key, command=command, call_key=call_key,
               params=params, reply=reply, status=status, error=error, received_at=utcnow(), repeats=0)  # fmt: skip
    if lock and round_trips_cost(session):
        if locked := await execute_hot(session, _journal_and_lock(), row | _NEW_CALL):
            [(entry_id, *call)] = locked
            return JournalEntry(entry_id, None, _locked(*call))
    elif inserted := await execute_hot(session, built_once(session, _journal), row):
        return JournalEntry(inserted[0][0], None, await lock_call(session, integration_id, call_key) if lock else None)
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
    """For each call, what went wrong with its PBX requests: ones that failed to apply (and were not applied
    since), and lookups answered despite a failure (the lookup source's)."""
    if not calls:
        return {}
    by_key = {(c.integration_id, c.pbx_call_id): c.id for c in calls}
    rows = await session.execute(
        select(InboundRequest.integration_id, InboundRequest.call_key, InboundRequest.status, InboundRequest.error)
        .where(InboundRequest.call_key.in_({c.pbx_call_id for c in calls}))
        .where(or_(InboundRequest.status == "failed",
                   (InboundRequest.status == "answered") & InboundRequest.error.is_not(None)))
    )  # fmt: skip
    failed: dict[int, list[str]] = {}
    for integration_id, key, status, error in rows:
        if (integration_id, key) in by_key:
            failed.setdefault(by_key[(integration_id, key)], []).append(request_problem(status, error))
    return failed


def request_problem(status: str, error: str | None) -> str:
    """A PBX request's trouble as the call shows it."""
    return f"a PBX request was not applied: {error or ''}" if status == "failed" else f"caller lookup: {error}"


def request_problems(entries: list[InboundRequest]) -> list[str]:
    """The troubles of a call's journal entries: requests that failed, lookups answered despite a failure."""
    return [request_problem(e.status, e.error) for e in entries
            if e.status == "failed" or (e.status == "answered" and e.error)]  # fmt: skip


async def count_journal(session: AsyncSession, integration_id: int | None = None) -> int:
    query = select(func.count(InboundRequest.id))
    if integration_id is not None:
        query = query.where(InboundRequest.integration_id == integration_id)
    return int(await session.scalar(query) or 0)


def dedupe_key(params: dict[str, str]) -> str:
    """Two requests with the same parameters are the same request (PBXs repeat themselves)."""
    return hashlib.sha256(json.dumps(params, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
