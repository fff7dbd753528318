"""The one orchestrator: journal -> engine -> store -> live bus, plus lookups and click-to-call."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from . import automation, metrics, outbound, outbox
from .config import Settings
from .dialects.base import Dialect
from .domain import engine
from .domain.calls import CallEvent, CallState, EventKind
from .domain.pbx import Account, CallerInfo, Events, PbxError, PbxUser, WireError
from .domain.phones import normalize
from .live import LiveBus
from .store import Database, crm, directory, integrations
from .store import calls as call_store
from .store import outbox as outbox_store
from .store import recordings as recording_store
from .store.tables import Integration, OutboxRequest

log = logging.getLogger("callbridge.flows")


class LookupJournal:
    """Requests that only ask (caller lookups, pings), journaled in batches right after they are answered.

    A lookup holds a ringing call and changes nothing, so it never waits for a write.
    """

    def __init__(self) -> None:
        self._pending: list[tuple[int, dict[str, str], dict[str, Any]]] = []

    def add(self, integration_id: int, params: dict[str, str], reply: dict[str, Any]) -> None:
        self._pending.append((integration_id, params, reply))

    async def flush(self, db: Database) -> int:
        batch, self._pending = self._pending, []
        if batch:
            async with db.transaction() as session:
                await call_store.journal_many(
                    session,
                    [
                        {
                            "integration_id": integration_id,
                            "dedupe_key": dedupe_key(params),
                            "command": params.get("cmd", "")[:32] or None,
                            "call_key": params.get("callid", "")[:200] or None,
                            "params": params,
                            "reply": reply,
                            "status": "answered",
                        }
                        for integration_id, params, reply in batch
                    ],
                )
        return len(batch)


@dataclass
class Services:
    """What the flows need, built once per process."""

    db: Database
    settings: Settings
    dialects: dict[str, Dialect]
    bus: LiveBus = field(default_factory=LiveBus)
    lookups: LookupJournal = field(default_factory=LookupJournal)
    rate: outbox.RateLimiter = field(default_factory=outbox.RateLimiter)
    _pool: httpx.AsyncHTTPTransport | None = None  # one connection pool under every client's outbound policy
    _clients: dict[frozenset[str], httpx.AsyncClient] = field(default_factory=dict)
    _integrations: dict[int, tuple[float, Integration | None, automation.Rules]] = field(default_factory=dict)

    async def rules(self, integration_id: int) -> automation.Rules:
        return (await self._integration(integration_id))[2]

    async def integration(self, integration_id: int | None) -> Integration | None:
        """The integration (None for no id: what an unreadable id in a URL names)."""
        return (await self._integration(integration_id))[1] if integration_id is not None else None

    async def _integration(self, integration_id: int) -> tuple[float, Integration | None, automation.Rules]:
        """An integration and its rules, cached for a few seconds: they are read on every PBX request."""
        cached = self._integrations.get(integration_id)
        if cached and cached[0] > time.monotonic():
            return cached
        async with self.db.read() as session:
            found = await integrations.get_integration(session, integration_id)
        rules = automation.Rules.model_validate(found.automation if found else {})
        cached = self._integrations[integration_id] = (
            time.monotonic() + self.settings.integration_cache_seconds,
            found,
            rules,
        )
        return cached

    def http_client(self, integration: Mapping[str, Any] | None = None) -> httpx.AsyncClient:
        """An HTTP client under the outbound policy, trusting the addresses an admin set in these integration
        settings (the PBX's API)."""
        trusted = outbound.admin_hosts(integration or {})
        client = self._clients.get(trusted)
        if client is None:
            if self._pool is None:
                self._pool = httpx.AsyncHTTPTransport()
            policy = outbound.OutboundPolicy(self.settings.outbound_allow)
            transport = outbound.PolicyTransport(policy, self._pool, trusted)
            client = self._clients[trusted] = httpx.AsyncClient(transport=transport,
                                                                 timeout=self.settings.pbx_timeout_seconds)  # fmt: skip
        return client

    async def close(self) -> None:
        await self.lookups.flush(self.db)
        for client in self._clients.values():
            await client.aclose()
        if self._pool is not None:
            await self._pool.aclose()
        await self.db.close()


@dataclass(frozen=True)
class Outcome:
    journal_id: int
    duplicate: bool = False
    failed: str | None = None
    call_ids: tuple[int, ...] = ()


def dedupe_key(params: dict[str, str]) -> str:
    """Two requests with the same parameters are the same request (PBXs repeat themselves)."""
    return hashlib.sha256(json.dumps(params, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


# ---- caller lookup ------------------------------------------------------------------------------


async def lookup(services: Services, raw_phone: str | None, integration_id: int) -> CallerInfo | None:
    """Who is calling: the client and who to route the call to, or None for an unknown number.

    A responsible manager who is away (or no longer active) is replaced by the integration's
    fallback employee, or left out so the PBX routes the call its own way. A ringing call never
    waits for the store: past `lookup_deadline_ms`, or when the store fails, the answer is
    "unknown" or the integration's `deadline_route`.
    """
    phone = normalize(raw_phone, services.settings.default_region)
    if phone is None:
        metrics.LOOKUPS.labels("unknown").inc()
        return None
    started = time.perf_counter()
    try:
        info = await _within(services.settings.lookup_deadline_ms / 1000, _caller(services, phone, integration_id))
    except Exception as exc:  # the deadline passed, or the store is down: answer anyway
        metrics.LOOKUPS.labels("deadline").inc()
        log.warning("caller lookup gave up (%s): answering with the default route", exc.__class__.__name__)
        route = (await services.rules(integration_id)).deadline_route
        return CallerInfo(None, None, None, None, route, route) if route else None
    metrics.LOOKUP_SECONDS.observe(time.perf_counter() - started)
    metrics.LOOKUPS.labels("known" if info else "unknown").inc()
    return info


async def _caller(services: Services, phone: str, integration_id: int) -> CallerInfo | None:
    async with services.db.connect() as connection:
        info = await directory.lookup_caller(connection, phone)
    if info is None or info.responsible_id is None or info.responsible_available:
        return info
    rules = await services.rules(integration_id)
    async with services.db.read() as session:
        fallback = await crm.available_employee(session, rules.routing_fallback_employee_id)
    return info.routed_to(fallback)


async def _within(seconds: float, work):
    """The result of `work`, or TimeoutError after `seconds` without waiting for it to wind down."""
    task = asyncio.ensure_future(work)
    done, _ = await asyncio.wait({task}, timeout=seconds)
    if task in done:
        return task.result()
    task.cancel()
    task.add_done_callback(lambda t: t.cancelled() or t.exception())  # nobody waits for it; no warning
    raise TimeoutError(f"no answer in {seconds:.3f} s")


# ---- call events --------------------------------------------------------------------------------


async def ingest(services: Services, integration_id: int, params: dict[str, str], command: Events) -> Outcome:
    """Journal a PBX request and apply its events, in one transaction.

    A 2xx goes out only after this commits, so an acknowledged request is always journaled and
    applied. It shares its commit with the requests under way with it (`Database.shared_transaction`);
    if that fails, it is tried once more alone, in a transaction and on a connection of its own (a
    connection lost under it, mostly a restart, is replaced). If that fails too, the request is still
    journaled, as failed, for `replay`.
    """

    async def keep(session, status: str, error: str | None = None, lock: bool = False) -> call_store.JournalEntry:
        return await call_store.journal(
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

    async def apply(transaction) -> tuple[call_store.JournalEntry, list[dict[str, Any]], list[int]]:
        async with transaction() as session:
            entry = await keep(session, "applied", lock=bool(command.call_key and command.events))
            if entry.status == "applied":
                return entry, [], []
            if entry.status is not None:  # it failed or was refused before: this time it goes through
                await call_store.set_journal_status(session, entry.id, "applied", call_key=command.call_key)
            locked = {command.call_key: entry.locked} if entry.locked else {}
            return entry, *await _apply(services, session, integration_id, command.events, locked)

    try:
        try:
            entry, messages, call_ids = await apply(services.db.shared_transaction)
        except Exception as exc:
            log.info("applying %s failed (%s); trying again alone", command.command, exc.__class__.__name__)
            metrics.RUN_ALONE.inc()
            entry, messages, call_ids = await apply(services.db.transaction)
    except Exception as exc:
        log.exception("applying %s for integration %s failed", command.command, integration_id)
        metrics.FAILURES.labels("event").inc()
        metrics.REQUESTS.labels("failed").inc()
        reason = f"{exc.__class__.__name__}: {exc}"[:1000]
        async with services.db.transaction() as session:
            entry = await keep(session, "failed", reason)
            await call_store.set_journal_status(session, entry.id, "failed", reason)  # it may have been there
        return Outcome(entry.id, failed=reason)
    if entry.status == "applied":
        metrics.REQUESTS.labels("duplicate").inc()
        return Outcome(entry.id, duplicate=True)
    metrics.REQUESTS.labels("applied").inc()
    metrics.EVENTS.inc(len(command.events))
    for message in messages:
        services.bus.publish(message)
    return Outcome(entry.id, call_ids=tuple(call_ids))


async def reject(services: Services, integration_id: int, params: dict[str, str], reason: str) -> None:
    """Journal an authenticated request we could not understand, so nothing a PBX sent is lost."""
    metrics.REQUESTS.labels("rejected").inc()
    async with services.db.transaction() as session:
        await call_store.journal(
            session,
            integration_id=integration_id,
            dedupe_key=dedupe_key(params),
            command=params.get("cmd", "")[:32] or None,  # an unknown command can be of any length
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
    """Fold one event into a locked call: engine, store, recordings, CRM rules; returns the live messages."""
    row_id = locked.id
    updated, effects = engine.apply(locked.call, event)
    if updated == locked.call:
        return []
    view = await call_store.save_call(session, locked, updated)
    rules = await services.rules(integration_id)
    try:
        async with session.begin_nested():  # a failing rule must not lose the call's own update
            view = await automation.reconcile(session, rules, view)
    except Exception as exc:
        log.exception("CRM rules failed on call %s", row_id)
        metrics.FAILURES.labels("automation").inc()
        await crm.link_call(session, row_id, problem=f"CRM rules failed: {exc.__class__.__name__}: {exc}"[:1000])
    messages = []
    for effect in effects:
        if isinstance(effect, engine.RecordingReady) and (services.settings.keep_recordings or effect.temporary):
            await recording_store.queue(session, row_id, effect.url, effect.temporary)
        message = {"type": type(effect).__name__, "call_id": row_id, "integration_id": integration_id}
        message |= asdict(effect)
        if isinstance(effect, engine.CardShown | engine.CardHidden):
            message["recipients"] = await automation.card_recipients(session, rules, view, effect.employee)
        messages.append(message)
        if isinstance(effect, engine.CallOpened) and updated.state is CallState.RINGING and not updated.legs:
            # rings with no employee named yet: the card goes to the listed employees, or everyone
            recipients = list(rules.listed_employee_ids) or None
            messages.append(message | {"type": "CardShown", "employee": None, "recipients": recipients})
    return messages


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
        for message in messages:
            services.bus.publish(message)
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
        entries = await call_store.journal_entries(
            session, integration_id=integration_id, call_key=call_key, since=since, until=until
        )
    report = ReplayReport()
    for entry in progress(entries) if progress else entries:
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
        outcome = await ingest(services, integration.id, entry.params, command)
        if outcome.failed:
            report.failing.append((entry.id, outcome.failed))
        elif outcome.duplicate:
            report.unchanged += 1
        else:
            report.applied += 1
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
        outcome = await ingest(services, integration.id, params, command)
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


# ---- requests to the PBX: click-to-call, setup, account sync (through the outbox) ---------------


class ClickToCallError(ValueError):
    """Click-to-call cannot start; the message says why, for the user."""


@dataclass(frozen=True)
class ClickToCall:
    integration_id: int
    employee_id: int
    phone: str
    pbx_call_id: str | None
    request_id: int
    already: bool = False  # the same click a moment ago: no second call was started
    retrying: str | None = None  # the PBX did not take it yet, and why: it is tried again shortly


@outbox.action("make_call", outbox.Policy(attempts=3, first_retry=3, max_retry=10, expires=60))
async def _place_call(services: Services, integration: Integration, payload: dict[str, Any]) -> dict[str, Any]:
    make_call = services.dialects[integration.kind].make_call
    if make_call is None:
        raise PbxError(f"{services.dialects[integration.kind].title} cannot place calls")
    pbx_call_id = await make_call(services.http_client(integration.settings), integration.settings, PbxUser(**payload["user"]),
                                  payload["phone"])  # fmt: skip
    return {"pbx_call_id": pbx_call_id}


async def click_to_call(
    services: Services, *, employee_id: int, phone: str, integration_id: int | None = None
) -> ClickToCall:
    """Ask the PBX to ring the employee's phone first, then the client; a double click starts one call.

    Answers once the PBX has: placed (with its call id), refused (PbxError), or not reachable yet (`retrying`).
    """
    number = normalize(phone, services.settings.default_region)
    if number is None:
        raise ClickToCallError(f"{phone!r} is not a phone number")
    async with services.db.read() as session:
        employee = await directory.get_employee(session, employee_id)
        candidates = await integrations.list_integrations(session)
    if employee is None:
        raise ClickToCallError(f"employee {employee_id} does not exist")
    if not (employee.pbx_login or employee.extension):
        raise ClickToCallError(f"{employee.name} has no PBX login or extension")
    usable = [
        i
        for i in candidates
        if i.enabled
        and i.kind in services.dialects
        and services.dialects[i.kind].make_call is not None
        and (integration_id is None or i.id == integration_id)
    ]
    if not usable:
        raise ClickToCallError("no enabled integration can place calls")
    subject = f"{employee.id} {number}"
    since = datetime.now(UTC) - timedelta(seconds=services.settings.click_dedupe_seconds)
    user = PbxUser(login=employee.pbx_login, extension=employee.extension, clid=employee.clid)
    async with services.db.transaction() as session:
        await outbox_store.lock_employee(session, employee.id)
        request = earlier = await outbox_store.recent(session, "make_call", subject, since)
        if earlier is None:
            payload = {"phone": number, "user": asdict(user)}
            request = await outbox.enqueue(
                session, "make_call", usable[0].id, subject=subject, employee_id=employee.id, payload=payload
            )
    if earlier is None:
        request = await outbox.deliver_now(services, request.id)
    try:
        result = outbox.result_of(request)
    except outbox.StillTrying:
        result = {}
    retrying = request.error if request.status == "pending" else None
    return ClickToCall(request.integration_id, employee.id, number, result.get("pbx_call_id"), request.id,
                       already=earlier is not None, retrying=retrying)  # fmt: skip


@dataclass(frozen=True)
class SyncReport:
    linked: int = 0
    created: int = 0
    unchanged: int = 0


@outbox.action("accounts", outbox.Policy(attempts=8, first_retry=30))
async def _sync_accounts(services: Services, integration: Integration, _payload: dict[str, Any]) -> dict[str, Any]:
    dialect = services.dialects[integration.kind]
    if dialect.accounts is None:
        raise PbxError(f"{dialect.title} does not list its employees")
    accounts: list[Account] = await dialect.accounts(services.http_client(integration.settings), integration.settings)
    linked = created = unchanged = 0
    async with services.db.transaction() as session:
        for account in accounts:
            employee = await directory.find_employee(session, login=account.login, email=account.email)
            if employee is None:
                await directory.add_employee(
                    session,
                    name=account.name,
                    pbx_login=account.login,
                    extension=account.extension,
                    email=account.email,
                )
                created += 1
            elif employee.pbx_login == account.login and (employee.extension or None) == account.extension:
                unchanged += 1
            else:
                employee.pbx_login = account.login
                employee.extension = account.extension or employee.extension
                linked += 1
    return asdict(SyncReport(linked, created, unchanged))


async def sync_accounts(services: Services, integration_id: int) -> SyncReport:
    """Map the PBX's accounts to employees by login or e-mail, creating the ones we lack.

    PbxError if the PBX refuses; outbox.StillTrying if it did not answer (the server asks again later).
    """
    return SyncReport(**outbox.result_of(await _request(services, "accounts", integration_id)))


@outbox.action("setup", outbox.Policy(attempts=8, first_retry=30))
async def _setup(services: Services, integration: Integration, _payload: dict[str, Any]) -> dict[str, Any]:
    enable = services.dialects[integration.kind].enable
    if enable is not None:
        await enable(services.http_client(integration.settings), integration.settings, integration.token,
                     inbound_url(services, integration))  # fmt: skip
    await set_enabled(services, integration.id, True)
    return {}


async def enable_integration(services: Services, integration_id: int) -> None:
    """Switch an integration on, first telling its PBX where we are when the dialect does that (`setup`).

    PbxError (with the PBX's own words) if the PBX refuses: the integration stays off. outbox.StillTrying if the
    PBX did not answer: the server asks again later and switches the integration on when the PBX agrees.
    """
    outbox.result_of(await _request(services, "setup", integration_id))


async def _request(services: Services, action: str, integration_id: int) -> OutboxRequest:
    """Keep a request to this integration's PBX and make it at once."""
    async with services.db.transaction() as session:
        if await integrations.get_integration(session, integration_id) is None:
            raise PbxError(f"integration {integration_id} does not exist")
        request = await outbox.enqueue(session, action, integration_id)
    return await outbox.deliver_now(services, request.id)


def inbound_url(services: Services, integration: Integration) -> str:
    """The URL to paste into the PBX cabinet."""
    path = services.dialects[integration.kind].inbound_path(integration.id, integration.token)
    return services.settings.public_url.rstrip("/") + path


async def check_integration(services: Services, integration_id: int) -> str:
    """Ask the PBX something harmless (its `setup`, or its accounts): "check_ok" or what went wrong."""
    integration = await services.integration(integration_id)
    dialect = services.dialects.get(integration.kind) if integration else None
    if dialect is None:
        return f"integration {integration_id} does not exist"
    try:
        if dialect.enable is not None:
            await dialect.enable(services.http_client(integration.settings), integration.settings, integration.token,
                                 inbound_url(services, integration))  # fmt: skip
        elif dialect.accounts is not None:
            await dialect.accounts(services.http_client(integration.settings), integration.settings)
    except PbxError as exc:
        return str(exc)
    return "check_ok"


async def set_rules(services: Services, integration_id: int, rules: automation.Rules) -> None:
    """Replace an integration's CRM automations (LookupError if there is no such integration)."""
    async with services.db.transaction() as session:
        if not await integrations.update_integration(session, integration_id, automation=rules.model_dump()):
            raise LookupError(f"integration {integration_id} does not exist")
    services._integrations.pop(integration_id, None)


async def set_enabled(services: Services, integration_id: int, enabled: bool) -> None:
    """Switch an integration on or off; switching off also gives up a `setup` still being retried."""
    async with services.db.transaction() as session:
        await integrations.update_integration(session, integration_id, enabled=enabled)
        if not enabled:
            await outbox_store.cancel(session, integration_id, "setup", "the integration was switched off")
    services._integrations.pop(integration_id, None)
