"""The settings pages (admins only): integrations and their rules, requests to the PBXs, employees, API keys.

Forms are generated from each dialect's settings model and the rules model, so no page lists a vendor's fields.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Literal, get_args, get_origin

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import SecretStr, ValidationError

from .. import flows, outbox, webhooks
from ..automation import Rules
from ..dialects.base import stored_settings
from ..domain.ids import parse_id
from ..domain.pbx import PbxError
from ..domain.phones import normalize
from ..store import directory, integrations
from ..store import outbox as outbox_store
from ..store import webhooks as webhook_store
from . import auth
from .pages import WORKSPACE, IdPath, checked_form, lang_of, render, services_of

router = APIRouter(**WORKSPACE)



@router.get("/settings")
async def settings_page(request: Request):
    await auth.require_role(request, "admin")
    return await _settings_view(request)


async def _settings_view(
    request: Request, new_key: str | None = None, new_secret: str | None = None, revealed: int | None = None
) -> HTMLResponse:
    """The page; `revealed` names the one integration whose token and URL are shown in full (after an admin asked,
    or rotated it), every other one's are masked."""
    services = services_of(request)
    note = request.session.pop("note", None)
    note = note if isinstance(note, dict) else {}
    async with services.db.read() as session:
        rows = await integrations.list_integrations(session)
        people = await directory.list_employees(session)
        requests = await outbox_store.listing(session, limit=20)
        api_keys = await integrations.list_api_keys(session)
        hooks = await webhook_store.list_webhooks(session)
    views = [
        {"row": i, "url": flows.inbound_url(services, i, masked=i.id != revealed), "revealed": i.id == revealed,
         "dialect": services.dialects.get(i.kind),
         "rules": Rules.model_validate(i.automation)}
        for i in rows
    ]  # fmt: skip
    return render(request, "settings.html", integrations=views, people=people, dialects=services.dialects,
                  setting_fields=lambda dialect: setting_fields(dialect, lang_of(request)), rule_kinds=RULE_KINDS,
                  rule_choices=RULE_CHOICES,
                  outbox=requests, api_keys=api_keys,
                  message=note.get("message"), field=note.get("field"), problem=note.get("value", ""),
                  new_key=new_key, webhooks=hooks,
                  event_types=webhooks.EVENT_TYPES, new_secret=new_secret)  # fmt: skip


@router.post("/settings/integrations")
async def add_integration(request: Request):
    await auth.require_role(request, "admin")
    form = await checked_form(request)
    services = services_of(request)
    dialect = services.dialects.get(form.get("kind", ""))
    if dialect is None:
        raise HTTPException(400, "unknown kind")
    given = {k: v for k, v in form.items() if k in dialect.settings.model_fields and v.strip()}
    try:
        settings = stored_settings(dialect.settings.model_validate(given))
    except ValidationError as exc:  # said beside the first field that is wrong, with the kept values
        error = exc.errors()[0]
        where = error["loc"][0] if error["loc"] else "name"
        return _settings_message(request, "rule_invalid", field=f"new:{dialect.kind}:{where}", value=error["msg"])
    _row, problem = await flows.add_integration(services, dialect.kind, name=form.get("name") or dialect.title,
                                                settings=settings)  # fmt: skip
    return _settings_message(request, problem or "saved")


@router.post("/settings/integrations/{integration_id}/{action}")
async def integration_action(integration_id: IdPath, action: str, request: Request):
    await auth.require_role(request, "admin")
    form = await checked_form(request)
    services = services_of(request)
    try:
        if action == "enable":
            await flows.enable_integration(services, integration_id)
        elif action == "enable-without-setup":
            await flows.enable_without_setup(services, integration_id)
        elif action == "disable":
            await flows.set_enabled(services, integration_id, False)
        elif action == "sync":
            report = await flows.sync_accounts(services, integration_id)
            return _settings_message(request, f"+{report.created} / {report.linked} / {report.unchanged}")
        elif action == "reveal":
            return await _settings_view(request, revealed=integration_id)
        elif action == "rotate":
            hours = float(form.get("grace_hours") or 24)
            if not 0 <= hours <= 24 * 30:
                raise ValueError("grace_hours")
            await flows.rotate_token(services, integration_id, timedelta(hours=hours))
            request.session["note"] = {"message": "token_rotated", "value": f"{hours:g}"}
            return await _settings_view(request, revealed=integration_id)
        elif action == "check":
            return _settings_message(request, await flows.check_integration(services, integration_id))
        elif action == "rules":
            rules = await _rules_from(request, form, await services.rules(integration_id), services)
            if isinstance(rules, RedirectResponse):
                return rules
            await flows.set_rules(services, integration_id, rules)
        else:
            raise HTTPException(404, "no such action")
    except (PbxError, ValidationError, ValueError, LookupError) as exc:
        return _settings_message(request, str(exc))
    return _settings_message(request, "saved")


@router.post("/settings/outbox/{request_id}/retry")
async def retry_request(request_id: IdPath, request: Request):
    await auth.require_role(request, "admin")
    await checked_form(request)
    retried = await outbox.retry(services_of(request), request_id)
    if retried is None:
        raise HTTPException(404, "no such request")
    return _settings_message(request, retried.error if retried.status != "done" and retried.error else "saved")


@router.post("/settings/employees/{employee_id}")
async def edit_employee(employee_id: IdPath, request: Request):
    await auth.require_role(request, "admin")
    form = await checked_form(request)
    values = {k: (form.get(k, "").strip() or None) for k in EMPLOYEE_FIELDS}
    async with services_of(request).db.read() as session:
        for name, longest in EMPLOYEE_FIELDS.items():  # said beside the field, and nothing saved
            where = f"employee:{employee_id}:{name}"
            if values[name] and len(values[name]) > longest:
                return _settings_message(request, "too_long", field=where, value=str(longest))
            holder = await directory.holder_of(session, name, values[name], employee_id) if name != "clid" else None
            if values[name] and holder is not None:
                return _settings_message(request, "taken_by", field=where, value=holder.name)
    values["away"] = "away" in form
    if form.get("role") in auth.ROLES:
        values["role"] = form["role"]
    if form.get("password"):
        values["password_hash"] = auth.hash_password(form["password"])
    async with services_of(request).db.transaction() as session:
        await directory.update_employee(session, employee_id, **values)
    return _settings_message(request, "saved")


@router.post("/settings/keys")
async def create_api_key(request: Request):
    await auth.require_role(request, "admin")
    form = await checked_form(request)
    name = form.get("name", "").strip()[:200] or "api"
    async with services_of(request).db.transaction() as session:
        key = await integrations.add_api_key(session, name, read_only="read_only" in form)
    return await _settings_view(request, new_key=key)  # shown once, in this answer only (never in a URL)


@router.post("/settings/keys/{key_id}/revoke")
async def revoke_api_key(key_id: IdPath, request: Request):
    await auth.require_role(request, "admin")
    await checked_form(request)
    async with services_of(request).db.transaction() as session:
        await integrations.revoke_api_key(session, key_id)
    return _settings_message(request, "saved")


@router.post("/settings/webhooks")
async def add_webhook(request: Request):
    await auth.require_role(request, "admin")
    url = (await checked_form(request)).get("url", "").strip()
    form = await request.form()  # read once, checked above: the event types are a list
    if not url.startswith(("https://", "http://")) or len(url) > 2000:
        return _settings_message(request, "webhook_url_invalid")
    events = [e for e in form.getlist("events") if e in webhooks.EVENT_TYPES] or None
    try:
        created = await webhooks.add(services_of(request), url, events, None)
    except webhooks.TooManyWebhooks:
        return _settings_message(request, "webhooks_too_many", value=str(webhooks.MAX_WEBHOOKS))
    return await _settings_view(request, new_secret=created.secret)  # shown once, in this answer only


@router.post("/settings/webhooks/{webhook_id}/{action}")
async def webhook_action(webhook_id: IdPath, action: str, request: Request):
    await auth.require_role(request, "admin")
    await checked_form(request)
    services = services_of(request)
    if action == "test":
        delivery = await webhooks.send_test(services, webhook_id)
        if delivery is None:
            raise HTTPException(404, "no such webhook")
        return _settings_message(request, "test_delivered" if delivery.status == "done" else delivery.error or "failed")
    if action == "rotate":
        rotated = await webhooks.rotate(services, webhook_id)
        if rotated is None:
            raise HTTPException(404, "no such webhook")
        return await _settings_view(request, new_secret=rotated.secret)
    if action == "enable":
        found = await webhooks.change(services, webhook_id, enabled=True)
    elif action == "remove":
        found = await webhooks.remove(services, webhook_id)
    else:
        raise HTTPException(404, "no such action")
    if not found:
        raise HTTPException(404, "no such webhook")
    return _settings_message(request, "saved")


EMPLOYEE_FIELDS = {"extension": 32, "pbx_login": 100, "clid": 32}  # what an admin types, and its longest


def _settings_message(request: Request, message: str, **where: str) -> RedirectResponse:
    """Back to the settings page with a message: at the top, or beside the field `where` names. The message rides in
    the signed session, read once: what a link's query string says is never shown (nor used as a format string)."""
    request.session["note"] = {"message": message[:500]} | {name: value[:500] for name, value in where.items()}
    return RedirectResponse("/settings", status_code=303)


async def _rules_from(request: Request, form: dict[str, str], rules: Rules, services) -> Rules | RedirectResponse:
    """The rules the form asks for, or the page again with what is wrong beside the field it is wrong in."""
    current = rules.model_dump()
    chosen = await request.form()  # checked above; a multiple select and the owners' rows send lists
    integration = request.path_params["integration_id"]
    for name, field in Rules.model_fields.items():
        raw = form.get(name, "")
        if field.annotation is bool:
            current[name] = name in form
        elif get_origin(field.annotation) is list:
            current[name] = [i for v in chosen.getlist(name) for p in str(v).split(",") if (i := parse_id(p))]
        elif get_origin(field.annotation) is dict:  # rows of a number and its owner; an emptied number drops its row
            owners = {}
            rows = zip(chosen.getlist(f"{name}.number"), chosen.getlist(f"{name}.employee"), strict=False)
            for number, owner in rows:
                if not str(number).strip():
                    continue
                e164 = normalize(str(number), services.settings.default_region)
                if e164 is None or parse_id(str(owner)) is None:
                    where = f"{integration}:{name}"
                    return _settings_message(request, "owner_row_invalid", field=where, value=str(number))
                owners[e164] = parse_id(str(owner))
            current[name] = owners
        else:
            current[name] = raw.strip() or field.default  # empty: the rule's default (None, mostly)
    try:
        return Rules.model_validate(current)
    except ValidationError as exc:
        error = exc.errors()[0]
        return _settings_message(request, "rule_invalid", field=f"{integration}:{error['loc'][0]}", value=error["msg"])


def _rule_kind(name: str, annotation) -> str:
    """How the settings page asks for a rule: a checkbox, employees picked by name, a choice, or a field."""
    if annotation is bool:
        return "bool"
    if get_origin(annotation) is list:
        return "employees"
    if get_origin(annotation) is Literal:
        return "choice"
    if get_origin(annotation) is dict:
        return "owners"
    if annotation is int:
        return "number"
    return "employee" if name.endswith(("employee_id", "owner_id", "manager_id")) else "text"


RULE_KINDS = {name: _rule_kind(name, field.annotation) for name, field in Rules.model_fields.items()}
RULE_CHOICES = {name: get_args(field.annotation) for name, field in Rules.model_fields.items()
                if RULE_KINDS[name] == "choice"}  # fmt: skip


def setting_fields(dialect, lang: str = "en") -> list[dict]:
    """The inputs of a dialect's settings form, from its settings model (so no template lists vendors' fields): a
    field is labelled by its description, or in another language by `json_schema_extra={lang: ...}`."""
    fields = []
    for name, field in dialect.settings.model_fields.items():
        secret = field.annotation is SecretStr or SecretStr in get_args(field.annotation)
        default = field.default if isinstance(field.default, str) else None
        words = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        label = words.get(lang) or field.description or name
        fields.append({"name": name, "label": label, "type": "password" if secret else "text",
                       "required": field.is_required(), "default": default})  # fmt: skip
    return fields
