"""Caller lookup from the system a company already has: when callbridge does not know a number, it asks the
lookup source (a signed POST, as webhooks are signed), within what is left of the lookup's deadline, caches the
answer, and keeps the client it names (with its id there, its manager and its deal) so the next call is ours."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx

from . import metrics, outbound, safejson, webhooks
from .domain.pbx import CallerInfo
from .domain.phones import display
from .store import directory
from .store import lookup_source as source_store
from .store.tables import Employee, LookupSource

if TYPE_CHECKING:
    from .services import Services

log = logging.getLogger("callbridge.lookup_source")

MAX_ANSWER = 64_000  # bytes of an answer we read
MAX_CACHED = 50_000  # numbers whose answers are kept


class SourceFailed(RuntimeError):
    """The lookup source did not answer usefully; the message says how, for the call's problems."""


@dataclass(frozen=True)
class Answer:
    name: str
    responsible: str | None
    external_id: str | None
    deal: tuple[str, int | None] | None


async def ask(services: Services, phone: str, *, call_key: str | None, integration_id: int) -> CallerInfo | None:
    """Who is calling, as the lookup source says (None: it does not know, or there is none); SourceFailed."""
    source = await services.lookup_source()
    if source is None:
        return None
    cache = services.source_answers
    cached = cache.get(phone)
    if cached is not None and cached[0] > time.monotonic():
        answer = cached[1]
    else:
        answer = await _fetch(services, source, phone, call_key, integration_id)
        if len(cache) >= MAX_CACHED:
            cache.pop(next(iter(cache)))
        cache[phone] = (time.monotonic() + source.cache_seconds, answer)
        if answer is not None:
            services.spawn(_keep(services, phone, answer))
    if answer is None:
        return None
    async with services.db.read() as session:
        employee = await _employee(session, answer.responsible)
    return CallerInfo(None, answer.name, employee.id if employee else None, employee.name if employee else None,
                      employee.pbx_login if employee else None, employee.extension if employee else None,
                      responsible_available=bool(employee and employee.active and not employee.away))  # fmt: skip


async def configure(services: Services, url: str, cache_seconds: int) -> LookupSource:
    """Ask this URL from now on (with a new signing secret), forgetting what the last source said."""
    async with services.db.transaction() as session:
        source = await source_store.put(session, url=url, secret=webhooks.new_secret(), cache_seconds=cache_seconds)
    services.forget_lookup_source()
    return source


async def clear(services: Services) -> bool:
    async with services.db.transaction() as session:
        cleared = await source_store.clear(session)
    services.forget_lookup_source()
    return cleared


def body(phone: str, call_key: str | None, integration_id: int) -> str:
    return json.dumps({"phone": phone, "call_id": call_key, "integration_id": integration_id})


async def _fetch(services: Services, source: LookupSource, phone: str, call_key, integration_id) -> Answer | None:
    content = body(phone, call_key, integration_id)
    headers = webhooks.signed_headers([source.secret], f"msg_lookup_{time.time_ns()}", content)
    try:
        http = services.http_client(max_answer=MAX_ANSWER + 1)  # one byte more: an answer too long is refused
        response = await http.post(source.url, content=content.encode(), headers=headers)
    except outbound.Refused as exc:
        raise SourceFailed(f"the lookup source is refused: {exc}") from None
    except httpx.HTTPError as exc:
        raise SourceFailed(f"the lookup source did not answer: {exc.__class__.__name__}") from None
    if response.status_code == 404:
        return None
    if response.status_code != 200:
        raise SourceFailed(f"the lookup source answered {response.status_code}")
    if len(response.content) > MAX_ANSWER:
        raise SourceFailed(f"the lookup source's answer is longer than {MAX_ANSWER} bytes")
    return _answer(response.content)


def _answer(raw: bytes) -> Answer | None:
    try:
        data = safejson.loads(raw)
    except safejson.JsonRefused as exc:
        raise SourceFailed(f"the lookup source's answer is not JSON we read: {exc}") from None
    if not isinstance(data, dict):
        raise SourceFailed("the lookup source's answer is not a JSON object")
    name = _text(data.get("name"), 300)
    if name is None:
        return None  # `{}`: it does not know the number either
    deal = data.get("deal") if isinstance(data.get("deal"), dict) else None
    title = _text(deal.get("title"), 300) if deal else None
    amount = deal.get("amount") if deal else None
    amount = amount if isinstance(amount, int) and not isinstance(amount, bool) and 0 <= amount < 2**62 else None
    return Answer(name=name, responsible=_text(data.get("responsible"), 200),
                  external_id=_text(data.get("external_id"), 200), deal=(title, amount) if title else None)  # fmt: skip


def _text(value: Any, limit: int) -> str | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        return None
    return value.strip()[:limit] or None


async def _employee(session, key: str | None) -> Employee | None:
    """The employee the source names by e-mail, PBX login or extension."""
    if not key:
        return None
    employee = await directory.employee_for_login(session, key)
    if employee is None and (employee_id := await directory.employee_by_key(session, key)) is not None:
        employee = await directory.get_employee(session, employee_id)
    return employee


async def _keep(services: Services, phone: str, answer: Answer) -> None:
    """The client the source named, kept here after the PBX has its answer (a ringing call never waits for it)."""
    try:
        async with services.db.transaction() as session:
            employee = await _employee(session, answer.responsible)
            await source_store.keep_client(session, phone=phone, name=answer.name or display(phone),
                                           responsible_id=employee.id if employee else None,
                                           external_id=answer.external_id, deal=answer.deal)  # fmt: skip
    except Exception:
        log.exception("keeping the client the lookup source named failed")
        metrics.FAILURES.labels("lookup_source").inc()

