"""Requests to PBXs, through the outbox: click-to-call and account sync (setup is an integration's, in
integrations.py)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from .. import outbox
from ..domain.pbx import Account, PbxError, PbxUser
from ..domain.phones import normalize
from ..services import Services
from ..store import directory, integrations
from ..store import outbox as outbox_store
from ..store.tables import Integration, OutboxRequest


class ClickToCallError(ValueError):
    """Click-to-call cannot start; the message says why, `reason` names the case (for the workspace's words)."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class ClickToCall:
    integration_id: int
    employee_id: int
    phone: str
    pbx_call_id: str | None
    request_id: int
    already: bool = False  # the same click a moment ago: no second call was started
    retrying: str | None = None  # the PBX did not take it yet, and why: it is tried again shortly


async def place_call(services: Services, integration: Integration, payload: dict[str, Any]) -> dict[str, Any]:
    make_call = services.dialects[integration.kind].make_call
    if make_call is None:
        raise PbxError(f"{services.dialects[integration.kind].title} cannot place calls")
    http = services.http_client(integration.settings)
    pbx_call_id = await make_call(http, integration.settings, PbxUser(**payload["user"]), payload["phone"])
    return {"pbx_call_id": pbx_call_id}


async def click_to_call(
    services: Services, *, employee_id: int, phone: str, integration_id: int | None = None
) -> ClickToCall:
    """Ask the PBX to ring the employee's phone first, then the client; a double click starts one call.

    Answers once the PBX has: placed (with its call id), refused (PbxError), or not reachable yet (`retrying`).
    """
    number = normalize(phone, services.settings.default_region)
    if number is None:
        raise ClickToCallError(f"{phone!r} is not a phone number", "not_a_number")
    async with services.db.read() as session:
        employee = await directory.get_employee(session, employee_id)
        candidates = await integrations.list_integrations(session)
    if employee is None:
        raise ClickToCallError(f"employee {employee_id} does not exist", "no_employee")
    if not (employee.pbx_login or employee.extension):
        raise ClickToCallError(f"{employee.name} has no PBX login or extension", "no_pbx_user")
    usable = [
        i
        for i in candidates
        if i.enabled
        and i.kind in services.dialects
        and services.dialects[i.kind].make_call is not None
        and (integration_id is None or i.id == integration_id)
    ]
    if not usable:
        raise ClickToCallError("no enabled integration can place calls", "no_integration")
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


async def fetch_accounts(services: Services, integration: Integration, _payload: dict[str, Any]) -> dict[str, Any]:
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


async def _request(services: Services, action: str, integration_id: int) -> OutboxRequest:
    """Keep a request to this integration's PBX and make it at once."""
    async with services.db.transaction() as session:
        if await integrations.get_integration(session, integration_id) is None:
            raise PbxError(f"integration {integration_id} does not exist")
        request = await outbox.enqueue(session, action, integration_id)
    return await outbox.deliver_now(services, request.id)
