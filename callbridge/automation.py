"""The CRM automations: what happens in the CRM when a call happens.

Rules do not react to single events: after every change to a call they bring the CRM in line with
the call as it now stands (a missed-call task exists while the call is missed, a contact record
mirrors the call, ...). Duplicates and events in any order therefore end in the same CRM state.
They run inside the transaction that updates the call.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncSession

from .domain.phones import display
from .store import calls as call_store
from .store import crm
from .store.calls import CallView
from .store.tables import EntityId, utcnow


class Rules(BaseModel):
    """One integration's automations (the RBS plugin options of seed 001, the scenarios of seed 004)."""

    notify_responsible_only: bool = Field(
        False,
        description="the call card goes to the client's responsible manager; unknown number: to the "
        "employee whose phone rang; no such employee: to the listed employees",
    )
    record_interactions: bool = Field(False, description="a contact record on the client for every call")
    add_to_last_deal: bool = Field(False, description="add the call to the client's last active deal")
    missed_call_tasks: bool = Field(
        False,
        description="a 'missed call' task for the responsible manager (unknown number: the first listed "
        "employee); it closes itself when the client is reached",
    )
    missed_call_due_minutes: int = Field(
        60, ge=1, le=7 * 24 * 60, description="a missed call's task is due this many minutes after the call ended"
    )
    callback_sla_minutes: int = Field(
        30, ge=1, le=7 * 24 * 60, description="a missed call returned within this many minutes counts as in time"
    )
    missed_call_owner: Literal["responsible", "last_rung", "default"] = Field(
        "responsible",
        description="who a missed call's task goes to: the client's responsible manager, the employee whose "
        "phone rang last, or the default owner (per virtual number, then default_owner_id)",
    )
    default_owner_id: EntityId | None = Field(None, description="the default owner of missed calls")
    owners_by_virtual_number: dict[str, EntityId] = Field(
        default_factory=dict, description="default owners of missed calls per virtual number (E.164 -> employee id)"
    )
    unknown_numbers_client_id: EntityId | None = Field(
        None, description="records of unknown numbers go to this client instead of a new one"
    )
    leads_for_missed_unknown: bool = Field(False, description="a lead for a missed call from an unknown number")
    senior_manager_id: EntityId | None = Field(None, description="who gets those leads")
    clients_for_outgoing_unknown: bool = Field(False, description="a client for an outgoing call to an unknown number")
    default_employee_id: EntityId | None = Field(None, description="calls of PBX employees not mapped to anyone")
    listed_employee_ids: list[EntityId] = Field(default_factory=list, description="the integration's employees")
    routing_fallback_employee_id: EntityId | None = Field(
        None, description="routed to in the caller lookup when the responsible manager is away"
    )
    deadline_route: str | None = Field(
        None, description="the PBX login or extension a caller lookup names when the store does not answer in time"
    )
    ticket_per_call: bool = Field(False, description="a ticket for every call, assigned to the call's employee")
    ticket_department: str | None = Field(None, description="the department tickets are created in")

    @property
    def creates_clients(self) -> bool:
        """Whether any rule makes a client or lead for an unknown number."""
        return (
            self.leads_for_missed_unknown
            or self.clients_for_outgoing_unknown
            or (self.record_interactions and self.unknown_numbers_client_id is None)
        )


MISSED_CALL = "missed_call"
TICKET = "ticket"


async def reconcile(session: AsyncSession, rules: Rules, call: CallView, made: list | None = None) -> CallView:
    """Bring the CRM in line with this call as it now stands; returns the call with what the rules linked.

    What a rule that is off would make is left alone: turning a rule off keeps the records it made. If `made` is
    given, what the rules created or closed is added to it as (webhook event type, subject) pairs.
    """
    call_id = call.id
    client_id = await _client_of(session, rules, call, made)
    deal_id = await crm.last_active_deal(session, client_id) if rules.add_to_last_deal and client_id else None
    employee_id = call.employee_id or rules.default_employee_id
    links = {"client_id": client_id, "deal_id": deal_id, "employee_id": employee_id, "problem": None}
    if any(getattr(call, name) != value for name, value in links.items()):
        await crm.link_call(session, call_id, **links)
        call = replace(call, **links)
    ended = call.state == "ended"

    if rules.record_interactions and client_id is not None and ended:
        interaction = {"client_id": client_id, "deal_id": deal_id, "employee_id": employee_id, "at": call.started_at,
                       "direction": call.direction, "result": call.result, "talk_seconds": call.talk_seconds,
                       "recording_url": call.recording_url}  # fmt: skip
        await crm.upsert_interaction(session, call_id, interaction)
    elif rules.record_interactions:
        await crm.drop_interaction(session, call_id)

    key = f"{MISSED_CALL}:{call_id}"
    if rules.missed_call_tasks and ended and call.result == "missed" and call.direction != "out":
        await _missed_call_task(session, rules, call, key, client_id, made)
    elif rules.missed_call_tasks:
        await crm.drop_open_task(session, key)
    if rules.ticket_per_call:
        number = display(call.phone) if call.phone else "номер скрыт"
        title = f"{'Входящий' if call.direction != 'out' else 'Исходящий'} звонок: {number}"
        assignee = await assignee_of(session, call_id)
        await _put_task(session, f"{TICKET}:{call_id}", {"title": title, "kind": TICKET, "employee_id": assignee,
                        "client_id": client_id, "call_id": call_id, "phone": call.phone,
                        "department": rules.ticket_department}, False, made)  # fmt: skip
    if rules.missed_call_tasks and call.result == "answered" and call.started_at is not None:
        closed = await crm.close_missed_tasks(
            session, client_id=client_id, phone=call.phone, before=call.started_at, when=utcnow()
        )
        _note(made, [("task.closed", {"task_id": task_id}) for task_id in closed])
    return call


async def _put_task(session: AsyncSession, key: str, values: dict, done: bool, made: list | None) -> None:
    """`crm.put_task`, noting in `made` whether it made the task or closed it (asked only when someone listens)."""
    before = await crm.task_by_key(session, key) if made is not None else None
    await crm.put_task(session, key, values, done=done)
    if made is None:
        return
    after = await crm.task_by_key(session, key)
    if before is None:
        made.append(("task.created", {"task_id": after.id}))
    if after.status == "done" and (before is None or before.status != "done"):
        made.append(("task.closed", {"task_id": after.id}))


def _note(made: list | None, events: list) -> None:
    if made is not None:
        made.extend(events)


async def _client_of(session: AsyncSession, rules: Rules, call: CallView, made: list | None = None) -> int | None:
    """The call's client: the owner of the number, a client the rules create for it, or the fixed one."""
    made = await crm.created_by_call(session, call.id) if rules.creates_clients else None
    if call.client_id is not None and (made is None or made.id != call.client_id):
        return call.client_id  # a number someone already owned
    kind = _new_client_kind(rules, call)
    if made is not None and made.kind != kind:
        await crm.remove_client(session, made.id)  # the call turned out otherwise (a missed call answered after all)
        made = None
    if made is not None:
        return made.id
    if kind is not None and call.phone:
        responsible = rules.senior_manager_id if kind == "lead" else call.employee_id or rules.default_employee_id
        name = ("Лид " if kind == "lead" else "") + display(call.phone)
        client_id = await crm.create_client_for_call(
            session, call_id=call.id, phone=call.phone, name=name, kind=kind, responsible_id=responsible
        )
        _note(made, [("client.created", {"client_id": client_id})])
        return client_id
    fixed = rules.unknown_numbers_client_id
    return fixed if fixed is not None and await crm.client_exists(session, fixed) else None


def _new_client_kind(rules: Rules, call: CallView) -> str | None:
    """Which record an unknown number gets from the rules: a lead, a client, or none."""
    if rules.leads_for_missed_unknown and call.direction == "in" and call.result == "missed":
        return "lead"
    if rules.clients_for_outgoing_unknown and call.direction == "out":
        return "client"
    if rules.record_interactions and rules.unknown_numbers_client_id is None and call.state == "ended":
        return "client"  # a contact record needs a client; without a fixed one, the number gets its own
    return None


async def _missed_call_task(
    session: AsyncSession, rules: Rules, call: CallView, key: str, client_id, made: list | None
) -> None:
    owner = await missed_call_owner(session, rules, call, client_id)
    reached = call.started_at is not None and await crm.reached_since(
        session, client_id=client_id, phone=call.phone, since=call.started_at
    )
    values = {"title": f"Пропущенный звонок: {display(call.phone) if call.phone else 'номер скрыт'}",
              "kind": MISSED_CALL, "employee_id": owner, "client_id": client_id, "call_id": call.id,
              "phone": call.phone, "due_at": _due(rules, call)}  # fmt: skip
    await _put_task(session, key, values, reached, made)


def _due(rules: Rules, call: CallView) -> datetime | None:
    ended = call.ended_at or call.started_at
    return ended + timedelta(minutes=rules.missed_call_due_minutes) if ended else None


async def missed_call_owner(session: AsyncSession, rules: Rules, call: CallView, client_id: int | None) -> int | None:
    """Who owns a missed call, as the integration chose; each choice falls back to the defaults."""
    chosen = None
    if rules.missed_call_owner == "responsible" and client_id is not None:
        chosen = await crm.responsible_of(session, client_id)
    elif rules.missed_call_owner == "last_rung":
        legs = [leg for leg in (await call_store.legs_of(session, [call.id]))[call.id] if leg.employee_id]
        chosen = max(legs, key=lambda leg: (leg.rang_at is not None, leg.rang_at, leg.id)).employee_id if legs else None
    defaults = [rules.owners_by_virtual_number.get(call.virtual_number or ""), rules.default_owner_id]
    defaults += rules.listed_employee_ids[:1]
    return next((owner for owner in (chosen, *defaults) if owner is not None), None)


async def assignee_of(session: AsyncSession, call_id: int) -> int | None:
    """Who a call is assigned to: the employee who answered, or the only one it rang; else nobody yet."""
    legs = (await call_store.legs_of(session, [call_id]))[call_id]
    answered = [leg.employee_id for leg in legs if leg.state == "answered" and leg.employee_id]
    if answered:
        return answered[0]
    return legs[0].employee_id if len(legs) == 1 else None


async def card_recipients(
    session: AsyncSession, rules: Rules, call: CallView, employee_key: str | None
) -> list[int] | None:
    """Who sees the call card of this ringing leg (None: a ring that names no employee); None means everyone."""
    leg_employee = call.leg_employees.get(employee_key) if employee_key else None
    if rules.notify_responsible_only:
        responsible = await crm.responsible_of(session, call.client_id) if call.client_id else None
        if responsible is not None:
            return [responsible]
    if leg_employee is not None:
        return [leg_employee]
    return list(rules.listed_employee_ids) or None
