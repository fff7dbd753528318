"""The commands of their own: serve, migrate, demo data, replay, simulate, passwords, imports. Each imports the
server's parts it uses when it runs, so that its `--help` answers at once."""

from __future__ import annotations

import asyncio
import stat
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from .common import DatabaseUrl, cli_settings, console, err, fail, run

if TYPE_CHECKING:
    from ..services import Services

app = typer.Typer(add_completion=False)  # `callbridge` (cli/__init__.py) is the command; these are its parts


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
    outbox_in_process: Annotated[bool, typer.Option(
        "--outbox-in-process", help="deliver webhooks in the server's process, not in one of their own")] = False,
) -> None:
    """Run the server (SQLite ./callbridge.db unless --database-url says otherwise)."""
    import os
    import tempfile

    import uvicorn

    from .. import demo as demo_data
    from .. import metrics
    from ..app import create_app
    from ..config import key_file
    from ..recording_files import recording_files
    from ..server import uvicorn_options
    from ..web.auth import KeyFileError, secret_key

    settings = cli_settings(database_url).model_copy(update={"outbox_apart": not outbox_in_process})
    scheme = "https" if certfile else "http"
    if "public_url" not in settings.model_fields_set:  # what the URLs it prints (the demo's, the PBX's) reach
        settings = settings.model_copy(update={"public_url": f"{scheme}://{reachable(host)}:{port}"})
    if (certfile is None) != (keyfile is None):
        raise fail("give both --certfile and --keyfile, or neither")
    if workers > 1 and settings.database_url.startswith("sqlite"):
        raise fail("several workers share one database through PostgreSQL: give --database-url postgresql+asyncpg://…")
    try:
        recording_files(settings)
    except ValueError as exc:
        raise fail(str(exc)) from None
    for shared in shared_with_others(settings):
        fix = f"chmod {'700' if shared.is_dir() else '600'} {shared}"
        why = "it holds tokens, passwords or calls"
        raise fail(f"{shared} can be read by other users of this machine, and {why}: run `{fix}`, then start again")
    run(database_url, lambda s: asyncio.sleep(0), settings)  # migrate once, before any worker starts
    if demo:
        console.print(run(database_url, demo_data.load, settings))
    console.print(f"callbridge on {scheme}://{host}:{port}  (API docs: {scheme}://{host}:{port}/docs)")
    tls = {"ssl_certfile": str(certfile), "ssl_keyfile": str(keyfile)} if certfile and keyfile else {}
    options = uvicorn_options(settings) | tls | {"host": host, "port": port, "log_level": log_level}
    try:
        secret_key(settings.secret_key.get_secret_value(), key_file(settings))  # made once, before any worker
    except KeyFileError as exc:
        raise fail(str(exc)) from None
    if workers == 1:
        uvicorn.run(create_app(settings), **options)
        return
    # worker processes build their app from the environment, and keep their figures in files that /metrics sums
    with tempfile.TemporaryDirectory(prefix="callbridge-metrics-") as figures:
        os.environ |= {"CALLBRIDGE_DATABASE_URL": settings.database_url, "CALLBRIDGE_WORKERS": str(workers),
                       "CALLBRIDGE_OUTBOX_APART": str(settings.outbox_apart),
                       "CALLBRIDGE_PUBLIC_URL": settings.public_url, metrics.SHARED: figures}
        uvicorn.run("callbridge.app:create_app", factory=True, workers=workers, **options)


def shared_with_others(settings) -> list[Path]:
    """The SQLite files and the recordings folder that users other than their owner may read or enter."""
    from ..config import sqlite_path

    database = sqlite_path(settings.database_url)
    paths = [Path(f"{database}{suffix}") for suffix in ("", "-wal", "-shm")] if database else []
    if not settings.recordings_url:
        paths.append(Path(settings.recordings_dir))
    return [path for path in paths if path.exists() and path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO)]


def reachable(host: str) -> str:
    """The address to reach a server listening on `host` at: this machine's for all of its addresses."""
    if host in ("0.0.0.0", "::", ""):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


@app.command()
def migrate(database_url: DatabaseUrl = None) -> None:
    """Create or upgrade the database schema."""
    run(database_url, lambda s: asyncio.sleep(0))
    console.print("schema is up to date")


@app.command()
def demo(database_url: DatabaseUrl = None) -> None:
    """Load demo employees, clients with phones and managers, deals, a demo integration and an API key."""
    from .. import demo as demo_data

    console.print(run(database_url, demo_data.load))


@app.command()
def replay(
    call: Annotated[int | None, typer.Option(help="only this call's requests")] = None,
    integration: Annotated[int | None, typer.Option(help="only this integration's requests")] = None,
    since: Annotated[datetime | None, typer.Option(help="received at or after (UTC if no zone)")] = None,
    until: Annotated[datetime | None, typer.Option(help="received before (UTC if no zone)")] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Run journaled PBX requests through again: the ones that failed are applied, the rest change nothing."""
    from rich.progress import track

    from .. import flows
    from ..dialects.base import utc

    def progress(entries):
        return track(entries, description="replaying", console=console, transient=True)

    try:
        report = run(database_url, lambda s: flows.replay(s, call_id=call, integration_id=integration,
                      since=since and utc(since), until=until and utc(until), progress=progress))  # fmt: skip
    except LookupError as exc:
        raise fail(str(exc)) from None
    for entry_id, reason in report.failing:
        err.print(f"[yellow]request {entry_id}:[/yellow] {reason}")
    console.print(f"applied {report.applied}, unchanged {report.unchanged}, still failing {len(report.failing)}")
    if report.rules_rerun:
        console.print(f"CRM rules run again on {report.rules_rerun} call(s): {report.rules_fixed} now pass")
        if report.rules_fixed < report.rules_rerun:
            err.print("[yellow]the CRM rules still fail on some calls; see `problems` on each call[/yellow]")
    if report.failing or report.rules_fixed < report.rules_rerun:
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
    ring: Annotated[float, typer.Option(help="seconds the phones ring before anyone answers (or nobody does)")] = 5.0,
    recording: Annotated[bool, typer.Option(help="attach a short recording (made here) to an answered call")] = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Play a realistic call against a running server, as the integration's PBX would send it."""
    import random

    import httpx

    from .. import flows
    from .. import simulate as simulation
    from ..store import calls as call_store
    from ..store import directory, integrations

    if scenario not in simulation.SCENARIOS:
        raise fail(f"scenario must be one of {', '.join(simulation.SCENARIOS)}")

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
        call = await simulation.play(base, path, fake, chosen.token, scenario, persons, number, pause, ring)
        async with services.db.read() as session:
            try:
                row = await call_store.get_call(session, await call_store.find_call(session, chosen.id, call))
            except LookupError:
                return chosen, number, None, "(not in this database: is the server on another one?)"
            answered = await directory.get_employee(session, row.employee_id) if row.answered_at else None
        if recording and answered:
            from ..demo_history import keep_recording, tone

            await keep_recording(services, row.id, tone(seconds=3, seed=row.id % 6))
        return chosen, number, answered, f"{base}/calls/{row.id}"

    try:
        chosen, number, answered, link = run(database_url, work)
    except (LookupError, RuntimeError, httpx.HTTPError) as exc:
        raise fail(str(exc)) from None
    outcome = f"answered by {answered.name}" if answered else "nobody answered"
    console.print(f"{scenario} call from {number} played as {chosen.kind} ({chosen.name}): {outcome}\n{link}")


@app.command()
def password(
    login: Annotated[str, typer.Argument(help="the employee's PBX login or e-mail")],
    new_password: Annotated[str, typer.Option("--password", prompt=True, hide_input=True, confirmation_prompt=True)],
    database_url: DatabaseUrl = None,
) -> None:
    """Set an employee's workspace password (their open sessions end)."""
    from ..store import directory
    from ..web.auth import hash_password

    async def work(services: Services) -> bool:
        async with services.db.transaction() as session:
            employee = await directory.employee_for_login(session, login)
            if employee is None:
                return False
            await directory.update_employee(session, employee.id, password_hash=hash_password(new_password))
            return True

    if not run(database_url, work):
        raise fail(f"no active employee with login or e-mail {login!r}")
    console.print(f"password set for {login}")


@app.command("import")
def import_command(
    what: Annotated[str, typer.Argument(help="employees or clients")],
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    database_url: DatabaseUrl = None,
) -> None:
    """Import employees or clients from CSV; bad rows are reported by line and skipped."""
    from ..importer import import_csv

    if what not in ("employees", "clients"):
        raise fail("import what? employees or clients")
    report = run(database_url, lambda s: import_csv(s, what, file, console))
    for line, problem in report.errors:
        err.print(f"[yellow]line {line}:[/yellow] {problem}")
    console.print(f"imported {report.imported} {what}, skipped {len(report.errors)}")
    if report.errors and not report.imported:
        raise typer.Exit(1)
