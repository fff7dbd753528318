"""The journal of inbound requests: every authenticated PBX request, kept before it is applied, once."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, literal_column, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from .calls import LockedCall, _locked, lock_call
from .postgres import PostgresSession
from .statements import built_once, columns_of, execute_hot, round_trips_cost, unnest
from .tables import CallRow, InboundRequest, utcnow

JOURNAL = InboundRequest.__table__


def _journal(insert):
    return (
        insert(JOURNAL).on_conflict_do_nothing(index_elements=["integration_id", "dedupe_key"]).returning(JOURNAL.c.id)
    )



@dataclass(frozen=True)
class JournalEntry:
    id: int
    status: str | None  # None: new; otherwise the status the same request got before
    locked: LockedCall | None = None  # a new request's call, when `journal` was asked to lock it


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
    """Keep an inbound request; a repeat is counted on the first one and its earlier status returned. With `lock`
    (a request to apply, journaled as applied), a new request's call (`call_key`) is locked too, as `lock_call`
    does; on PostgreSQL in the same statement (`journal_and_lock_many` of one: a round trip less)."""
    row = dict(integration_id=integration_id, dedupe_key=dedupe_key, command=command, call_key=call_key,
               params=params, reply=reply, status=status, error=error, received_at=utcnow(), repeats=0)  # fmt: skip
    if lock and round_trips_cost(session):
        if new := await journal_and_lock_many(session, [row]):
            entry_id, locked = new[dedupe_key]
            return JournalEntry(entry_id, None, locked)
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


async def journal_and_lock_many(
    session: PostgresSession, requests: list[dict[str, Any]]
) -> dict[str, tuple[int, LockedCall]]:
    """PostgreSQL: many new requests journaled as applied, and their calls locked (made if new), in one statement
    (`JOURNAL_AND_LOCK_MANY`); each request's journal id and call, by its dedupe key. A request journaled before
    (a repeat) is left out, neither counted nor locked: it goes the way of one request (`journal`). Their calls
    must differ."""
    rows = await session.driver.fetch(JOURNAL_AND_LOCK_MANY, *columns_of(requests, _MANY_COLUMNS), utcnow())
    return {key: (entry_id, _locked(*call)) for key, entry_id, *call in rows}


_MANY_COLUMNS = {"integration_id": "int", "dedupe_key": "text", "command": "text", "call_key": "text",
                 "received_at": "timestamptz", "params": "json"}  # fmt: skip
_NOW = len(_MANY_COLUMNS) + 1
# The requests are journaled, and their calls locked or made, in key order: two processes' batches holding the same
# calls take their locks in the same order, and neither waits for the other in a cycle.
JOURNAL_AND_LOCK_MANY = f"""
WITH entry AS (
  INSERT INTO inbound_requests (integration_id, received_at, dedupe_key, command, call_key, params, reply, status,
                                error, repeats)
  SELECT integration_id, received_at, dedupe_key, command, call_key, params::json, NULL, 'applied', NULL, 0
  FROM {unnest(_MANY_COLUMNS, 1)}
  ORDER BY integration_id, dedupe_key
  ON CONFLICT (integration_id, dedupe_key) DO NOTHING
  RETURNING id, integration_id, dedupe_key, call_key
), found AS (
  SELECT calls.id, calls.facts, calls.deal_id, calls.problem, calls.integration_id, calls.pbx_call_id FROM calls
  WHERE (calls.integration_id, calls.pbx_call_id) IN (SELECT integration_id, call_key FROM entry)
  ORDER BY calls.integration_id, calls.pbx_call_id FOR NO KEY UPDATE OF calls
), made AS (
  INSERT INTO calls (integration_id, pbx_call_id, state, facts, tags, fields, recording_expected, sequence,
                     updated_at)
  SELECT entry.integration_id, entry.call_key, 'ringing', '{{}}', '[]', '{{}}', false, 0,  -- as _NEW_CALL
    ${_NOW}::timestamptz
  FROM entry WHERE NOT EXISTS (SELECT FROM found
                               WHERE found.integration_id = entry.integration_id AND found.pbx_call_id = entry.call_key)
  ORDER BY entry.integration_id, entry.call_key
  ON CONFLICT (integration_id, pbx_call_id) DO UPDATE SET pbx_call_id = calls.pbx_call_id
  RETURNING calls.id, calls.facts, calls.deal_id, calls.problem, calls.integration_id, calls.pbx_call_id
)
SELECT entry.dedupe_key, entry.id, call.id, call.facts, call.deal_id, call.problem
FROM entry JOIN (SELECT * FROM found UNION ALL SELECT * FROM made) AS call
  ON call.integration_id = entry.integration_id AND call.pbx_call_id = entry.call_key
"""


async def journal_many(session: AsyncSession, entries: list[dict[str, Any]]) -> None:
    """Keep many requests in one statement; a repeat only raises the first one's count. They are written in the
    order of their keys, so their ids are too (give each its `received_at` to keep the order they came in): two
    processes' batches holding the same repeated lookups lock them in the same order, and neither waits for the
    other in a cycle (PostgreSQL would break the deadlock after a second, failing one)."""
    now = utcnow()
    rows = sorted(entries, key=lambda e: (e["integration_id"], e["dedupe_key"]))
    await execute_hot(session, built_once(session, _journal_repeats),
                      [{"received_at": now, "repeats": 0, "error": None, "call_key": None, "reply": None} | e
                       for e in rows])  # fmt: skip


def _journal_repeats(insert):
    statement = insert(JOURNAL)
    return statement.on_conflict_do_update(index_elements=["integration_id", "dedupe_key"],
                                           set_={"repeats": JOURNAL.c.repeats + literal_column("1")})  # fmt: skip


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
