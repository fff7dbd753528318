"""Planfix "API for telephonies" wire format: pure parsing.

PBX -> us: `contact`, `event`, `record`, `ping`, each with `planfix_token`. Employees are extensions (`ext`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from ...domain.calls import CallEvent, CallResult, Direction, EventKind, LegState
from ...domain.pbx import CallerInfo, Command, Events, Lookup, Ping, WireError
from ...domain.phones import normalize
from ..params import analytics, choice, flag, guarded, hidden_phone, phone, required, seconds

TOKEN_FIELD = "planfix_token"

_DIRECTION = {"in": Direction.IN, "out": Direction.OUT}
_EVENT = {"incoming": EventKind.RING, "outgoing": EventKind.RING, "accepted": EventKind.ANSWER,
          "completed": EventKind.END}  # fmt: skip
_EVENT_NAMES = {name: name for name in _EVENT}
# COMPLETED status; "cancelled" closes one employee's leg only (the group was answered elsewhere, or hunting).
_STATUS = {
    "success": CallResult.ANSWERED,
    "missed": CallResult.MISSED,
    "cancelled": LegState.CANCELLED,
    "canceled": LegState.CANCELLED,
    "busy": CallResult.BUSY,
    "noanswer": CallResult.NO_ANSWER,
    "notavailable": CallResult.UNAVAILABLE,
    "notavaliable": CallResult.UNAVAILABLE,  # a misspelling real PBXs send
    "notallowed": CallResult.NOT_ALLOWED,
}


@guarded
def parse(params: Mapping[str, str], *, received_at: datetime, region: str) -> Command:
    """Turn one request's parameters into a lookup, a ping or call events; WireError if it is none of them."""
    cmd = params.get("cmd", "").strip()
    if cmd == "contact":
        return Lookup(phone=phone(params, "phone", region, required=True), call_key=params.get("callid") or None)
    if cmd == "ping":
        return Ping()
    if cmd == "event":
        return _event(params, received_at, region)
    if cmd == "record":
        key = required(params, "callid")
        event = CallEvent(
            kind=EventKind.RECORDING,
            call_key=key,
            at=received_at,
            recording_url=required(params, "record_link"),
            recording_temporary=flag(params, "is_temp"),
        )
        return Events(cmd, key, [event])
    raise WireError(f"unknown cmd {cmd!r}" if cmd else "cmd is missing")


def contact_reply(caller: CallerInfo | None) -> dict[str, Any]:
    """`contact` answer: the name and the manager's extension (a number, as in the spec), `{}` if unknown."""
    reply: dict[str, Any] = {}
    if caller is not None:
        if caller.client_name:
            reply["contact_name"] = caller.client_name
        extension = caller.responsible_extension
        if extension:
            reply["responsible"] = int(extension) if extension.isdigit() else extension
    return reply


def ping_reply(settings: Mapping[str, Any]) -> dict[str, str]:
    """`ping` answer: the PBX address and token we have for it, so the PBX can check them."""
    return {"pbxToken": str(settings.get("pbx_token", "")), "pbxUrl": str(settings.get("pbx_url", ""))}


def _event(params: Mapping[str, str], received_at: datetime, region: str) -> Events:
    key = required(params, "callid")
    name, unknown_event = choice(params, "event", _EVENT_NAMES)
    direction, unknown_type = choice(params, "type", _DIRECTION)
    event = CallEvent(
        kind=_EVENT[name] if name else EventKind.NOTE,  # an event we do not know still tells who and which number
        call_key=key,
        at=received_at,
        direction=direction,
        phone=phone(params, "phone", region, required=False),
        virtual_number=normalize(params.get("diversion"), region),
        employee=params.get("ext", "").strip() or None,
        fields=hidden_phone(params, "phone", region) | analytics(params) | unknown_event | unknown_type,
    )
    if name != "completed":
        return Events("event", key, [event])
    status, unknown_status = choice(params, "status", _STATUS) if params.get("status", "").strip() else (None, {})
    if status is LegState.CANCELLED:
        closed = event.model_copy(update={"kind": EventKind.LEG_END, "leg_state": LegState.CANCELLED})
        return Events("event", key, [closed])
    duration = seconds(params, "duration")
    completed = event.model_copy(
        update={
            "kind": EventKind.END,
            "result": status,
            "total_seconds": duration,
            # with no word we know, the length is all there is: a call that lasted was talked
            "talk_seconds": duration if unknown_status else None,
            "recording_expected": flag(params, "is_recorded"),
            "recording_url": params.get("record_link", "").strip() or None,
            "fields": event.fields | unknown_status,
        }
    )
    return Events("event", key, [completed])
