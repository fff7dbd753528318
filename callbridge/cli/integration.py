"""`callbridge integration ...`: connect PBXs, switch them on and off, their rules, back-fill and sync."""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from datetime import timedelta
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.table import Table

from .. import flows
from ..automation import Rules
from ..dialects import DIALECTS
from ..dialects.base import stored_settings
from ..domain.pbx import PbxError
from ..services import Services
from ..store import integrations
from .common import AsJson, DatabaseUrl, console, err, fail, run

integration_app = typer.Typer(
    add_completion=False, help="Connect PBXs: each integration has its own inbound URL and token."
)


def integration_add(
    kind: Annotated[str, typer.Argument(help=f"one of: {', '.join(DIALECTS)}")],
    name: Annotated[str, typer.Option(help="a name people will recognise")],
    setup: Annotated[
        bool, typer.Option(help="tell the PBX our URL and token (`setup`); --no-setup for PBXs without it")
    ] = True,
    as_json: AsJson = False,
    database_url: DatabaseUrl = None,
    **options: str | None,
) -> None:
    """Connect a PBX; prints the URL and token to paste into the PBX cabinet (and, for UIS, the notifications)."""
    dialect = DIALECTS.get(kind)
    if dialect is None:
        raise fail(f"unknown kind {kind!r}; known: {', '.join(DIALECTS)}")
    unknown = [
        f"--{k.replace('_', '-')}"
        for k, v in options.items()
        if v is not None and k not in dialect.settings.model_fields
    ]
    if unknown:
        raise fail(f"{kind} does not take {', '.join(unknown)}")
    given = {k: v for k, v in options.items() if v is not None}
    try:
        settings = stored_settings(dialect.settings.model_validate(given))
    except ValidationError as exc:
        problems = "; ".join(_problem(e) for e in exc.errors())
        raise fail(problems) from None

    async def work(services: Services) -> dict[str, Any]:
        integration, problem = await flows.add_integration(services, kind, name=name, settings=settings, setup=setup)
        view = _integration_view(services, await services.integration(integration.id)) | {"error": problem}
        return view | ({"notifications": dialect.instructions()} if dialect.instructions else {})

    view = run(database_url, work)
    if as_json:
        print(json.dumps(view, ensure_ascii=False))
    else:
        console.print(f"[green]integration {view['id']} created[/green] ({dialect.title})")
        console.print(f"Paste into the PBX cabinet:\n  URL:   {view['inbound_url']}\n  token: {view['token']}")
        for number, notification in enumerate(view.get("notifications", []), 1):
            console.print(f"\nNotification {number}: event type «{notification['event_type']}», "
                          f"HTTP {notification['method']} to the URL above, body:")  # fmt: skip
            console.print(notification["body"], markup=False, highlight=False)
    if view["error"]:
        raise fail(_refused(view["id"], view["error"]))


def _refused(integration_id: int, problem: str) -> str:
    return (f"the PBX refused to switch the integration on: {problem}\n"
            f"fix it on the PBX side, then run: callbridge integration enable {integration_id}\n"
            f"or, if this PBX has no `setup`, switch it on anyway and enter our URL and token on the PBX by hand\n"
            f"(`callbridge integration list` shows them): callbridge integration enable {integration_id} "
            f"--without-setup")  # fmt: skip


def settings_options(command: Callable[..., None]) -> Callable[..., None]:
    """One option per setting that any dialect's settings model asks for (`--pbx-url`, `--virtual-number`, ...),
    its help the field's description, named with the dialects that take it: a new dialect brings its own."""
    fields: dict[str, tuple[str, list[str]]] = {}
    for kind, dialect in DIALECTS.items():
        for field_name, field in dialect.settings.model_fields.items():
            fields.setdefault(field_name, (field.description or field_name, []))[1].append(kind)
    # the command's own parameters (settings made earlier are keyword-only, and are made again)
    own = inspect.signature(command, eval_str=True).parameters.values()
    fixed = [p for p in own if p.kind is p.POSITIONAL_OR_KEYWORD]
    generated = [
        inspect.Parameter(field_name, inspect.Parameter.KEYWORD_ONLY, default=None,
                          annotation=Annotated[str | None, typer.Option(help=f"{', '.join(kinds)}: {text}")])
        for field_name, (text, kinds) in fields.items()
    ]  # fmt: skip
    command.__signature__ = inspect.Signature([*fixed, *generated])
    command.__annotations__ = {p.name: p.annotation for p in (*fixed, *generated)} | {"return": None}
    return command


integration_app.command("add")(settings_options(integration_add))


def _problem(error: dict) -> str:
    """A settings validation error, named by the command-line option it came from."""
    where = "-".join(map(str, error["loc"])).replace("_", "-")
    return f"--{where}: {error['msg']}" if where else error["msg"].removeprefix("Value error, ")


@integration_app.command("enable")
def integration_enable(
    integration_id: int,
    without_setup: Annotated[
        bool, typer.Option("--without-setup", help="do not tell the PBX (for PBXs that refuse or lack `setup`)")
    ] = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Switch an integration on (the PBX is told our URL and token where the dialect does that)."""
    try:
        problem = run(database_url, lambda s: _try_enable(s, integration_id, setup=not without_setup))
    except LookupError as exc:
        raise fail(str(exc)) from None
    if problem:
        raise fail(_refused(integration_id, problem))
    console.print(f"integration {integration_id} enabled")


@integration_app.command("disable")
def integration_disable(integration_id: int, database_url: DatabaseUrl = None) -> None:
    """Switch an integration off: its PBX's requests are refused until it is enabled again."""
    try:
        run(database_url, lambda s: flows.set_enabled(s, integration_id, False))
    except LookupError as exc:
        raise fail(str(exc)) from None
    console.print(f"integration {integration_id} disabled")


@integration_app.command("set")
def integration_set(
    integration_id: int,
    changes: Annotated[
        list[str], typer.Argument(help="NAME=VALUE, e.g. missed_call_tasks=true listed_employee_ids=3,5")
    ],
    database_url: DatabaseUrl = None,
) -> None:
    """Change an integration's CRM automations (see `integration show ID` for the names)."""
    parsed = {}
    for change in changes:
        name, sep, value = change.partition("=")
        field = Rules.model_fields.get(name)
        if not sep or field is None:
            raise fail(f"{change!r}: expected NAME=VALUE with NAME one of {', '.join(Rules.model_fields)}")
        empty = value.strip().lower() in ("", "none", "null")
        if "list" in str(field.annotation):
            parsed[name] = [v for v in value.split(",") if v.strip()]
        elif "dict" in str(field.annotation):
            try:
                parsed[name] = json.loads(value) if not empty else {}
            except ValueError:
                raise fail(f"{name} takes JSON, e.g. {name}='{{\"+74950000000\": 3}}'") from None
        else:
            parsed[name] = None if empty else value

    async def work(services: Services) -> Rules:
        current = await services.rules(integration_id)
        if await services.integration(integration_id) is None:
            raise LookupError(f"integration {integration_id} does not exist")
        rules = Rules.model_validate(current.model_dump() | parsed)
        await flows.set_rules(services, integration_id, rules)
        return rules

    try:
        rules = run(database_url, work)
    except ValidationError as exc:
        raise fail("; ".join(f"{e['loc'][0]}: {e['msg']}" for e in exc.errors())) from None
    except LookupError as exc:
        raise fail(str(exc)) from None
    _print_rules(rules)


@integration_app.command("show")
def integration_show(integration_id: int, as_json: AsJson = False, database_url: DatabaseUrl = None) -> None:
    """Show an integration's CRM automations."""
    rules = run(database_url, lambda s: s.rules(integration_id))
    if as_json:
        print(rules.model_dump_json())
    else:
        _print_rules(rules)


def _print_rules(rules: Rules) -> None:
    table = Table("rule", "value", "what it does")
    for name, field in Rules.model_fields.items():
        table.add_row(name, json.dumps(getattr(rules, name)), field.description or "")
    console.print(table)


async def _try_enable(services: Services, integration_id: int, *, setup: bool) -> str | None:
    if await services.integration(integration_id) is None:
        raise LookupError(f"integration {integration_id} does not exist")
    try:
        if setup:
            await flows.enable_integration(services, integration_id)
        else:
            await flows.enable_without_setup(services, integration_id)
    except PbxError as exc:
        return str(exc)
    return None


@integration_app.command("list")
def integration_list(as_json: AsJson = False, database_url: DatabaseUrl = None) -> None:
    """Show the integrations with their inbound URLs."""

    async def work(services: Services) -> list[dict[str, Any]]:
        async with services.db.read() as session:
            return [_integration_view(services, i) for i in await integrations.list_integrations(session)]

    views = run(database_url, work)
    if as_json:
        print(json.dumps(views, ensure_ascii=False))
        return
    table = Table("id", "kind", "name", "enabled")
    for v in views:
        table.add_row(str(v["id"]), v["kind"], v["name"], "yes" if v["enabled"] else "no")
    console.print(table)
    if views:  # whole, one per line, whatever the terminal's width: they are pasted into PBX cabinets
        console.print("inbound URLs:")
        for v in views:
            console.print(f"  {v['id']}  {v['inbound_url']}", overflow="ignore", crop=False, highlight=False)


@integration_app.command("remove")
def integration_remove(integration_id: int, database_url: DatabaseUrl = None) -> None:
    """Disconnect a PBX and forget its calls."""

    async def work(services: Services) -> bool:
        async with services.db.transaction() as session:
            return await integrations.remove_integration(session, integration_id)

    if not run(database_url, work):
        raise fail(f"integration {integration_id} does not exist")
    console.print(f"integration {integration_id} removed")


@integration_app.command("backfill")
def integration_backfill(
    integration_id: int,
    period: Annotated[
        str, typer.Option(help="today, yesterday, this_week, last_week, this_month, last_month")
    ] = "today",
    database_url: DatabaseUrl = None,
) -> None:
    """Fetch the PBX's call history and merge in the calls callbridge missed (nothing doubles)."""
    try:
        report = run(database_url, lambda s: flows.backfill(s, integration_id, period))
    except PbxError as exc:
        raise fail(str(exc)) from None
    for problem in report.refused:
        err.print(f"[yellow]refused:[/yellow] {problem}")
    console.print(f"new {report.new}, unchanged {report.unchanged}, refused {len(report.refused)}")


@integration_app.command("sync")
def integration_sync(integration_id: int, database_url: DatabaseUrl = None) -> None:
    """Fetch the PBX's employee accounts and map their logins to employees."""
    try:
        report = run(database_url, lambda s: flows.sync_accounts(s, integration_id))
    except PbxError as exc:
        raise fail(str(exc)) from None
    console.print(f"linked {report.linked}, created {report.created}, unchanged {report.unchanged}")


@integration_app.command("rotate")
def integration_rotate(
    integration_id: int,
    grace_hours: Annotated[float, typer.Option(min=0, max=720, help="how long the old token still works")] = 24,
    as_json: AsJson = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Give the integration a new token (and URL secret); the old one still works for --grace-hours."""

    async def work(services: Services) -> dict[str, Any]:
        rotated = await flows.rotate_token(services, integration_id, timedelta(hours=grace_hours))
        return _integration_view(services, rotated)

    try:
        view = run(database_url, work)
    except LookupError as exc:
        raise fail(str(exc)) from None
    if as_json:
        print(json.dumps(view))
        return
    console.print(f"Paste into the PBX cabinet:\n  URL:   {view['inbound_url']}\n  token: {view['token']}")
    console.print(f"The old token still works for {grace_hours:g} h; calls and the journal are kept.")


def _integration_view(services: Services, integration) -> dict[str, Any]:
    return {
        "id": integration.id,
        "kind": integration.kind,
        "name": integration.name,
        "enabled": integration.enabled,
        "inbound_url": flows.inbound_url(services, integration),
        "token": integration.token,
    }
