"""PBX events: journal -> engine -> store -> live bus / automation / outbox; replay; back-fill; the sweeper."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from .. import automation, metrics, webhooks
from ..domain import engine
from ..domain.calls import Call, CallEvent, CallResult, CallState, EventKind
from ..domain.pbx import Events, PbxError, WireError
from ..services import Services
from ..store import StoreBusy, crm, directory, integrations
from ..store import calls as call_store
from ..store import journal as journal_store
from ..store import recordings as recording_store
from ..store.journal import dedupe_key

log = logging.getLogger("callbridge.flows")


@dataclass(frozen=True)
class Outcome:
    journal_id: int
    duplicate: bool = False
    failed: str | None = None
    call_ids: tuple[int, ...] = ()


async def ingest_one(services: Services, integration_id: int, params: dict[str, str], command: Events) -> Outcome:
    """Journal a PBX request and apply its events, in one transaction (`batches.ingest` puts most in a batch).

    A 2xx goes out only after this commits, so an acknowledged request is always journaled and
    applied. It shares its commit with the requests under way with it, and runs again alone if that fails
    (`Database.shared_or_alone`). If that fails too, the request is still journaled, as failed, for `replay`.
    """

    async def keep(session, status: str, error: str | None = None, lock: bool = False) -> journal_store.JournalEntry:
        return await journal_store.journal(
            session,
            integration_id=integration_id,
            dedupe_key=dedupe_key(params),
            command=command.command,
            call_key=command.call_key,
            params=params,
            status=status,
            error=error,
            lock=lock,
        )

    async def apply(session) -> tuple[journal_store.JournalEntry, list[dict[str, Any]], list[int]]:
        entry = await keep(session, "applied", lock=bool(command.call_key and command.events))
        if entry.status == "applied":
            return entry, [], []
        if entry.status is not None:  # it failed or was refused before: this time it goes through
            await journal_store.set_journal_status(session, entry.id, "applied", call_key=command.call_key)
        locked = {command.call_key: entry.locked} if entry.locked else {}
        return entry, *await _apply(services, session, integration_id, command.events, locked)

    try:
        entry, messages, call_ids = await services.db.shared_or_alone(apply)
    except StoreBusy:
        raise  # not written, not acknowledged: the PBX sends it again, and journaling it would wait as long
    except Exception as exc:
        log.exception("applying %s for integration %s failed", command.command, integration_id)
        metrics.FAILURES.labels("event").inc()
        metrics.REQUESTS.labels("failed").inc()
        reason = f"{exc.__class__.__name__}: {exc}"[:1000]
        async with services.db.transaction() as session:
            entry = await keep(session, "failed", reason)
            await journal_store.set_journal_status(session, entry.id, "failed", reason)  # it may have been there
        return Outcome(entry.id, failed=reason)
    if entry.status == "applied":
        metrics.REQUESTS.labels("duplicate").inc()
        return Outcome(entry.id, duplicate=True)
    metrics.REQUESTS.labels("applied").inc()
    metrics.EVENTS.inc(len(command.events))
    await committed(services, messages)
    return Outcome(entry.id, call_ids=tuple(call_ids))


async def committed(services: Services, messages: list[dict[str, Any]]) -> None:
    """What follows a call's committed change: its cards to the browsers, and the outbox looks for the webhook
    deliveries it may have queued, unless their receivers are down (looking before the commit would find none)."""
    for message in messages:
        services.bus.publish(message)
    if {w.id for w in await services.webhooks()} - set(services.paused_webhooks()):
        services.outbox_due.set()


async def reject(
    services: Services, integration_id: int, params: dict[str, str], reason: str, command: str | None = None
) -> None:
    """Journal an authenticated request we could not understand, so nothing a PBX sent is lost."""
    metrics.REQUESTS.labels("rejected").inc()
    async with services.db.transaction() as session:
        await journal_store.journal(
            session,
            integration_id=integration_id,
            dedupe_key=dedupe_key(params),
            command=(command or "")[:32] or None,  # an unknown command can be of any length
            call_key=None,
            params=params,
            status="rejected",
            error=reason[:1000],
        )


async def _apply(
    services: Services, session, integration_id: int, events: list[CallEvent], ready: dict[str, call_store.LockedCall]
) -> tuple[list[dict[str, Any]], list[int]]:
    """Fold the events into their calls; `ready` holds calls locked already, each as it was before its first event."""
    messages: list[dict[str, Any]] = []
    call_ids: list[int] = []
    for event in events:
        locked = ready.pop(event.call_key, None) or await call_store.lock_call(session, integration_id, event.call_key)
        messages += await _fold(services, session, integration_id, locked, event)
        call_ids.append(locked.id)
    return messages, call_ids


async def _fold(
    services: Services, session, integration_id: int, locked: call_store.LockedCall, event: CallEvent
) -> list[dict[str, Any]]:
    """Fold one event into a locked call and save it (`after_saving` does the rest); returns the live messages."""
    updated, effects = engine.apply(locked.call, event)
    if updated == locked.call:
        return []
    view = await call_store.save_call(session, locked, updated)
    return await after_saving(services, session, integration_id, locked, updated, effects, view)


async def after_saving(
    services: Services,
    session,
    integration_id: int,
    locked: call_store.LockedCall,
    updated: Call,
    effects: list[engine.Effect],
    view: call_store.CallView,
) -> list[dict[str, Any]]:
    """What follows a call's change once it is saved: CRM rules, webhooks, recordings; returns the live messages."""
    row_id = locked.id
    rules = await services.rules(integration_id)
    made: list[tuple[str, dict[str, int]]] | None = [] if await services.webhooks() else None
    view = await _reconcile(session, rules, view, made)
    if made is not None:
        made += [(event_type, {"call_id": row_id}) for event_type in _call_events(updated, effects)]
        await webhooks.emit(session, services, made, integration_id)
    messages = []
    for effect in effects:
        if isinstance(effect, engine.RecordingReady) and (services.settings.keep_recordings or effect.temporary):
            await recording_store.queue(session, row_id, effect.url, effect.temporary)
        message = {"type": type(effect).__name__, "call_id": row_id, "integration_id": integration_id}
        if not isinstance(effect, engine.RecordingReady):  # its link may be presigned: kept here, served by us
            message |= vars(effect)  # flat, frozen: no need for `asdict`'s deep copy
        if isinstance(effect, engine.CardShown | engine.CardHidden):
            message["recipients"] = await automation.card_recipients(session, rules, view, effect.employee)
        messages.append(message)
        if isinstance(effect, engine.CallOpened) and updated.state is CallState.RINGING and not updated.legs:
            # rings with no employee named yet: the responsible manager (if the rules say so), the listed employees,
            # or everyone
            recipients = await automation.card_recipients(session, rules, view, None)
            messages.append(message | {"type": "CardShown", "employee": None, "recipients": recipients})
    return messages


def _call_events(call, effects: list[engine.Effect]) -> list[str]:
    """The webhook event types a change of a call is."""
    types = []
    for effect in effects:
        if isinstance(effect, engine.CallOpened) and call.state is CallState.RINGING:
            types.append("call.ringing")
        elif isinstance(effect, engine.CallAnswered):
            types.append("call.answered")
        elif isinstance(effect, engine.CallEnded):
            types += ["call.ended"] + (["call.missed"] if effect.result is CallResult.MISSED else [])
        elif isinstance(effect, engine.RecordingReady):
            types.append("call.recording_ready")
    return types


async def _reconcile(
    session, rules: automation.Rules, view: call_store.CallView, made: list | None = None
) -> call_store.CallView:
    """The CRM rules on a call; a failing rule must not lose the call's own update, and leaves a problem on it.
    What the rules made (clients, tasks) is added to `made`, if given, as webhook events."""
    try:
        async with session.begin_nested():
            return await automation.reconcile(session, rules, view, made)
    except Exception as exc:
        if made:
            made.clear()  # rolled back: none of it exists
        log.exception("CRM rules failed on call %s", view.id)
        metrics.FAILURES.labels("automation").inc()
        await crm.link_call(session, view.id, problem=f"CRM rules failed: {exc.__class__.__name__}: {exc}"[:1000])
        return view


async def rerun_rules(services: Services, integration_id: int, call_key: str) -> bool | None:
    """Run the CRM rules of a call they failed on again (after an admin fixed the cause): True if they pass now,
    False if they fail again, None if the call had no problem."""
    async with services.db.transaction() as session:
        try:
            await call_store.find_call(session, integration_id, call_key)
        except LookupError:
            return None
        locked = await call_store.lock_call(session, integration_id, call_key)
        if locked.call is None or locked.problem is None:
            return None
        view = await call_store.save_call(session, locked, locked.call)
        view = await _reconcile(session, await services.rules(integration_id), view)
        problem = await call_store.problem_of(session, view.id)
    return problem is None


async def close_stale_calls(services: Services, now: datetime) -> int:
    """End calls the PBX will never finish for us (a missed call has no COMPLETED in some dialects).

    A call with no phone ringing is over after `settle_seconds` of silence; any call after
    `abandon_seconds`. The end is an ordinary END event, so a late real one still merges in.
    """
    settings = services.settings
    async with services.db.read() as session:
        candidates = await call_store.open_calls_idle_since(session, now - timedelta(seconds=settings.settle_seconds))
    closed = 0
    for _row_id, integration_id, key in candidates:
        async with services.db.transaction() as session:
            locked = await call_store.lock_call(session, integration_id, key)
            call = locked.call
            if call is None or call.ended_at is not None or call.last_at is None:
                continue
            busy = call.ringing_employees or call.answered
            if busy and now - call.last_at < timedelta(seconds=settings.abandon_seconds):
                continue
            end = CallEvent(kind=EventKind.END, call_key=key, at=call.last_at)
            messages = await _fold(services, session, integration_id, locked, end)
        closed += 1
        await committed(services, messages)
    return closed


@dataclass(frozen=True)
class CallSummary:
    """Our ids for a call, for dialects whose replies echo them."""

    call_id: int
    employee_id: int | None  # the assignee: who answered, or the only employee it rang
    employee_login: str | None
    ticket_id: int | None
    recording_kept: bool


async def call_summary(services: Services, integration_id: int, call_key: str) -> CallSummary:
    async with services.db.read() as session:
        row_id = await call_store.find_call(session, integration_id, call_key)
        assignee = await automation.assignee_of(session, row_id)
        employee = await directory.get_employee(session, assignee) if assignee else None
        ticket = await crm.task_by_key(session, f"{automation.TICKET}:{row_id}")
        recording = await recording_store.get(session, row_id)
    return CallSummary(
        call_id=row_id,
        employee_id=assignee,
        employee_login=employee.pbx_login if employee else None,
        ticket_id=ticket.id if ticket else None,
        recording_kept=recording is not None and recording.status == "kept",
    )


async def call_key_of(services: Services, integration_id: int, call_id: int) -> str | None:
    """The PBX's key of one of this integration's calls, by our id."""
    async with services.db.read() as session:
        row = await call_store.get_call(session, call_id)
    return row.pbx_call_id if row is not None and row.integration_id == integration_id else None


async def group_members(services: Services, group_ids) -> tuple[list[int], set[int]]:
    async with services.db.read() as session:
        return await directory.members_of(session, group_ids)


async def existing_employees(services: Services, ids) -> set[int]:
    async with services.db.read() as session:
        return await directory.existing_employees(session, ids)


@dataclass
class ReplayReport:
    applied: int = 0  # had failed or been refused before, and went through now
    unchanged: int = 0  # had been applied: deduplication left them alone
    failing: list[tuple[int, str]] = field(default_factory=list)  # (journal id, why)
    rules_rerun: int = 0  # calls whose CRM rules had failed and were run again
    rules_fixed: int = 0  # ... and passed this time
    calls: set[tuple[int, str]] = field(default_factory=set, repr=False)  # (integration id, call key) replayed


async def replay(
    services: Services,
    *,
    call_id: int | None = None,
    integration_id: int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    progress=None,
) -> ReplayReport:
    """Run journaled requests through the same path again: how an admin recovers after a bug fix."""
    call_key = None
    if call_id is not None:
        async with services.db.read() as session:
            row = await call_store.get_call(session, call_id)
        if row is None:
            raise LookupError(f"call {call_id} does not exist")
        integration_id, call_key = row.integration_id, row.pbx_call_id
    async with services.db.read() as session:
        entries = await journal_store.journal_entries(
            session, integration_id=integration_id, call_key=call_key, since=since, until=until
        )
    report = ReplayReport()
    for entry in progress(entries) if progress else entries:
        if entry.call_key is not None:
            report.calls.add((entry.integration_id, entry.call_key))
        integration = await services.integration(entry.integration_id)
        dialect = services.dialects.get(integration.kind) if integration else None
        if dialect is None or dialect.replay is None:
            report.failing.append((entry.id, "its integration or dialect is gone"))
            continue
        try:
            command = await dialect.replay(services, integration, entry.params, entry.call_key, entry.received_at)
        except WireError as exc:
            report.failing.append((entry.id, f"still refused: {exc}"))
            continue
        if not isinstance(command, Events):
            report.unchanged += 1
            continue
        outcome = await ingest_one(services, integration.id, entry.params, command)
        if outcome.failed:
            report.failing.append((entry.id, outcome.failed))
        elif outcome.duplicate:
            report.unchanged += 1
        else:
            report.applied += 1
    for integration_id, key in sorted(report.calls):  # a call whose rules failed gets them run again
        passed = await rerun_rules(services, integration_id, key)
        if passed is not None:
            report.rules_rerun += 1
            report.rules_fixed += passed
    return report


@dataclass
class BackfillReport:
    new: int = 0  # calls or facts we did not have
    unchanged: int = 0  # already journaled: nothing to do
    refused: list[str] = field(default_factory=list)  # rows that are not calls, with why


async def backfill(services: Services, integration_id: int, period: str = "today") -> BackfillReport:
    """Fetch the PBX's call history and merge it in: calls missed while we were down appear, nothing doubles."""
    integration = await services.integration(integration_id)
    dialect = services.dialects.get(integration.kind) if integration else None
    if dialect is None or dialect.history is None or dialect.history_row is None:
        raise PbxError(f"integration {integration_id} cannot fetch call history")
    rows = await dialect.history(services.http_client(integration.settings), integration.settings, period)
    report = BackfillReport()
    for row in rows:
        try:
            params, command = dialect.history_row(
                row, region=services.settings.default_region, settings=integration.settings
            )
        except WireError as exc:
            report.refused.append(f"{str(row)[:80]}: {exc}")
            continue
        outcome = await ingest_one(services, integration.id, params, command)
        if outcome.failed:
            report.refused.append(f"{command.call_key}: {outcome.failed}")
        elif outcome.duplicate:
            report.unchanged += 1
        else:
            report.new += 1
    return report


async def backfill_all(services: Services, _now: datetime) -> None:
    """The periodic job: today's history of every integration that can give it."""
    async with services.db.read() as session:
        candidates = await integrations.list_integrations(session)
    for integration in candidates:
        dialect = services.dialects.get(integration.kind)
        if integration.enabled and dialect is not None and dialect.history is not None:
            try:
                await backfill(services, integration.id)
            except PbxError as exc:
                log.warning("back-fill of integration %s: %s", integration.id, exc)
