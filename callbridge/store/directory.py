"""Employees, clients, their phones, deals and tasks, and the caller lookup."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Integer, String, bindparam, func, insert, literal, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ..domain.ids import own_id
from ..domain.pbx import CallerInfo
from .postgres import PostgresReader
from .sqlite import SqliteSession
from .statements import execute_hot
from .tables import Client, ClientPhone, Deal, Employee, EmployeeGroup, GroupMember, Task


class PhoneTaken(ValueError):
    """A phone can belong to one client only, so a lookup never has to guess."""


CALLER = (  # built once: on a ringing call, building the statement would cost more than running it
    select(
        Client.id,
        Client.name,
        Employee.id,
        Employee.name,
        Employee.pbx_login,
        Employee.extension,
        Employee.active & ~Employee.away,
    )
    .select_from(ClientPhone)
    .join(Client, Client.id == ClientPhone.client_id)
    .outerjoin(Employee, Employee.id == Client.responsible_id)
    .where(ClientPhone.e164 == bindparam("e164"))
)


async def lookup_caller(session: PostgresReader | SqliteSession | AsyncSession, e164: str) -> CallerInfo | None:
    """The client owning this number and their responsible manager: one indexed query."""
    rows = await execute_hot(session, CALLER, {"e164": e164})
    if not rows:
        return None
    return CallerInfo(*rows[0][:6], responsible_available=bool(rows[0][6]))


# ---- employees ----------------------------------------------------------------------------------


async def add_employee(
    session: AsyncSession,
    *,
    name: str,
    extension: str | None = None,
    pbx_login: str | None = None,
    email: str | None = None,
    role: str = "employee",
) -> Employee:
    employee = Employee(name=name, extension=extension, pbx_login=pbx_login, email=email, role=role)
    session.add(employee)
    await session.flush()
    return employee


async def list_employees(session: AsyncSession) -> list[Employee]:
    return list((await session.scalars(select(Employee).order_by(Employee.id))).all())


async def get_employee(session: AsyncSession, employee_id: int) -> Employee | None:
    return await session.get(Employee, employee_id)


_ENDS_SESSIONS = ("role", "password_hash", "active")  # a change of any of these signs the employee out everywhere


async def update_employee(session: AsyncSession, employee_id: int, **values) -> Employee | None:
    employee = await session.get(Employee, employee_id)
    if employee is not None:
        changed = any(getattr(employee, name) != values[name] for name in _ENDS_SESSIONS if name in values)
        for name, value in values.items():
            setattr(employee, name, value)
        if changed:
            employee.session_version += 1
        await session.flush()
    return employee


async def end_sessions(session: AsyncSession, employee_id: int) -> None:
    """Every workspace session of this employee ends (a logout ends them on every device)."""
    await session.execute(
        update(Employee).where(Employee.id == employee_id).values(session_version=Employee.session_version + 1)
    )


def employee_named(key, own):
    """The employee a PBX user key names, as a value inside another statement (a call's legs name theirs as they
    are written): the one whose id it carries (`own`, see `own_id`), else the first whose login it is, else the
    first whose extension it is."""

    def first(condition):
        return select(func.min(Employee.id)).where(condition).scalar_subquery()

    return func.coalesce(first(Employee.id == own), first(Employee.pbx_login == key), first(Employee.extension == key))


async def employee_by_key(session: AsyncSession, key: str) -> int | None:
    """The employee a PBX user key (login, extension or `id:<n>`) names."""
    return await session.scalar(select(employee_named(literal(key, String), literal(own_id(key), Integer))))


async def find_employee(session: AsyncSession, *, login: str | None, email: str | None) -> Employee | None:
    conditions = []
    if login:
        conditions.append(Employee.pbx_login == login)
    if email:
        conditions.append(Employee.email == email)
    if not conditions:
        return None
    return (await session.scalars(select(Employee).where(or_(*conditions)).order_by(Employee.id))).first()


async def add_group(session: AsyncSession, *, name: str, employee_ids: Iterable[int]) -> EmployeeGroup:
    group = EmployeeGroup(name=name)
    session.add(group)
    await session.flush()
    session.add_all(GroupMember(group_id=group.id, employee_id=i) for i in dict.fromkeys(employee_ids))
    await session.flush()
    return group


async def list_groups(session: AsyncSession) -> list[tuple[EmployeeGroup, list[int]]]:
    groups = list(await session.scalars(select(EmployeeGroup).order_by(EmployeeGroup.id)))
    members: dict[int, list[int]] = {g.id: [] for g in groups}
    for group_id, employee_id in await session.execute(
        select(GroupMember.group_id, GroupMember.employee_id).order_by(GroupMember.employee_id)
    ):
        members[group_id].append(employee_id)
    return [(g, members[g.id]) for g in groups]


async def members_of(session: AsyncSession, group_ids: Iterable[int]) -> tuple[list[int], set[int]]:
    """The employees of these groups, and which of the groups do not exist."""
    group_ids = set(group_ids)
    known = set(await session.scalars(select(EmployeeGroup.id).where(EmployeeGroup.id.in_(group_ids))))
    rows = await session.scalars(
        select(GroupMember.employee_id).where(GroupMember.group_id.in_(known)).order_by(GroupMember.employee_id)
    )
    return list(dict.fromkeys(rows)), group_ids - known


async def existing_employees(session: AsyncSession, ids: Iterable[int]) -> set[int]:
    return set(await session.scalars(select(Employee.id).where(Employee.id.in_(set(ids)))))


# ---- clients ------------------------------------------------------------------------------------


async def add_client(
    session: AsyncSession, *, name: str, phones: Iterable[str], responsible_id: int | None = None
) -> Client:
    """A client with its (already normalised) phones; PhoneTaken if one belongs to someone else."""
    phones = list(dict.fromkeys(phones))
    if phones:
        taken = await taken_phones(session, phones)
        if taken:
            raise PhoneTaken(", ".join(sorted(taken)))
    client = Client(name=name, responsible_id=responsible_id)
    session.add(client)
    await session.flush()
    session.add_all(ClientPhone(client_id=client.id, e164=p) for p in phones)
    await session.flush()
    return client


async def taken_phones(session: AsyncSession, phones: list[str]) -> list[str]:
    """Which of these numbers belong to a client already."""
    return list(await session.scalars(select(ClientPhone.e164).where(ClientPhone.e164.in_(phones))))


# rows per insert whose ids come back in order: SQLAlchemy sorts the returned rows in time quadratic in their
# number (2,000 at once took most of an import's time)
_RETURNING_CHUNK = 100
_CLIENTS = Client.__table__  # Core inserts: the ORM's bulk path costs more than the rows themselves


async def add_clients_bulk(session: AsyncSession, clients: list[tuple[str, list[str], int | None]]) -> list[int]:
    """Many (name, phones, responsible id) at once, for imports of a whole CRM; phones must be free."""
    rows = [{"name": name, "responsible_id": responsible} for name, _, responsible in clients]
    ids: list[int] = []
    for start in range(0, len(rows), _RETURNING_CHUNK):
        chunk = rows[start : start + _RETURNING_CHUNK]
        ids += await session.scalars(insert(_CLIENTS).returning(_CLIENTS.c.id, sort_by_parameter_order=True), chunk)
    phones = [{"client_id": i, "e164": p} for i, (_, numbers, _) in zip(ids, clients, strict=True) for p in numbers]
    if phones:
        await session.execute(insert(ClientPhone.__table__), phones)
    return ids


async def list_clients(
    session: AsyncSession, *, phone: str | None = None, limit: int = 50, offset: int = 0
) -> tuple[list[Client], int]:
    query = select(Client)
    if phone is not None:
        query = query.join(ClientPhone, ClientPhone.client_id == Client.id).where(ClientPhone.e164 == phone)
    total = await session.scalar(select(func.count()).select_from(query.subquery()))
    rows = await session.scalars(query.order_by(Client.id).limit(limit).offset(offset))
    return list(rows.all()), int(total or 0)


async def phones_of(session: AsyncSession, client_ids: Iterable[int]) -> dict[int, list[str]]:
    result: dict[int, list[str]] = {}
    rows = await session.execute(
        select(ClientPhone.client_id, ClientPhone.e164)
        .where(ClientPhone.client_id.in_(list(client_ids)))
        .order_by(ClientPhone.id)
    )
    for client_id, e164 in rows:
        result.setdefault(client_id, []).append(e164)
    return result


# The client who owns the number given as `number`, as a value inside another statement (the call's update).
def client_of_number(number):
    """The client who owns a number, as a value inside another statement."""
    return select(ClientPhone.client_id).where(ClientPhone.e164 == number).scalar_subquery()


CLIENT_OF_NUMBER = client_of_number(bindparam("number"))


async def owner_of(session: AsyncSession, e164: str) -> int | None:
    """The client who owns the number, if anyone does."""
    return await session.scalar(select(ClientPhone.client_id).where(ClientPhone.e164 == e164))


async def count_clients(session: AsyncSession) -> int:
    return int(await session.scalar(select(func.count(Client.id))) or 0)


# ---- deals and tasks ----------------------------------------------------------------------------


async def add_deal(
    session: AsyncSession, *, client_id: int, title: str, status: str = "active", amount: int | None = None
) -> Deal:
    deal = Deal(client_id=client_id, title=title, status=status, amount=amount)
    session.add(deal)
    await session.flush()
    return deal


async def deals_of(session: AsyncSession, client_ids: Iterable[int]) -> dict[int, list[Deal]]:
    result: dict[int, list[Deal]] = {}
    rows = await session.scalars(
        select(Deal).where(Deal.client_id.in_(list(client_ids))).order_by(Deal.created_at.desc(), Deal.id.desc())
    )
    for deal in rows:
        result.setdefault(deal.client_id, []).append(deal)
    return result


async def list_tasks(
    session: AsyncSession,
    *,
    status: str | None = None,
    employee_id: int | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[Task], int]:
    query = select(Task)
    if status:
        query = query.where(Task.status == status)
    if employee_id is not None:
        query = query.where(Task.employee_id == employee_id)
    total = await session.scalar(select(func.count()).select_from(query.subquery()))
    # open ones by when they are due (overdue first, undated last), done ones newest first
    order = (Task.due_at.is_(None), Task.due_at, Task.id.desc()) if status == "open" else (Task.id.desc(),)
    rows = await session.scalars(query.order_by(*order).limit(limit).offset(offset))
    return list(rows.all()), int(total or 0)


# ---- the workspace --------------------------------------------------------------------------------


async def holder_of(session: AsyncSession, column: str, value: str, but: int) -> Employee | None:
    """Another active employee who has this extension or PBX login already (calls would go to either)."""
    query = select(Employee).where(getattr(Employee, column) == value, Employee.id != but, Employee.active)
    return (await session.scalars(query.order_by(Employee.id))).first()


async def employee_for_login(session: AsyncSession, login: str) -> Employee | None:
    """The active employee signing in with this PBX login or e-mail."""
    query = select(Employee).where(or_(Employee.pbx_login == login, Employee.email == login), Employee.active)
    return (await session.scalars(query.order_by(Employee.id))).first()


async def get_client(session: AsyncSession, client_id: int | None) -> Client | None:
    """The client (none for no id: a call or task of no client's)."""
    return await session.get(Client, client_id) if client_id is not None else None


async def search_clients(
    session: AsyncSession,
    text: str,
    phone: str | None,
    limit: int = 50,
    number_parts: tuple[str, ...] = (),
    offset: int = 0,
) -> tuple[list[Client], int]:
    """A page of the clients whose name contains the text (in any case, any alphabet), who own the number, or one
    of whose numbers contains one of `number_parts`, by name; and how many there are in all."""
    query = select(Client)
    by_name = Client.name.ilike(f"%{text}%")
    if phone or number_parts:
        owns = [ClientPhone.e164 == phone] if phone else []
        owns += [ClientPhone.e164.contains(part, autoescape=True) for part in number_parts]
        query = query.outerjoin(ClientPhone, ClientPhone.client_id == Client.id).where(or_(by_name, *owns))
    elif text:
        query = query.where(by_name)
    matching = query.with_only_columns(Client.id).distinct().subquery()
    total = await session.scalar(select(func.count()).select_from(matching))
    page = query.distinct().order_by(Client.name, Client.id).limit(limit).offset(offset)
    return list((await session.scalars(page)).all()), int(total or 0)


async def client_names(session: AsyncSession, ids: Iterable[int]) -> dict[int, str]:
    ids = set(ids)
    if not ids:
        return {}
    return {i: name for i, name in await session.execute(select(Client.id, Client.name).where(Client.id.in_(ids)))}


async def add_phone(session: AsyncSession, client_id: int, e164: str) -> None:
    if await session.scalar(select(ClientPhone.id).where(ClientPhone.e164 == e164)):
        raise PhoneTaken(e164)
    session.add(ClientPhone(client_id=client_id, e164=e164))
    await session.flush()


async def get_deal(session: AsyncSession, deal_id: int) -> Deal | None:
    return await session.get(Deal, deal_id)


async def get_task(session: AsyncSession, task_id: int) -> Task | None:
    return await session.get(Task, task_id)


async def set_deal_status(session: AsyncSession, deal_id: int, status: str) -> None:
    deal = await session.get(Deal, deal_id)
    if deal is not None:
        deal.status = status


async def set_task_status(session: AsyncSession, task_id: int, status: str, when) -> None:
    task = await session.get(Task, task_id)
    if task is not None:
        task.status, task.closed_at = status, (when if status == "done" else None)


async def open_tasks_of_client(session: AsyncSession, client_id: int) -> list[Task]:
    query = select(Task).where(Task.client_id == client_id, Task.status == "open").order_by(Task.id.desc())
    return list((await session.scalars(query)).all())
