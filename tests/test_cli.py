"""The `callbridge` command as an admin uses it."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from callbridge.app import build_services
from callbridge.cli import app
from callbridge.config import Settings, sqlite_url
from callbridge.store import directory, integrations

runner = CliRunner()


@pytest.fixture
def db(tmp_path) -> str:
    return sqlite_url(tmp_path / "cli.db")


def cli(db: str, *args: str):
    return runner.invoke(app, [*args, "--database-url", db])


def query(db: str, work):
    async def main():
        services = build_services(Settings(database_url=db))
        try:
            async with services.db.read() as session:
                return await work(session)
        finally:
            await services.close()

    return asyncio.run(main())


def test_integration_add_list_remove(db):
    added = cli(
        db,
        "integration",
        "add",
        "cloudpbx",
        "--name",
        "MegaFon",
        "--pbx-url",
        "https://acme.megapbx.ru/sys/crm_api.wcgp",
        "--pbx-token",
        "secret",
        "--json",
    )
    assert added.exit_code == 0, added.output
    view = json.loads(added.stdout)
    assert view["kind"] == "cloudpbx" and view["inbound_url"] == f"http://127.0.0.1:8080/hooks/cloudpbx/{view['id']}"
    assert len(view["token"]) >= 32
    listed = json.loads(cli(db, "integration", "list", "--json").stdout)
    assert [i["id"] for i in listed] == [view["id"]]
    narrow = CliRunner(env={"COLUMNS": "40"}).invoke(app, ["integration", "list", "--database-url", db])
    assert view["inbound_url"] in narrow.stdout  # whole, to paste into the PBX's cabinet
    stored = query(db, lambda s: integrations.get_integration(s, view["id"]))
    assert stored.settings == {"pbx_url": "https://acme.megapbx.ru/sys/crm_api.wcgp", "pbx_token": "secret"}
    assert cli(db, "integration", "remove", str(view["id"])).exit_code == 0
    assert json.loads(cli(db, "integration", "list", "--json").stdout) == []
    missing = cli(db, "integration", "remove", str(view["id"]))
    assert missing.exit_code == 1 and "does not exist" in missing.stderr


def test_integration_add_explains_bad_settings(db):
    bad_url = cli(db, "integration", "add", "cloudpbx", "--name", "X", "--pbx-url", "megapbx", "--pbx-token", "t")
    assert bad_url.exit_code == 1 and "--pbx-url" in bad_url.stderr
    no_token = cli(db, "integration", "add", "cloudpbx", "--name", "X", "--pbx-url", "https://a.ru/x")
    assert no_token.exit_code == 1 and "--pbx-token" in no_token.stderr
    unknown = cli(db, "integration", "add", "nokia", "--name", "X")
    assert unknown.exit_code == 1 and "unknown kind" in unknown.stderr


def test_apikey_is_shown_once_and_stored_hashed(db):
    created = json.loads(cli(db, "apikey", "create", "--name", "crm", "--json").stdout)
    assert created["name"] == "crm" and created["key"].startswith("cb_")
    assert query(db, lambda s: integrations.api_key(s, created["key"]))
    assert query(db, lambda s: integrations.api_key(s, created["key"] + "x")) is None


def test_apikeys_are_listed_and_revoked_by_id(db):
    created = json.loads(cli(db, "apikey", "create", "--name", "1C", "--read-only", "--json").stdout)
    (listed,) = [k for k in json.loads(cli(db, "apikey", "list", "--json").stdout) if k["id"] == created["id"]]
    assert listed["name"] == "1C" and listed["read_only"] and listed["revoked_at"] is None
    assert "1C" in cli(db, "apikey", "list").stdout
    assert cli(db, "apikey", "revoke", str(created["id"])).exit_code == 0
    assert query(db, lambda s: integrations.api_key(s, created["key"])) is None
    again = cli(db, "apikey", "revoke", str(created["id"]))
    assert again.exit_code == 1 and "revoked already" in again.stderr


def test_import_keeps_good_rows_and_reports_bad_ones_by_line(db, tmp_path):
    employees = tmp_path / "employees.csv"
    employees.write_text(
        "name,extension,pbx_login,role\nАндрей,102,andy,employee\n,103,mike,employee\n"
        "Дария,101,daria,boss\nСергей,104,serg,manager\n",
        encoding="utf-8",
    )
    result = cli(db, "import", "employees", str(employees))
    assert result.exit_code == 0, result.output
    assert "imported 3 employees" not in result.stdout and "imported 2 employees, skipped 2" in result.stdout
    assert "line 3:" in result.stderr and "line 4:" in result.stderr and "role" in result.stderr

    clients = tmp_path / "clients.csv"
    clients.write_text(
        "name,phones,responsible\nООО Ромашка,+7 495 123-45-67; 8 916 555-01-02,andy\n"
        "Без номера,,\nДубль,84951234567,\nПлохой,звоните,\nЧужой,79001112233,nobody\n",
        encoding="utf-8",
    )
    result = cli(db, "import", "clients", str(clients))
    assert "imported 2 clients, skipped 3" in result.stdout
    assert "line 4:" in result.stderr and "already belongs" in result.stderr
    assert "line 5:" in result.stderr and "line 6:" in result.stderr
    found = query(db, lambda s: directory.lookup_caller(s, "+79165550102"))
    assert found.client_name == "ООО Ромашка" and found.responsible_login == "andy"


def test_demo_loads_once(db):
    first = cli(db, "demo")
    assert first.exit_code == 0 and "demo loaded" in first.stdout and "crm_token" in first.stdout
    assert "already" in cli(db, "demo").stdout
    assert len(query(db, directory.list_employees)) == 5


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_serve_as_a_user_runs_it(tmp_path):
    """`callbridge serve --demo` in a real process answers the PBX's lookup with the demo data."""
    exe = shutil.which("callbridge", path=str(Path(sys.executable).parent)) or "callbridge"
    env = os.environ | {"CALLBRIDGE_DATABASE_URL": sqlite_url(tmp_path / "serve.db")}
    port = free_port()
    process = subprocess.Popen(
        [exe, "serve", "--demo", "--port", str(port)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, "server did not start"
            time.sleep(0.2)
        (pbx,) = json.loads(
            subprocess.run(
                [exe, "integration", "list", "--json"], env=env, check=True, capture_output=True, text=True
            ).stdout
        )
        answer = httpx.post(
            f"{base}/hooks/cloudpbx/{pbx['id']}",
            data={"cmd": "contact", "phone": "79101234567", "crm_token": pbx["token"]},
        )
        assert answer.json() == {"contact_name": "Менеджер ЗАО Рога и копыта", "responsible": "andy"}
        # what it printed reaches this server, on its port: the workspace, the PBX's URL, and the call to play
        printed = ""
        while "API key:" not in printed:
            printed += process.stdout.readline()
        assert f"workspace: {base} -" in printed and f"inbound URL: {base}/hooks/cloudpbx/{pbx['id']}" in printed
        (hint,) = [line for line in printed.splitlines() if " simulate group" in line]
        quick = ["--pause", "0.05", "--ring", "0.05"]
        played = subprocess.run([*hint.split("(or")[0].split(), *quick], env=env, cwd=tmp_path, capture_output=True,
                                text=True)  # fmt: skip
        assert played.returncode == 0 and f"{base}/calls/" in played.stdout, played.stdout + played.stderr
    finally:
        process.terminate()
        process.wait(10)


def test_integration_rules_are_set_and_shown(db):
    cli(db, "demo")
    changed = cli(db, "integration", "set", "1", "missed_call_tasks=true", "listed_employee_ids=2,3",
                  "senior_manager_id=1")  # fmt: skip
    assert changed.exit_code == 0, changed.output
    shown = json.loads(cli(db, "integration", "show", "1", "--json").stdout)
    assert shown["missed_call_tasks"] is True and shown["listed_employee_ids"] == [2, 3]
    assert shown["senior_manager_id"] == 1 and shown["record_interactions"] is True  # the demo's, untouched
    cleared = cli(db, "integration", "set", "1", "senior_manager_id=none")
    assert cleared.exit_code == 0 and json.loads(cli(db, "integration", "show", "1", "--json").stdout)[
        "senior_manager_id"] is None  # fmt: skip
    bad = cli(db, "integration", "set", "1", "missed_call_tasks=maybe")
    assert bad.exit_code == 1 and "missed_call_tasks" in bad.stderr
    unknown = cli(db, "integration", "set", "1", "colour=red")
    assert unknown.exit_code == 1 and "NAME one of" in unknown.stderr
    missing = cli(db, "integration", "set", "99", "missed_call_tasks=true")
    assert missing.exit_code == 1 and "does not exist" in missing.stderr


def test_integration_add_uis_prints_the_notifications_to_create(db):
    added = cli(db, "integration", "add", "uis", "--name", "UIS", "--login", "crm@acme", "--password", "p",
                "--virtual-number", "+74950000000", "--json")  # fmt: skip
    assert added.exit_code == 0, added.output
    view = json.loads(added.stdout)
    assert view["inbound_url"] == f"http://127.0.0.1:8080/hooks/uis/{view['id']}/{view['token']}"
    events = [n["event_type"] for n in view["notifications"]]
    assert events == ["Входящий звонок на виртуальный номер", "Ожидание ответа", "Исходящий звонок",
                      "Начало разговора", "Завершение звонка", "Записанный разговор", "Потерянный звонок"]  # fmt: skip
    assert all(json.loads(n["body"])["call_session_id"] == "{{call_session_id}}" for n in view["notifications"])
    no_secret = cli(db, "integration", "add", "uis", "--name", "UIS", "--virtual-number", "+74950000000")
    assert no_secret.exit_code == 1 and "give --api-key, or --login and --password" in no_secret.stderr
    foreign = cli(db, "integration", "add", "uis", "--name", "UIS", "--pbx-token", "x", "--api-key", "k",
                  "--virtual-number", "+74950000000")  # fmt: skip
    assert foreign.exit_code == 1 and "uis does not take --pbx-token" in foreign.stderr


@pytest.mark.parametrize("kind", ["cloudpbx", "planfix", "uis", "helpdesk"])
def test_simulate_plays_every_scenario_against_a_running_server(tmp_path, kind, monkeypatch):
    from callbridge.store.tables import CallRow

    from .helpers import running_server

    db = sqlite_url(tmp_path / "sim.db")
    assert cli(db, "demo").exit_code == 0
    options = {"planfix": ["--pbx-url", "http://127.0.0.1:9/x", "--pbx-token", "t"], "helpdesk": [],
               "uis": ["--api-key", "k", "--virtual-number", "+74950000000"], "cloudpbx": None}  # fmt: skip
    if options[kind] is not None:
        cli(db, "integration", "add", kind, "--name", kind, *options[kind])
    with running_server(Settings(database_url=db, recordings_dir=str(tmp_path))) as base:
        monkeypatch.setenv("CALLBRIDGE_PUBLIC_URL", base)
        asyncio.run(_enable_all(db))
        integration = "1" if kind == "cloudpbx" else "2"
        for scenario in ("group", "hunting", "missed", "outgoing"):
            quick = ["--pause", "0", "--ring", "0"]
            played = cli(db, "simulate", scenario, "--integration", integration, *quick, "--recording")
            assert played.exit_code == 0, played.output
            assert f"{base}/calls/" in played.stdout  # where to see it
            assert ("nobody answered" if scenario == "missed" else "answered by ") in played.stdout
    rows = query(db, lambda s: _calls(s, CallRow))
    assert sorted(rows) == [("in", "answered"), ("in", "answered"), ("in", "missed"), ("out", "answered")]
    kept = query(db, lambda s: _recordings(s))
    assert len(kept) == 3  # one for each answered call, none for the missed one


async def _enable_all(db: str) -> None:
    services = build_services(Settings(database_url=db))
    async with services.db.transaction() as session:
        for integration in await integrations.list_integrations(session):
            integration.enabled = True  # the planfix PBX of this test is not there to answer `setup`
    await services.close()


async def _recordings(session):
    from sqlalchemy import select

    from callbridge.store.tables import CallRow, Recording

    query = select(Recording).join(CallRow, CallRow.id == Recording.call_id).where(
        Recording.status == "kept", ~CallRow.pbx_call_id.startswith("demo-"))  # fmt: skip
    return list(await session.scalars(query))


async def _calls(session, table):
    from sqlalchemy import select

    return [(c.direction, c.result) for c in await session.scalars(select(table))
            if not c.pbx_call_id.startswith("demo-")]  # the demo's own two weeks  # fmt: skip


def test_integration_backfill(db):
    from starlette.responses import PlainTextResponse

    from .fake_pbx import FakePbx
    from .helpers import serve_app
    from .integration.test_cloudpbx_outbound import HISTORY_CSV

    pbx = FakePbx(replies={"history": PlainTextResponse(HISTORY_CSV)})
    with serve_app(pbx.app()) as url:
        added = cli(db, "integration", "add", "cloudpbx", "--name", "PBX", "--pbx-url", f"{url}/api",
                    "--pbx-token", pbx.token, "--json")  # fmt: skip
        integration = str(json.loads(added.stdout)["id"])
        first = cli(db, "integration", "backfill", integration, "--period", "yesterday")
        second = cli(db, "integration", "backfill", integration, "--period", "yesterday")
    assert first.exit_code == 0 and "new 3, unchanged 0, refused 1" in first.stdout and "broken" in first.stderr
    assert "new 0, unchanged 3" in second.stdout
    assert pbx.received[0]["period"] == "yesterday"


def test_help_lists_every_command_without_loading_the_server():
    """`callbridge --help` answers at once: it imports none of the server's parts (seconds of imports)."""
    script = ("import sys\nfrom callbridge.cli import app\ntry:\n    app(['--help'])\nexcept SystemExit:\n    pass\n"
              "print(sorted(m for m in ('sqlalchemy', 'fastapi', 'httpx', 'callbridge.dialects') if m in sys.modules))")
    shown = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert shown.splitlines()[-1] == "[]"
    from callbridge.cli import COMMANDS, LazyCommands

    for name, (_, _, summary) in COMMANDS.items():
        assert name in shown
        command = LazyCommands().get_command(None, name)  # what `callbridge NAME --help` shows
        assert command.name == name and (command.help or "").splitlines()[0] == summary, name


def test_the_demo_shows_two_weeks_of_what_callbridge_does(db, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the recordings folder is ./recordings
    shown = cli(db, "demo")
    assert shown.exit_code == 0 and "simulate group" in shown.stdout and "password demo" in shown.stdout

    async def what_happened(session):
        from sqlalchemy import func, select

        from callbridge.store.tables import CallRow, Client, Recording, Task

        calls = list(await session.scalars(select(CallRow)))
        tasks = {(t.status, t.due_at is not None) for t in await session.scalars(select(Task))}
        leads = await session.scalar(select(func.count()).select_from(Client).where(Client.kind == "lead"))
        kept = list(await session.scalars(select(Recording).where(Recording.status == "kept")))
        return calls, tasks, leads, kept

    calls, tasks, leads, kept = query(db, what_happened)
    assert len({c.started_at.date() for c in calls}) >= 10  # spread over two weeks
    assert {(c.direction, c.result) for c in calls} >= {("in", "answered"), ("in", "missed"), ("out", "answered")}
    assert any(c.deal_id for c in calls) and leads > 0 and ("open", True) in tasks and ("done", True) in tasks
    assert kept and all((tmp_path / "recordings" / r.file).read_bytes()[:4] == b"RIFF" for r in kept)


def test_simulate_rings_long_enough_to_see_the_cards():
    """`simulate group` answered at once, so nobody saw a card ring: both phones ring 5 s (--ring) before one
    answers, and every scenario's phones ring that long before anyone answers or the call is missed."""
    from callbridge import simulate

    people = [simulate.Person("andy", "101"), simulate.Person("mike", "102"), simulate.Person("serg", "103")]
    group = simulate.steps("group", people, pause=1.5)
    assert (group[0].what, len(group[0].who), group[0].pause) == ("ring", 2, 5.0) and group[1].what == "answer"
    for scenario in simulate.SCENARIOS:
        rings = [step for step in simulate.steps(scenario, people, pause=0.1, ring=7.0) if step.what == "ring"]
        assert rings and all(step.pause == 7.0 for step in rings), scenario
