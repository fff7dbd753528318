"""Demo data: a small sales team, clients with phones and managers, deals, a PBX and an API key."""

from __future__ import annotations

from .domain.phones import normalize
from .flows import inbound_url
from .services import Services
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


async def load(services: Services) -> str:
    """Load the demo data once; a second call changes nothing."""
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
    return (
        f"demo loaded: {len(EMPLOYEES)} employees, {len(CLIENTS)} clients\n"
        f"cloudpbx inbound URL: {inbound_url(services, pbx)}\n"
        f"crm_token: {pbx.token}\n"
        f"API key: {key}\n"
        f"workspace: sign in as admin (or daria, andy, mike, serg) with password demo"
    )
