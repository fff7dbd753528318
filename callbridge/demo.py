"""Demo data: a small sales team, clients with phones and managers, deals, a PBX with the CRM rules on, an API
key, and two weeks of calls (see demo_history)."""

from __future__ import annotations

import shutil
import sys
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from . import demo_history, flows
from .automation import Rules
from .config import Settings
from .domain.phones import normalize
from .flows import inbound_url
from .services import Services
from .simulate import Person
from .store import directory, integrations
from .web.auth import hash_password

EMPLOYEES = [  # the PBX accounts of the ITooLabs spec example, plus a manager and an admin
    ("Иванова Дария", "daria", "101", "manager"),
    ("Петров Андрей", "andy", "102", "employee"),
    ("Семенов Михаил", "mike", "103", "employee"),
    ("Чижиков Сергей", "serg", "104", "employee"),
    ("Администратор", "admin", "100", "admin"),
]

CLIENTS = [  # name, phones, responsible login, deals (title, status, amount)
    (
        "Менеджер ЗАО Рога и копыта",
        ["+7 910 123-45-67"],
        "andy",
        [("Поставка копыт, 2 партия", "active", 420000)],
    ),
    (
        "ООО Ромашка",
        ["+7 495 123-45-67", "8 (916) 555-01-02"],
        "daria",
        [("Годовой контракт", "active", 1200000)],
    ),
    ("ИП Сидоров Пётр", ["+7 921 000-11-22"], "mike", [("Разовая закупка", "closed", 35000)]),
    ("АО Северный ветер", ["+7 812 300-40-50"], "serg", [("Пилотный проект", "active", 250000)]),
    ("ООО Вектор", ["+7 903 777-66-55"], "andy", []),
    ("Кузнецова Анна", ["+7 926 111-22-33"], None, [("Консультация", "active", None)]),
    ("ООО Тримекс", ["+7 343 222-33-44"], "daria", [("Расширение лицензий", "active", 640000)]),
    ("London Supplies Ltd", ["+44 20 7183 8750"], "mike", [("Export pilot", "active", 90000)]),
]


async def load(services: Services, history_days: int = 14) -> str:
    """Load the demo data once (with `history_days` of calls); a second call changes nothing."""
    async with services.db.transaction() as session:
        if await directory.list_employees(session):
            return "the database already has employees: demo data not loaded again"
        by_login = {}
        password = hash_password("demo")
        for name, login, extension, role in EMPLOYEES:
            employee = await directory.add_employee(session, name=name, pbx_login=login, extension=extension, role=role)
            employee.password_hash = password
            by_login[login] = employee.id
        region = services.settings.default_region
        for name, phones, responsible, deals in CLIENTS:
            client = await directory.add_client(
                session,
                name=name,
                phones=[normalize(p, region) for p in phones],
                responsible_id=by_login.get(responsible),
            )
            for title, status, amount in deals:
                await directory.add_deal(session, client_id=client.id, title=title, status=status, amount=amount)
        pbx = await integrations.add_integration(
            session,
            kind="cloudpbx",
            name="Demo cloud PBX",
            settings={"pbx_url": "http://127.0.0.1:9/sys/crm_api.wcgp", "pbx_token": "demo"},
        )
        key = await integrations.add_api_key(session, "demo")
        clients, _ = await directory.list_clients(session, limit=100)
        numbers = await directory.phones_of(session, [c.id for c in clients])
    logins = {employee_id: login for login, employee_id in by_login.items()}
    owners = {phone: _person(logins[c.responsible_id]) if c.responsible_id in logins else None
              for c in clients for phone in numbers.get(c.id, [])}  # fmt: skip
    # the rules a sales team would switch on, so the history shows what they make
    await flows.set_rules(services, pbx.id, Rules(
        missed_call_tasks=True, record_interactions=True, add_to_last_deal=True, leads_for_missed_unknown=True,
        senior_manager_id=by_login["daria"]))  # fmt: skip
    team = [_person(login) for _, login, _, role in EMPLOYEES if role != "admin"]
    zone = ZoneInfo(services.settings.timezone)
    calls = demo_history.plan(team, owners, days=history_days, now=datetime.now(UTC), zone=zone) if history_days else []
    played = await demo_history.play(services, pbx, calls)
    base = services.settings.public_url.rstrip("/")
    return (
        f"demo loaded: {len(EMPLOYEES)} employees, {len(CLIENTS)} clients, {played.calls} calls of the last "
        f"{history_days} days ({played.recordings} recordings)\n"
        f"workspace: {base} - sign in as andy or mike (password demo) to see the call cards: a card comes to the "
        f"employees whose phones ring; admin (also daria, serg) sees the settings, and no card unless their phone "
        f"rings\n"
        f"watch a call come in: in another terminal, in this folder, run\n"
        f"  {_command()} simulate group{_url_unless_default(base)}      (or hunting, missed, outgoing)\n"
        f"cloudpbx inbound URL: {inbound_url(services, pbx)}\n"
        f"crm_token: {pbx.token}\n"
        f"API key: {key}"
    )


def _url_unless_default(base: str) -> str:
    """`--url BASE` for `simulate` in another shell, which reads the public URL from its own settings."""
    return "" if base == Settings.model_fields["public_url"].default else f" --url {base}"


def _person(login: str) -> Person:
    extension = next(ext for _, lg, ext, _ in EMPLOYEES if lg == login)
    return Person(login, extension)


def _command() -> str:
    """`callbridge` as this shell can run it: by name if it is on PATH, else by its path (a venv not activated)."""
    here = Path(sys.argv[0]).resolve() if sys.argv and sys.argv[0].endswith("callbridge") else None
    on_path = shutil.which("callbridge")
    if here is None or (on_path and Path(on_path).resolve() == here):
        return "callbridge"
    try:
        return str(here.relative_to(Path.cwd()))
    except ValueError:
        return str(here)
