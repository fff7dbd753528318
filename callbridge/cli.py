"""The `callbridge` command: serve, demo data, integrations, API keys, imports."""

from __future__ import annotations

import asyncio
import inspect
import json
import random
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import httpx
import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import track
from rich.table import Table

from . import demo as demo_data
from . import flows
from . import simulate as simulation
from .app import build_services
from .automation import Rules
from .config import Settings
from .dialects import DIALECTS
from .dialects.base import stored_settings, utc
from .domain.pbx import PbxError
from .importer import import_csv
from .services import Services
from .store import directory, integrations
from .web.auth import hash_password

app = typer.Typer(help="callbridge: the CRM side of your cloud PBX.", no_args_is_help=True)
integration_app = typer.Typer(help="Connect PBXs: each integration has its own inbound URL and token.")
apikey_app = typer.Typer(help="Keys for the JSON API (Authorization: Bearer KEY).")
app.add_typer(integration_app, name="integration")
app.add_typer(apikey_app, name="apikey")
console = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

T = TypeVar("T")
DatabaseUrl = Annotated[
    str | None, typer.Option("--database-url", envvar="CALLBRIDGE_DATABASE_URL", help="SQLAlchemy URL")
]
AsJson = Annotated[bool, typer.Option("--json", help="print JSON for scripts")]


def _settings(database_url: str | None) -> Settings:
    return Settings(database_url=database_url) if database_url else Settings()


def _run(database_url: str | None, work: Callable[[Services], Awaitable[T]]) -> T:
    """Run one piece of async work against a migrated database."""

    async def main() -> T:
        services = build_services(_settings(database_url))
        try:
            await services.db.migrate()
            return await work(services)
        finally:
            await services.close()

    return asyncio.run(main())


def _fail(message: str) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}")
    return typer.Exit(1)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8080,
    database_url: DatabaseUrl = None,
    demo: Annotated[bool, typer.Option("--demo", help="load the demo data first if the database is empty")] = False,
    log_level: Annotated[str, typer.Option(help="uvicorn log level (warning turns off the access log)")] = "info",
    certfile: Annotated[Path | None, typer.Option(help="serve HTTPS with this certificate (PEM)")] = None,
    keyfile: Annotated[Path | None, typer.Option(help="the certificate's private key (PEM)")] = None,
    workers: Annotated[int, typer.Option(min=1, help="server processes (more than one needs PostgreSQL)")] = 1,
) -> None:
    """Run the server (SQLite ./callbridge.db unless --database-url says otherwise)."""
    import os

    import uvicorn

    from .app import create_app
    from .config import key_file
    from .server import uvicorn_options
    from .web.auth import KeyFileError, secret_key

    settings = _settings(database_url)
    if (certfile is None) != (keyfile is None):
        raise _fail("give both --certfile and --keyfile, or neither")
    if workers > 1 and settings.database_url.startswith("sqlite"):
        raise _fail("several workers share one database through PostgreSQL: give --database-url postgresql+asyncpg://…")
    _run(database_url, lambda s: asyncio.sleep(0))  # migrate once, before any worker starts
    if demo:
        console.print(_run(database_url, demo_data.load))
    scheme = "https" if certfile else "http"
    console.print(f"callbridge on {scheme}://{host}:{port}  (API docs: {scheme}://{host}:{port}/docs)")
    tls = {"ssl_certfile": str(certfile), "ssl_keyfile": str(keyfile)} if certfile and keyfile else {}
    options = uvicorn_options(settings) | tls | {"host": host, "port": port, "log_level": log_level}
    try:
        secret_key(settings.secret_key.get_secret_value(), key_file(settings))  # made once, before any worker
    except KeyFileError as exc:
        raise _fail(str(exc)) from None
    if workers == 1:
        uvicorn.run(create_app(settings), **options)
        return
    # worker processes build their app from the environment
    os.environ |= {"CALLBRIDGE_DATABASE_URL": settings.database_url, "CALLBRIDGE_WORKERS": str(workers)}
    uvicorn.run("callbridge.app:create_app", factory=True, workers=workers, **options)


@app.command()
def migrate(database_url: DatabaseUrl = None) -> None:
    """Create or upgrade the database schema."""
    _run(database_url, lambda s: asyncio.sleep(0))
    console.print("schema is up to date")


@app.command()
def demo(database_url: DatabaseUrl = None) -> None:
    """Load demo employees, clients with phones and managers, deals, a demo integration and an API key."""
    console.print(_run(database_url, demo_data.load))


# ---- integrations -------------------------------------------------------------------------------


def integration_add(
    kind: Annotated[str, typer.Argument(help=f"one of: {', '.join(DIALECTS)}")],
    name: Annotated[str, typer.Option(help="a name people will recognise")],
    as_json: AsJson = False,
    database_url: DatabaseUrl = None,
    **options: str | None,
) -> None:
    """Connect a PBX; prints the URL and token to paste into the PBX cabinet (and, for UIS, the notifications)."""
    dialect = DIALECTS.get(kind)
    if dialect is None:
        raise _fail(f"unknown kind {kind!r}; known: {', '.join(DIALECTS)}")
    unknown = [
        f"--{k.replace('_', '-')}"
        for k, v in options.items()
        if v is not None and k not in dialect.settings.model_fields
    ]
    if unknown:
        raise _fail(f"{kind} does not take {', '.join(unknown)}")
    given = {k: v for k, v in options.items() if v is not None}
    try:
        settings = stored_settings(dialect.settings.model_validate(given))
    except ValidationError as exc:
        problems = "; ".join(_problem(e) for e in exc.errors())
        raise _fail(problems) from None

    async def work(services: Services) -> dict[str, Any]:
        integration, problem = await flows.add_integration(services, dialect, name=name, settings=settings)
        view = _integration_view(services, await services.integration(integration.id)) | {"error": problem}
        return view | ({"notifications": dialect.instructions()} if dialect.instructions else {})

    view = _run(database_url, work)
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
        raise _fail(f"the PBX refused to switch the integration on: {view['error']}\n"
                    f"fix it on the PBX side, then run: callbridge integration enable {view['id']}")  # fmt: skip


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
def integration_enable(integration_id: int, database_url: DatabaseUrl = None) -> None:
    """Switch an integration on (the PBX is told our URL and token where the dialect does that)."""
    problem = _run(database_url, lambda s: _try_enable(s, integration_id))
    if problem:
        raise _fail(f"not enabled: {problem}")
    console.print(f"integration {integration_id} enabled")


@integration_app.command("disable")
def integration_disable(integration_id: int, database_url: DatabaseUrl = None) -> None:
    """Switch an integration off: its PBX's requests are refused until it is enabled again."""
    _run(database_url, lambda s: flows.set_enabled(s, integration_id, False))
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
            raise _fail(f"{change!r}: expected NAME=VALUE with NAME one of {', '.join(Rules.model_fields)}")
        empty = value.strip().lower() in ("", "none", "null")
        if "list" in str(field.annotation):
            parsed[name] = [v for v in value.split(",") if v.strip()]
        elif "dict" in str(field.annotation):
            try:
                parsed[name] = json.loads(value) if not empty else {}
            except ValueError:
                raise _fail(f"{name} takes JSON, e.g. {name}='{{\"+74950000000\": 3}}'") from None
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
        rules = _run(database_url, work)
    except ValidationError as exc:
        raise _fail("; ".join(f"{e['loc'][0]}: {e['msg']}" for e in exc.errors())) from None
    except LookupError as exc:
        raise _fail(str(exc)) from None
    _print_rules(rules)


@integration_app.command("show")
def integration_show(integration_id: int, as_json: AsJson = False, database_url: DatabaseUrl = None) -> None:
    """Show an integration's CRM automations."""
    rules = _run(database_url, lambda s: s.rules(integration_id))
    if as_json:
        print(rules.model_dump_json())
    else:
        _print_rules(rules)


def _print_rules(rules: Rules) -> None:
    table = Table("rule", "value", "what it does")
    for name, field in Rules.model_fields.items():
        table.add_row(name, json.dumps(getattr(rules, name)), field.description or "")
    console.print(table)


async def _try_enable(services: Services, integration_id: int) -> str | None:
    try:
        await flows.enable_integration(services, integration_id)
    except PbxError as exc:
        return str(exc)
    return None


@integration_app.command("list")
def integration_list(as_json: AsJson = False, database_url: DatabaseUrl = None) -> None:
    """Show the integrations with their inbound URLs."""

    async def work(services: Services) -> list[dict[str, Any]]:
        async with services.db.read() as session:
            return [_integration_view(services, i) for i in await integrations.list_integrations(session)]

    views = _run(database_url, work)
    if as_json:
        print(json.dumps(views, ensure_ascii=False))
        return
    table = Table("id", "kind", "name", "enabled", "inbound URL")
    for v in views:
        table.add_row(str(v["id"]), v["kind"], v["name"], "yes" if v["enabled"] else "no", v["inbound_url"])
    console.print(table)


@integration_app.command("remove")
def integration_remove(integration_id: int, database_url: DatabaseUrl = None) -> None:
    """Disconnect a PBX and forget its calls."""

    async def work(services: Services) -> bool:
        async with services.db.transaction() as session:
            return await integrations.remove_integration(session, integration_id)

    if not _run(database_url, work):
        raise _fail(f"integration {integration_id} does not exist")
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
        report = _run(database_url, lambda s: flows.backfill(s, integration_id, period))
    except PbxError as exc:
        raise _fail(str(exc)) from None
    for problem in report.refused:
        err.print(f"[yellow]refused:[/yellow] {problem}")
    console.print(f"new {report.new}, unchanged {report.unchanged}, refused {len(report.refused)}")


@integration_app.command("sync")
def integration_sync(integration_id: int, database_url: DatabaseUrl = None) -> None:
    """Fetch the PBX's employee accounts and map their logins to employees."""
    try:
        report = _run(database_url, lambda s: flows.sync_accounts(s, integration_id))
    except PbxError as exc:
        raise _fail(str(exc)) from None
    console.print(f"linked {report.linked}, created {report.created}, unchanged {report.unchanged}")


def _integration_view(services: Services, integration) -> dict[str, Any]:
    return {
        "id": integration.id,
        "kind": integration.kind,
        "name": integration.name,
        "enabled": integration.enabled,
        "inbound_url": flows.inbound_url(services, integration),
        "token": integration.token,
    }


# ---- API keys and imports -----------------------------------------------------------------------


@apikey_app.command("create")
def apikey_create(
    name: Annotated[str, typer.Option(help="who uses the key")] = "api",
    read_only: Annotated[bool, typer.Option("--read-only", help="the key may only read (GET)")] = False,
    as_json: AsJson = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Create a JSON API key; it is shown once (only its hash is kept)."""

    async def work(services: Services) -> tuple[int, str]:
        async with services.db.transaction() as session:
            key = await integrations.add_api_key(session, name, read_only=read_only)
            return (await integrations.api_key(session, key)).id, key

    key_id, key = _run(database_url, work)
    print(json.dumps({"id": key_id, "name": name, "read_only": read_only, "key": key}) if as_json else key)


@apikey_app.command("list")
def apikey_list(as_json: AsJson = False, database_url: DatabaseUrl = None) -> None:
    """The API keys: name, whether read-only, created, last used (to the minute), revoked."""

    async def work(services: Services):
        async with services.db.read() as session:
            return await integrations.list_api_keys(session)

    keys = _run(database_url, work)
    rows = [{"id": k.id, "name": k.name, "read_only": k.read_only, "created_at": k.created_at.isoformat(),
             "last_used_at": k.last_used_at and k.last_used_at.isoformat(),
             "revoked_at": k.revoked_at and k.revoked_at.isoformat()} for k in keys]  # fmt: skip
    if as_json:
        print(json.dumps(rows))
        return
    table = Table("id", "name", "access", "created", "last used", "revoked")
    for row in rows:
        access = "read" if row["read_only"] else "read, write"
        used, revoked = (row["last_used_at"] or "never")[:16], (row["revoked_at"] or "")[:16]
        table.add_row(str(row["id"]), row["name"], access, row["created_at"][:16], used, revoked)
    console.print(table)


@apikey_app.command("revoke")
def apikey_revoke(key_id: Annotated[int, typer.Argument(help="the key's id (apikey list)")],
                  database_url: DatabaseUrl = None) -> None:  # fmt: skip
    """Revoke an API key: every worker refuses it from the next request on."""

    async def work(services: Services) -> bool:
        async with services.db.transaction() as session:
            return await integrations.revoke_api_key(session, key_id)

    if not _run(database_url, work):
        raise _fail(f"no API key {key_id}, or it is revoked already")
    console.print(f"API key {key_id} revoked")


@app.command()
def replay(
    call: Annotated[int | None, typer.Option(help="only this call's requests")] = None,
    integration: Annotated[int | None, typer.Option(help="only this integration's requests")] = None,
    since: Annotated[datetime | None, typer.Option(help="received at or after (UTC if no zone)")] = None,
    until: Annotated[datetime | None, typer.Option(help="received before (UTC if no zone)")] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Run journaled PBX requests through again: the ones that failed are applied, the rest change nothing."""

    def progress(entries):
        return track(entries, description="replaying", console=console, transient=True)

    try:
        report = _run(database_url, lambda s: flows.replay(s, call_id=call, integration_id=integration,
                      since=since and utc(since), until=until and utc(until), progress=progress))  # fmt: skip
    except LookupError as exc:
        raise _fail(str(exc)) from None
    for entry_id, reason in report.failing:
        err.print(f"[yellow]request {entry_id}:[/yellow] {reason}")
    console.print(f"applied {report.applied}, unchanged {report.unchanged}, still failing {len(report.failing)}")
    if report.failing:
        raise typer.Exit(1)


@app.command()
def simulate(
    scenario: Annotated[str, typer.Argument(help="group, hunting, missed or outgoing")],
    integration: Annotated[
        int | None, typer.Option(help="which integration's PBX to play (default: the first on)")
    ] = None,
    url: Annotated[str | None, typer.Option(help="the running server (default: CALLBRIDGE_PUBLIC_URL)")] = None,
    phone: Annotated[str | None, typer.Option(help="the client's number (default: a random client's)")] = None,
    pause: Annotated[float, typer.Option(help="seconds between the steps a person would see")] = 1.5,
    database_url: DatabaseUrl = None,
) -> None:
    """Play a realistic call against a running server, as the integration's PBX would send it."""
    if scenario not in simulation.SCENARIOS:
        raise _fail(f"scenario must be one of {', '.join(simulation.SCENARIOS)}")

    async def work(services: Services):
        async with services.db.read() as session:
            candidates = [i for i in await integrations.list_integrations(session) if i.enabled]
            people = [e for e in await directory.list_employees(session) if e.active and (e.pbx_login or e.extension)]
            clients, _ = await directory.list_clients(session, limit=100)
            numbers = await directory.phones_of(session, [c.id for c in clients])
        chosen = next((i for i in candidates if integration in (None, i.id)), None)
        if chosen is None:
            raise LookupError("no such enabled integration: add one with `callbridge integration add`")
        if not people:
            raise LookupError("no employee has a PBX login or extension")
        number = phone or random.choice([p for ps in numbers.values() for p in ps] or ["+79990000000"])
        persons = [simulation.Person(e.pbx_login, e.extension) for e in people]
        base = (url or services.settings.public_url).rstrip("/")
        path = flows.inbound_url(services, chosen)[len(services.settings.public_url.rstrip("/")) :]
        fake = services.dialects[chosen.kind].fake
        if fake is None:
            raise LookupError(f"{chosen.kind} PBXs cannot be simulated")
        call = await simulation.play(base, path, fake, chosen.token, scenario, persons, number, pause)
        return chosen, number, call

    try:
        chosen, number, call = _run(database_url, work)
    except (LookupError, RuntimeError, httpx.HTTPError) as exc:
        raise _fail(str(exc)) from None
    console.print(f"{scenario} call {call} from {number} played as {chosen.kind} ({chosen.name})")


@app.command()
def password(
    login: Annotated[str, typer.Argument(help="the employee's PBX login or e-mail")],
    new_password: Annotated[str, typer.Option("--password", prompt=True, hide_input=True, confirmation_prompt=True)],
    database_url: DatabaseUrl = None,
) -> None:
    """Set an employee's workspace password (their open sessions end)."""

    async def work(services: Services) -> bool:
        async with services.db.transaction() as session:
            employee = await directory.employee_for_login(session, login)
            if employee is None:
                return False
            await directory.update_employee(session, employee.id, password_hash=hash_password(new_password))
            return True

    if not _run(database_url, work):
        raise _fail(f"no active employee with login or e-mail {login!r}")
    console.print(f"password set for {login}")


@app.command("import")
def import_command(
    what: Annotated[str, typer.Argument(help="employees or clients")],
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    database_url: DatabaseUrl = None,
) -> None:
    """Import employees or clients from CSV; bad rows are reported by line and skipped."""
    if what not in ("employees", "clients"):
        raise _fail("import what? employees or clients")
    report = _run(database_url, lambda s: import_csv(s, what, file, console))
    for line, problem in report.errors:
        err.print(f"[yellow]line {line}:[/yellow] {problem}")
    console.print(f"imported {report.imported} {what}, skipped {len(report.errors)}")
    if report.errors and not report.imported:
        raise typer.Exit(1)
