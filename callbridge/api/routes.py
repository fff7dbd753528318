"""The JSON API for the workspace and for other systems: `Authorization: Bearer <key>`."""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, BackgroundTasks, Depends, HTTPException, Path, Query, Request
from fastapi.responses import FileResponse, StreamingResponse
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from .. import flows, recordings, safejson
from ..dialects.base import utc
from ..domain.ids import MAX_ID
from ..domain.pbx import PbxError
from ..domain.phones import normalize
from ..live import Holder, event_stream, for_employee
from ..services import Services
from ..store import StoreBusy, callbacks, crm, directory, integrations, presence
from ..store import calls as call_store
from ..store import journal as journal_store
from ..store import recordings as recording_store
from ..store.directory import PhoneTaken
from ..store.tables import utcnow
from .schemas import (
    CallDetail,
    CallOut,
    ClickToCallIn,
    ClickToCallOut,
    ClientHistory,
    ClientIn,
    ClientOut,
    DealHistory,
    EmployeeIn,
    EmployeeOut,
    EmployeePatch,
    EventOut,
    GroupIn,
    GroupOut,
    HistoryEntry,
    LegOut,
    Page,
    TaskOut,
)

log = logging.getLogger("callbridge.api")
_bearer = HTTPBearer(auto_error=False, description="an API key from `callbridge apikey create`")
_USE_NOTED_EVERY = 60.0  # seconds: how often a key's last use is written (a write on every request would not pay)


def services_of(request: Request) -> Services:
    return request.app.state.services


async def require_key(
    request: Request,
    background: BackgroundTasks,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """A key that exists and is not revoked, read from the store on every request (a revocation holds at once in
    every worker); a read-only key may only read."""
    if credentials is None:
        raise HTTPException(401, "missing API key", headers={"WWW-Authenticate": "Bearer"})
    services = services_of(request)
    async with services.db.read() as session:
        key = await integrations.api_key(session, credentials.credentials)
    if key is None:
        raise HTTPException(401, "invalid API key", headers={"WWW-Authenticate": "Bearer"})
    if key.read_only and request.method not in ("GET", "HEAD"):
        raise HTTPException(403, "this API key is read-only")
    request.state.api_key = (key.id, credentials.credentials)
    noted: dict[int, float] = request.app.state.key_uses  # key id -> when this process last wrote its use
    if noted.get(key.id, 0.0) < time.monotonic() - _USE_NOTED_EVERY:
        noted[key.id] = time.monotonic()
        background.add_task(_note_use, services, key.id, utcnow())


async def _note_use(services: Services, key_id: int, at: datetime) -> None:
    """A key's last use, written after the answer: a read never waits for a write (the store may be busy)."""
    try:
        async with services.db.transaction() as session:
            await integrations.api_key_used(session, key_id, at)
    except StoreBusy:
        log.info("the use of API key %s is noted next time: the store is busy", key_id)


Services = Annotated[Services, Depends(services_of)]
Limit = Annotated[int, Query(ge=1, le=500)]
Offset = Annotated[int, Query(ge=0, le=10_000_000)]
IdQuery = Annotated[int | None, Query(ge=1, le=MAX_ID)]
IdPath = Annotated[int, Path(ge=1, le=MAX_ID)]

class _StrictJsonRequest(Request):
    async def json(self):
        if not hasattr(self, "_json"):
            self._json = safejson.loads(await self.body())  # a ValueError: FastAPI's 400
        return self._json


class StrictJsonRoute(APIRoute):
    """API routes read JSON bodies within callbridge's limits (depth, size, finite numbers, valid text)."""

    def get_route_handler(self):
        handler = super().get_route_handler()

        async def strict(request: Request):
            return await handler(_StrictJsonRequest(request.scope, request.receive))

        return strict


router = APIRouter(prefix="/api", dependencies=[Depends(require_key)], route_class=StrictJsonRoute)


def _phone_or_400(services: Services, raw: str) -> str:
    phone = normalize(raw, services.settings.default_region)
    if phone is None:
        raise HTTPException(400, f"{raw!r} is not a phone number")
    return phone


# ---- calls --------------------------------------------------------------------------------------


@router.get("/calls", response_model=Page[CallOut], tags=["calls"])
async def list_calls(
    services: Services,
    phone: str | None = None,
    employee_id: IdQuery = None,
    client_id: IdQuery = None,
    result: Literal["answered", "missed", "busy", "no_answer", "unavailable", "not_allowed", "failed"] | None = None,
    direction: Literal["in", "out"] | None = None,
    state: Literal["ringing", "talking", "ended"] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: Limit = 50,
    offset: Offset = 0,
):
    """Calls, newest first."""
    where = call_store.CallFilter(
        phone=_phone_or_400(services, phone) if phone else None,
        employee_id=employee_id,
        client_id=client_id,
        result=result,
        direction=direction,
        state=state,
        since=_aware(since),
        until=_aware(until),
    )
    async with services.db.read() as session:
        rows, total = await call_store.list_calls(session, where, limit=limit, offset=offset)
        legs = await call_store.legs_of(session, [r.id for r in rows])
        kept = await recording_store.of_calls(session, [r.id for r in rows])
        failed = await journal_store.failed_requests(session, rows)
    items = [_call_out(services, row, legs[row.id], kept.get(row.id), failed.get(row.id, [])) for row in rows]
    return Page[CallOut](items=items, total=total, limit=limit, offset=offset)


@router.get("/calls/{call_id}", response_model=CallDetail, tags=["calls"])
async def get_call(call_id: IdPath, services: Services):
    """One call with its legs and every PBX request about it."""
    detail = await call_detail(services, call_id)
    if detail is None:
        raise HTTPException(404, "no such call")
    return detail


async def call_detail(services: Services, call_id: int) -> CallDetail | None:
    """The call as the API shows it (webhooks send the same)."""
    async with services.db.read() as session:
        row = await call_store.get_call(session, call_id)
        if row is None:
            return None
        legs = (await call_store.legs_of(session, [row.id]))[row.id]
        events = await journal_store.journal_of_call(session, row.integration_id, row.pbx_call_id)
        recording = await recording_store.get(session, row.id)
    detail = _call_out(services, row, legs, recording, journal_store.request_problems(events)).model_dump()
    return CallDetail(**detail, events=[EventOut.model_validate(e) for e in events])


@router.post("/calls", response_model=ClickToCallOut, status_code=202, tags=["calls"])
async def click_to_call(body: ClickToCallIn, services: Services):
    """Click-to-call: the PBX rings the employee's own phone first, then the client."""
    try:
        placed = await flows.click_to_call(
            services, employee_id=body.employee_id, phone=body.phone, integration_id=body.integration_id
        )
    except flows.ClickToCallError as exc:
        raise HTTPException(400, str(exc)) from None
    except PbxError as exc:
        raise HTTPException(502, str(exc)) from None
    if placed.already:
        status, message = "already_calling", "This number was just clicked: that call is on its way."
    elif placed.retrying:
        status, message = "retrying", f"The PBX did not take the call yet ({placed.retrying}); trying again shortly."
    else:
        status, message = "calling_employee", "Your phone will ring first; pick it up and the PBX will call the client."
    return ClickToCallOut(
        status=status,
        message=message,
        integration_id=placed.integration_id,
        employee_id=placed.employee_id,
        phone=placed.phone,
        pbx_call_id=placed.pbx_call_id,
        outbox_id=placed.request_id,
    )


@router.get(
    "/calls/{call_id}/recording",
    tags=["calls"],
    response_class=FileResponse,
    responses={200: {"content": {"audio/mpeg": {}}}, 404: {"description": "no recording kept (yet)"}},
)
async def get_recording(call_id: IdPath, request: Request, services: Services):
    """The call's recording as we keep it; supports HTTP range requests, so players can seek."""
    return await recordings.response(services, call_id, request.headers.get("range"))


def _call_out(services, row, legs, recording=None, failed_requests=()) -> CallOut:
    wait_hours = services.settings.recording_wait_hours
    status = recordings.status_of(row, recording, wait_hours=wait_hours, now=utcnow())
    problems = list(failed_requests)
    problems += [row.problem] if row.problem else []
    problems += [f"recording not kept: {recording.error}"] if recording and recording.status == "failed" else []
    return CallOut.model_validate(row).model_copy(
        update={
            "legs": [LegOut.model_validate(leg) for leg in legs],
            "recording_status": status,
            "recording_error": recording.error if recording else None,
            "problems": problems,
        }
    )


def _aware(value: datetime | None) -> datetime | None:
    return utc(value) if value is not None else None


# ---- directory ----------------------------------------------------------------------------------


@router.get("/employees", response_model=list[EmployeeOut], tags=["directory"])
async def list_employees(services: Services):
    async with services.db.read() as session:
        return await directory.list_employees(session)


@router.post("/employees", response_model=EmployeeOut, status_code=201, tags=["directory"])
async def add_employee(body: EmployeeIn, services: Services):
    async with services.db.transaction() as session:
        return await directory.add_employee(session, **body.model_dump())


@router.patch("/employees/{employee_id}", response_model=EmployeeOut, tags=["directory"])
async def update_employee(employee_id: IdPath, body: EmployeePatch, services: Services):
    async with services.db.transaction() as session:
        employee = await directory.update_employee(session, employee_id, **body.model_dump(exclude_unset=True))
        if employee is None:
            raise HTTPException(404, "no such employee")
        return EmployeeOut.model_validate(employee)


@router.get("/groups", response_model=list[GroupOut], tags=["directory"])
async def list_groups(services: Services):
    """Employee groups (an employee can be in several); PBXs can ring a whole group."""
    async with services.db.read() as session:
        return [GroupOut(id=g.id, name=g.name, employee_ids=m) for g, m in await directory.list_groups(session)]


@router.post("/groups", response_model=GroupOut, status_code=201, tags=["directory"])
async def add_group(body: GroupIn, services: Services):
    async with services.db.transaction() as session:
        missing = set(body.employee_ids) - await directory.existing_employees(session, body.employee_ids)
        if missing:
            raise HTTPException(400, f"no such employees: {', '.join(map(str, sorted(missing)))}")
        group = await directory.add_group(session, name=body.name, employee_ids=body.employee_ids)
    return GroupOut(id=group.id, name=group.name, employee_ids=list(dict.fromkeys(body.employee_ids)))


@router.get("/clients", response_model=Page[ClientOut], tags=["directory"])
async def list_clients(services: Services, phone: str | None = None, limit: Limit = 50, offset: Offset = 0):
    """Clients; `phone` finds the one owning a number, however it is written."""
    async with services.db.read() as session:
        rows, total = await directory.list_clients(
            session, phone=_phone_or_400(services, phone) if phone else None, limit=limit, offset=offset
        )
        items = await _clients_out(session, rows)
    return Page[ClientOut](items=items, total=total, limit=limit, offset=offset)


@router.post("/clients", response_model=ClientOut, status_code=201, tags=["directory"])
async def add_client(body: ClientIn, services: Services):
    phones = [_phone_or_400(services, p) for p in body.phones]
    try:
        async with services.db.transaction() as session:
            if body.responsible_id is not None and await directory.get_employee(session, body.responsible_id) is None:
                raise HTTPException(400, f"employee {body.responsible_id} does not exist")
            client = await directory.add_client(
                session, name=body.name, phones=phones, responsible_id=body.responsible_id
            )
            return (await _clients_out(session, [client]))[0]
    except PhoneTaken as exc:
        raise HTTPException(409, f"phone already belongs to another client: {exc}") from None


@router.get("/clients/{client_id}", response_model=ClientOut, tags=["directory"])
async def get_client(client_id: IdPath, services: Services):
    async with services.db.read() as session:
        client = await directory.get_client(session, client_id)
        if client is None:
            raise HTTPException(404, "no such client")
        return (await _clients_out(session, [client]))[0]


@router.get("/clients/{client_id}/history", response_model=ClientHistory, tags=["directory"])
async def client_history(client_id: IdPath, services: Services):
    """The client's contact records and deal entries, each with its call and recording (seed 001)."""
    async with services.db.read() as session:
        client = await directory.get_client(session, client_id)
        if client is None:
            raise HTTPException(404, "no such client")
        (out,) = await _clients_out(session, [client])
        records = await crm.interactions_of(session, client_id)
        by_deal = await crm.deal_calls_of(session, client_id)
        calls = {row.id: row for rows in by_deal.values() for row in rows}
        calls |= {row.id: row for row in await call_store.calls_by_id(session, [r.call_id for r in records])}
        kept = await recording_store.of_calls(session, list(calls))

    def entry(call_id: int, at, record=None) -> HistoryEntry:
        """A call as the record says it (a contact record keeps its own copy), else as the call is now."""
        call = calls[call_id]
        status = recordings.status_of(call, kept.get(call_id), now=utcnow(),
                                      wait_hours=services.settings.recording_wait_hours)  # fmt: skip
        facts = {name: getattr(record or call, name)
                 for name in ("direction", "employee_id", "result", "talk_seconds", "deal_id")}  # fmt: skip
        link = f"/api/calls/{call_id}/recording" if status == "kept" else None
        return HistoryEntry(call_id=call_id, at=at, recording=link, recording_status=status, **facts)

    contact_records = [entry(r.call_id, r.at, r) for r in records]
    deals = [DealHistory(**deal.model_dump(), calls=[entry(c.id, c.started_at) for c in by_deal.get(deal.id, [])])
             for deal in out.deals]  # fmt: skip
    return ClientHistory(client=out, contact_records=contact_records, deals=deals)


async def _clients_out(session, clients) -> list[ClientOut]:
    ids = [c.id for c in clients]
    phones = await directory.phones_of(session, ids)
    deals = await directory.deals_of(session, ids)
    return [
        ClientOut(
            id=c.id,
            name=c.name,
            kind=c.kind,
            responsible_id=c.responsible_id,
            phones=phones.get(c.id, []),
            deals=deals.get(c.id, []),
        )
        for c in clients
    ]


@router.get("/tasks", response_model=Page[TaskOut], tags=["directory"])
async def list_tasks(
    services: Services,
    status: Literal["open", "done"] | None = None,
    employee_id: IdQuery = None,
    limit: Limit = 50,
    offset: Offset = 0,
):
    async with services.db.read() as session:
        rows, total = await directory.list_tasks(
            session, status=status, employee_id=employee_id, limit=limit, offset=offset
        )
    return Page[TaskOut](items=rows, total=total, limit=limit, offset=offset)


# ---- live call cards ----------------------------------------------------------------------------


@router.get("/live", tags=["live"], response_class=StreamingResponse)
async def live(request: Request, services: Services, employee_id: IdQuery = None):
    """Server-Sent Events: call-card messages (CardShown, CardHidden, CallAnswered, CallEnded, ...).

    With `employee_id`, only what that employee should see: cards addressed to them or to everyone. A key holds at
    most CALLBRIDGE_LIVE_STREAMS_PER_KEY streams (the oldest ends); a stream ends within seconds of its key's
    revocation, and after CALLBRIDGE_LIVE_STREAM_SECONDS (connect again: EventSource does by itself).
    """
    key_id, raw = request.state.api_key

    async def still_valid() -> bool:
        async with services.db.read() as session:
            return await integrations.api_key(session, raw) is not None

    settings = services.settings
    holder = Holder(f"key:{key_id}", settings.live_streams_per_key, still_valid, settings.live_stream_seconds,
                    settings.live_recheck_seconds)
    return event_stream(services.bus, for_employee(employee_id), holder)


# ---- analytics ----------------------------------------------------------------------------------


def _callbacks(figures: callbacks.Callbacks) -> dict:
    return {
        "missed": figures.missed,
        "returned": figures.returned,
        "returned_within_sla": figures.returned_within_sla,
        "median_seconds_to_callback": figures.median_seconds_to_callback,
        "never_returned": figures.never_returned,
    }


@router.get("/analytics", tags=["analytics"])
async def analytics_figures(services: Services, since: datetime, until: datetime):
    """A period's missed calls recovered, [since, until) at most 366 days: how many were missed, returned, returned
    within the SLA (`callback_sla_minutes` of the CRM rules), the median time to call back, never returned; the
    same per employee (each employee a missed call rang) and per line (the company's number called)."""
    since, until = utc(since), utc(until)
    if not timedelta(0) < until - since <= timedelta(days=366):
        raise HTTPException(400, "until must come after since, at most 366 days later")
    found = await flows.recovery(services, since, until)
    company = _callbacks(found.company) | {"sla_minutes": found.sla_minutes}
    per_employee = [{"employee_id": e} | _callbacks(f) for e, f in found.per_employee.items()]
    per_line = [{"line": line or None} | _callbacks(f) for line, f in sorted(found.per_line.items())]
    return {"since": since, "until": until, "callbacks": company | {"per_employee": per_employee, "per_line": per_line}}


@router.get("/presence", tags=["presence"])
async def who_is_on_the_line(services: Services):
    """Each active employee's state now: free, ringing, talking (with the call and since when) or away."""
    async with services.db.read() as session:
        states = await presence.presence(session)
    return [{"employee_id": p.employee_id, "state": p.state, "call_id": p.call_id, "since": p.since} for p in states]
