"""Calls and their legs."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, and_, bindparam, cast, exists, func, literal_column, or_, select, union_all, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from ..domain.calls import Call, CallState, LegState
from ..domain.ids import own_id
from . import directory
from .postgres import PostgresSession
from .statements import built_once, columns_of, execute_hot, round_trips_cost, unnest
from .tables import CallRow, LegRow, utcnow

# The statements run on every PBX event address the tables (SQLAlchemy Core), not the mapped classes: the ORM's
# bulk paths cost more than the statement itself.
CALLS, LEGS = CallRow.__table__, LegRow.__table__
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
_FIND_LOCKED = select(*_LOCKED).where(
    CALLS.c.integration_id == bindparam("integration_id"), CALLS.c.pbx_call_id == bindparam("call_key")
)


def _lock_call(insert):
    return _locking(insert(CALLS)).returning(*_LOCKED)


@functools.cache
def _lock_call_postgres():
    """PostgreSQL: the call locked if it exists (`found`), else inserted (`made`), in one statement.

    A call that exists is locked with a select, which writes nothing; the upsert of `_locking` "updates" the row to
    itself, which writes a version of the row, and the event's own update of it would then check every foreign key
    again (PostgreSQL checks them on a row its own transaction wrote). A call not found is inserted with that upsert,
    which also settles a race with another transaction inserting it."""
    found = _FIND_LOCKED.with_for_update(of=CALLS, key_share=True).cte("found")  # FOR NO KEY UPDATE: as updates lock
    typed = {"call_key": CALLS.c.pbx_call_id.type} | {name: CALLS.c[name].type for name in _NEW_CALL}
    new = [bindparam("integration_id")] + [cast(bindparam(name, type_=t), t) for name, t in typed.items()]
    unseen = select(*new, bindparam("updated_at")).where(~exists(found.select()))
    columns = ["integration_id", "pbx_call_id", *_NEW_CALL, "updated_at"]
    made = _locking(pg_insert(CALLS).from_select(columns, unseen)).returning(*_LOCKED).cte("made")
    return union_all(select(*found.c), select(*made.c))


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

    On PostgreSQL one statement, which takes the row lock, so two workers racing on one call's events take turns
    instead of creating it twice (`_lock_call_postgres`). SQLite's writer holds the whole database already: the call is
    read, and inserted if it is not there (the upsert that did both wrote the row again, and its index entry)."""
    new = {"integration_id": integration_id, "pbx_call_id": key, "call_key": key, "updated_at": utcnow()} | _NEW_CALL
    if round_trips_cost(session):
        [row] = await execute_hot(session, _lock_call_postgres(), new)
        return _locked(*row)
    found = await execute_hot(session, _FIND_LOCKED, {"integration_id": integration_id, "call_key": key})
    [row] = found or await execute_hot(session, built_once(session, _lock_call), new)
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
    if round_trips_cost(session):
        [view] = await save_calls(session, [(locked, call)])  # the legs with the call: a round trip less
        return view
    row_id = locked.id
    legs = {"row_id": row_id}
    for i, leg in enumerate(_legs(call)):
        legs |= {f"{name}{i}": value for name, value in leg.items()}
    shown = _shown(call)
    update_call = shown | _kept(call) | {"row_id": row_id, "number": call.phone, "updated_at": utcnow()}
    named = await execute_hot(session, built_once(session, _put_legs(len(call.legs))), legs) if call.legs else []
    [(client_id, employee_id)] = await execute_hot(session, UPDATE_CALL, update_call)
    return _view(locked, shown, client_id, employee_id, named)


async def save_calls(session: PostgresSession, calls: list[tuple[LockedCall, Call]]) -> list[CallView]:
    """PostgreSQL: `save_call` of many calls in one statement (`SAVE_CALLS`), in the order given."""
    rows = [_shown(call) | _kept(call) | {"row_id": locked.id} for locked, call in calls]
    legs = [{"call_id": locked.id} | leg for locked, call in calls for leg in _legs(call)]
    saved = await session.driver.fetch(SAVE_CALLS, *columns_of(rows, SAVE_CALLS_COLUMNS),
                                       *columns_of(legs, SAVE_LEGS_COLUMNS), utcnow())  # fmt: skip
    found = {row_id: (client_id, employee_id, (named or {}).items()) for row_id, client_id, employee_id, named in saved}
    return [_view(locked, shown, *found[locked.id]) for (locked, _), shown in zip(calls, rows, strict=True)]


async def take_number_owner(session: AsyncSession, call_id: int, phone: str) -> int | None:
    """The call's client set again to whoever owns its number now, as saving it does: for a call saved in a batch
    before the CRM rules of another call from the same number made a client for it."""
    owner = update(CALLS).where(CALLS.c.id == call_id).values(client_id=directory.client_of_number(phone))
    return await session.scalar(owner.returning(CALLS.c.client_id))


def _legs(call: Call) -> list[dict]:
    """The columns of each of the call's legs; `key` and `own` name its employee (`employee_named`)."""
    legs = []
    for leg in call.legs:
        state = call.leg_state(leg)
        ended = leg.closed_at or (call.ended_at if state is not LegState.RINGING else None)
        legs.append({"key": leg.employee, "own": own_id(leg.employee), "state": state.value, "rang_at": leg.rang_at,
                     "answered_at": leg.answered_at, "ended_at": ended})  # fmt: skip
    return legs


_SHOWN = ("direction", "phone", "virtual_number", "state", "result", "started_at", "ended_at", "talk_seconds",
          "recording_url")


def _shown(call: Call) -> dict:
    """The call's columns the CRM rules and the live cards read (`CallView`)."""
    return dict(
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


def _kept(call: Call) -> dict:
    """The rest of the call's columns: its owner (whose key names its employee) and its facts."""
    owner = call.answered_by or call.last_rung or (call.legs[0].employee if call.legs else None)
    return dict(
        owner=owner,
        owner_own=own_id(owner) if owner else None,
        answered_at=call.answered_at,
        wait_seconds=call.wait_seconds,
        recording_expected=call.recording_expected,
        tags=list(call.tags),
        fields=call.fields,
        facts=call.model_dump(mode="json"),
    )


def _view(locked: LockedCall, shown: dict, client_id: int | None, employee_id: int | None, named) -> CallView:
    """The call as written: `shown` (or a row with more columns) and what the statement returned."""
    return CallView(id=locked.id, client_id=client_id, employee_id=employee_id, deal_id=locked.deal_id,
                    problem=locked.problem, leg_employees={key: e for key, e in named if e is not None},
                    **{name: shown[name] for name in _SHOWN})  # fmt: skip


def _given(expression) -> str:
    """A Core expression of the `given` rows' columns (`literal_column("given.<name>")`) as PostgreSQL SQL."""
    return str(expression.compile(dialect=postgresql.dialect()))


def _employee_named(key: str, own: str) -> str:
    return _given(directory.employee_named(literal_column(key), literal_column(own)))


SAVE_CALLS_COLUMNS = {"row_id": "int", "direction": "text", "phone": "text", "virtual_number": "text", "state": "text",
                      "result": "text", "owner": "text", "owner_own": "int", "started_at": "timestamptz",
                      "answered_at": "timestamptz", "ended_at": "timestamptz", "wait_seconds": "int",
                      "talk_seconds": "int", "recording_url": "text", "recording_expected": "bool", "tags": "json",
                      "fields": "json", "facts": "json"}  # fmt: skip
SAVE_LEGS_COLUMNS = {"call_id": "int", "key": "text", "own": "int", "state": "text", "rang_at": "timestamptz",
                     "answered_at": "timestamptz", "ended_at": "timestamptz"}  # fmt: skip
_LEGS_AT = len(SAVE_CALLS_COLUMNS) + 1
# The calls' legs upserted and the calls updated, as `save_call` does on SQLite: each returns its client, its
# employee and its legs' employees by key (JSON). The legs are written in key order, so two batches never wait
# for each other's legs in a cycle.
SAVE_CALLS = f"""
WITH legs AS (
  INSERT INTO call_legs (call_id, employee_key, employee_id, state, rang_at, answered_at, ended_at)
  SELECT given.call_id, given.key, {_employee_named("given.key", "given.own")}, given.state, given.rang_at,
    given.answered_at, given.ended_at
  FROM {unnest(SAVE_LEGS_COLUMNS, _LEGS_AT)} ORDER BY given.call_id, given.key
  ON CONFLICT (call_id, employee_key) DO UPDATE SET employee_id = excluded.employee_id, state = excluded.state,
    rang_at = excluded.rang_at, answered_at = excluded.answered_at, ended_at = excluded.ended_at
  RETURNING call_id, employee_key, employee_id
)
UPDATE calls SET direction = given.direction, phone = given.phone, virtual_number = given.virtual_number,
  state = given.state, result = given.result, employee_id = {_employee_named("given.owner", "given.owner_own")},
  client_id = {_given(directory.client_of_number(literal_column("given.phone")))}, started_at = given.started_at,
  answered_at = given.answered_at, ended_at = given.ended_at, wait_seconds = given.wait_seconds,
  talk_seconds = given.talk_seconds, recording_url = given.recording_url,
  recording_expected = given.recording_expected, sequence = calls.sequence + 1, tags = given.tags::json,
  fields = given.fields::json, facts = given.facts::json, updated_at = ${_LEGS_AT + len(SAVE_LEGS_COLUMNS)}::timestamptz
FROM {unnest(SAVE_CALLS_COLUMNS, 1)}
WHERE calls.id = given.row_id
RETURNING calls.id, calls.client_id, calls.employee_id,
  (SELECT json_object_agg(legs.employee_key, legs.employee_id) FROM legs WHERE legs.call_id = calls.id)
"""


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
    number_parts: tuple[str, ...] = ()  # any of these digit runs within the number (domain.phones.number_parts)
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
        if self.number_parts:
            query = query.where(or_(*[CallRow.phone.contains(part, autoescape=True) for part in self.number_parts]))
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


async def cards_of(session: AsyncSession, employee_id: int, ended_since: datetime) -> list[int]:
    """The calls whose card is this employee's now: ringing their phone, taken by them, or taken by them and over
    since `ended_since` (its comment may still be being written); newest first. (The open calls index finds them.)"""
    ringing = (
        select(CallRow.id)
        .join(LegRow, LegRow.call_id == CallRow.id)
        .where(CallRow.state == "ringing", LegRow.employee_id == employee_id, LegRow.state == "ringing")
    )
    taken = select(CallRow.id).where(
        CallRow.employee_id == employee_id,
        or_(CallRow.state == "talking", and_(CallRow.state == "ended", CallRow.updated_at >= ended_since)),
        CallRow.answered_at.is_not(None),
    )
    rows = await session.execute(union_all(ringing, taken))
    return sorted({row[0] for row in rows}, reverse=True)[:5]


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
