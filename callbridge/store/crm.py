"""What the CRM automations read and write: call links, contact records, missed-call tasks, new clients."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, exists, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from .statements import insert_for
from .tables import CallRow, Client, ClientPhone, Deal, Employee, Interaction, Task, utcnow


async def link_call(session: AsyncSession, call_id: int, **links: int | None) -> None:
    """Set the call's client, deal or employee as the automations decided."""
    calls = CallRow.__table__  # Core: it runs on most PBX events
    await session.execute(update(calls).where(calls.c.id == call_id).values(**links))


async def last_active_deal(session: AsyncSession, client_id: int) -> int | None:
    return await session.scalar(
        select(Deal.id)
        .where(Deal.client_id == client_id, Deal.status == "active")
        .order_by(Deal.created_at.desc(), Deal.id.desc())
        .limit(1)
    )


async def responsible_of(session: AsyncSession, client_id: int) -> int | None:
    return await session.scalar(select(Client.responsible_id).where(Client.id == client_id))


async def client_exists(session: AsyncSession, client_id: int) -> bool:
    return (await session.get(Client, client_id)) is not None


async def available_employee(session: AsyncSession, employee_id: int | None) -> Employee | None:
    """The employee, if they exist, are active and not away."""
    if employee_id is None:
        return None
    employee = await session.get(Employee, employee_id)
    return employee if employee is not None and employee.active and not employee.away else None


# ---- clients the automations create ------------------------------------------------------------


async def create_client_for_call(
    session: AsyncSession, *, call_id: int, phone: str, name: str, kind: str, responsible_id: int | None
) -> int:
    """A client (or lead) for an unknown number, remembered as created by this call."""
    client = Client(name=name, kind=kind, responsible_id=responsible_id, created_by_call_id=call_id)
    session.add(client)
    await session.flush()
    session.add(ClientPhone(client_id=client.id, e164=phone))
    await session.flush()
    return client.id


async def created_by_call(session: AsyncSession, call_id: int) -> Client | None:
    return (await session.scalars(select(Client).where(Client.created_by_call_id == call_id))).first()


async def remove_client(session: AsyncSession, client_id: int) -> None:
    await session.execute(delete(ClientPhone).where(ClientPhone.client_id == client_id))
    await session.execute(delete(Client).where(Client.id == client_id))


# ---- contact records ----------------------------------------------------------------------------


async def upsert_interaction(session: AsyncSession, call_id: int, values: dict[str, Any]) -> None:
    await session.execute(
        insert_for(session, Interaction)
        .values(call_id=call_id, **values)
        .on_conflict_do_update(index_elements=["call_id"], set_=values)
    )


async def drop_interaction(session: AsyncSession, call_id: int) -> None:
    await session.execute(delete(Interaction).where(Interaction.call_id == call_id))


async def interactions_of(session: AsyncSession, client_id: int) -> list[Interaction]:
    rows = await session.scalars(
        select(Interaction).where(Interaction.client_id == client_id).order_by(Interaction.at, Interaction.call_id)
    )
    return list(rows.all())


async def deal_calls_of(session: AsyncSession, client_id: int) -> dict[int, list[CallRow]]:
    """The calls the rules added to each of the client's deals (its history), oldest first, by deal id."""
    rows = await session.scalars(
        select(CallRow)
        .join(Deal, Deal.id == CallRow.deal_id)
        .where(Deal.client_id == client_id)
        .order_by(CallRow.started_at, CallRow.id)
    )
    history: dict[int, list[CallRow]] = {}
    for row in rows:
        history.setdefault(row.deal_id, []).append(row)
    return history


# ---- missed-call tasks --------------------------------------------------------------------------


def _same_caller(model, client_id: int | None, phone: str | None):
    return model.client_id == client_id if client_id is not None else model.phone == phone


async def reached_since(session: AsyncSession, *, client_id: int | None, phone: str | None, since: datetime) -> bool:
    """Whether an answered call with this client (or number) started after `since`."""
    if client_id is None and phone is None:
        return False
    return bool(
        await session.scalar(
            select(
                exists().where(
                    _same_caller(CallRow, client_id, phone),
                    CallRow.result == "answered",
                    CallRow.started_at > since,
                )
            )
        )
    )


async def put_task(session: AsyncSession, key: str, values: dict[str, Any], *, done: bool) -> None:
    """Create the task with this key or bring it in line with `values`; a done task is never reopened."""
    status = {"status": "done", "closed_at": utcnow()} if done else {}
    await session.execute(
        insert_for(session, Task)
        .values({"dedupe_key": key, "created_at": utcnow(), "status": "open"} | values | status)
        .on_conflict_do_update(index_elements=["dedupe_key"], set_=values | status)
    )


async def task_by_key(session: AsyncSession, key: str) -> Task | None:
    return (await session.scalars(select(Task).where(Task.dedupe_key == key))).first()


async def drop_open_task(session: AsyncSession, key: str) -> None:
    """Remove a task the automation made by mistake (the call turned out answered), unless it was worked on."""
    await session.execute(delete(Task).where(Task.dedupe_key == key, Task.status == "open"))


async def close_missed_tasks(
    session: AsyncSession, *, client_id: int | None, phone: str | None, before: datetime, when: datetime
) -> list[int]:
    """The client was reached: their missed-call tasks from before that call are done; their ids."""
    if client_id is None and phone is None:
        return []
    statement = _CLOSE_CLIENTS_MISSED if client_id is not None else _CLOSE_NUMBERS_MISSED
    closed = await session.execute(
        statement, {"caller_client": client_id, "caller_phone": phone, "before": before, "when": when}
    )
    return list(closed.scalars())


def _close_missed(same_caller):
    """Built once: every answered call's events run it. EXISTS looks up only the caller's own tasks' calls."""
    return (
        update(Task)
        .where(
            Task.kind == "missed_call",
            Task.status == "open",
            same_caller,
            exists().where(CallRow.id == Task.call_id, CallRow.started_at < bindparam("before")),
        )
        .values(status="done", closed_at=bindparam("when"))
        .returning(Task.id)
    )


_CLOSE_CLIENTS_MISSED = _close_missed(Task.client_id == bindparam("caller_client"))
_CLOSE_NUMBERS_MISSED = _close_missed(Task.phone == bindparam("caller_phone"))
