"""ITooLabs "REST API for CRM" wire format (MegaFon, Gravitel, Dom.ru, ...): pure parsing.

PBX -> us: `history`, `event`, `contact`, `rating`, each with `crm_token`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

from ...domain.calls import CallEvent, CallResult, Direction, EventKind, LegState
from ...domain.pbx import CallerInfo, Command, Events, Lookup, WireError
from ...domain.phones import normalize
from ..params import choice, guarded, hidden_phone, phone, required, seconds, time_value, word

TOKEN_FIELD = "crm_token"

# `history` status, case-insensitive (some installations send lower case).
_STATUS = {
    "success": CallResult.ANSWERED,
    "missed": CallResult.MISSED,
    "cancel": CallResult.MISSED,
    "cancelled": CallResult.MISSED,
    "busy": CallResult.BUSY,
    "noanswer": CallResult.NO_ANSWER,
    "notavailable": CallResult.UNAVAILABLE,
    "notavaliable": CallResult.UNAVAILABLE,  # a misspelling real PBXs send
    "notallowed": CallResult.NOT_ALLOWED,
    "notfound": CallResult.FAILED,
}

_EVENT = {
    "incoming": (EventKind.RING, Direction.IN),
    "outgoing": (EventKind.RING, Direction.OUT),
    "accepted": (EventKind.ANSWER, None),
    "completed": (EventKind.END, None),
    "cancelled": (EventKind.LEG_END, None),
    "transferred": (EventKind.NOTE, None),
}

_DIRECTION = {"in": Direction.IN, "incoming": Direction.IN, "out": Direction.OUT, "outgoing": Direction.OUT}


@guarded
def parse(params: Mapping[str, str], *, received_at: datetime, region: str) -> Command:
    """Turn one request's parameters into a lookup or call events; WireError if it is neither."""
    cmd = params.get("cmd", "").strip()
    if cmd == "contact":
        return Lookup(phone=phone(params, "phone", region, required=True), call_key=params.get("callid") or None)
    if cmd == "history":
        return _history(params, received_at, region)
    if cmd == "event":
        return _event(params, received_at, region)
    if cmd == "history_row":  # a row of our own back-fill, replayed from the journal
        return history_row([params.get(column, "") for column in HISTORY_COLUMNS], region=region)[1]
    if cmd == "rating":
        event = _base(params, EventKind.NOTE, received_at, region)
        fields = event.fields | {"rating": required(params, "rating")}
        return Events(cmd, event.call_key, [event.model_copy(update={"fields": fields})])
    raise WireError(f"unknown cmd {cmd!r}" if cmd else "cmd is missing")


def contact_reply(caller: CallerInfo | None) -> dict[str, str]:
    """`contact` answer: the name and the manager's PBX login, both optional; `{}` for an unknown number."""
    reply = {}
    if caller is not None:
        if caller.client_name:
            reply["contact_name"] = caller.client_name
        if caller.responsible_login:
            reply["responsible"] = caller.responsible_login
    return reply


def _history(params: Mapping[str, str], received_at: datetime, region: str) -> Events:
    direction, unknown_type = choice(params, "type", _DIRECTION)
    result, unknown_status = choice(params, "status", _STATUS)
    duration = seconds(params, "duration")
    started = time_value(params["start"]) if params.get("start") else None
    ended = started + timedelta(seconds=duration or 0) if started else received_at
    event = _base(params, EventKind.END, ended, region)
    fields = event.fields | unknown_type | unknown_status
    fields |= {f: params[f] for f in ("rating", "groupRealName", "telnum") if params.get(f)}
    update = {
        "direction": direction,
        "phone": phone(params, "phone", region, required=True),
        "result": result,
        # with no status we know, the length is all there is: a call that lasted was talked
        "talk_seconds": duration if unknown_status else None,
        "started_at": started,
        "total_seconds": duration,
        "wait_seconds": seconds(params, "wait"),
        "recording_url": params.get("link") or None,
        "fields": fields,
    }
    return Events("history", event.call_key, [event.model_copy(update=update)])


def _event(params: Mapping[str, str], received_at: datetime, region: str) -> Events:
    found, unknown = choice(params, "type", _EVENT)
    kind, direction = found or (EventKind.NOTE, None)  # an event we do not know still tells who and which number
    event = _base(params, kind, received_at, region)
    update: dict = {"direction": direction or event.direction, "fields": event.fields | unknown}
    if kind is EventKind.LEG_END:
        update["leg_state"] = LegState.CANCELLED
    if word(params["type"]) == "transferred" and params.get("second_callid"):
        update["fields"] |= {"transferred_to": params["second_callid"]}
    return Events("event", event.call_key, [event.model_copy(update=update)])


def _base(params: Mapping[str, str], kind: EventKind, at: datetime, region: str) -> CallEvent:
    """The fields every command may carry: which call, who, which numbers, which direction."""
    user = params.get("user") or params.get("ext") or None
    if user and user.startswith("g_"):
        user = None  # a group login, not a person
    return CallEvent(
        kind=kind,
        call_key=required(params, "callid"),
        at=at,
        employee=user,
        phone=phone(params, "phone", region, required=False),
        virtual_number=normalize(params.get("diversion") or params.get("telnum"), region),
        direction=_DIRECTION.get(word(params.get("direction", ""))),
        fields=hidden_phone(params, "phone", region),
    )


HISTORY_COLUMNS = ("uid", "type", "phone", "user", "diversion", "start", "wait", "duration", "link")


def history_row(row: list[str], *, region: str, settings: object = None) -> tuple[dict[str, str], Events]:
    """One CSV row of the PBX's `history` answer as journal parameters and an END event (a call we may
    have missed while down); WireError for a row that is not a call. (The row needs no settings.)"""
    if len(row) < 8:
        raise WireError(f"a history row has {len(row)} columns, not 9")
    params = dict(zip(HISTORY_COLUMNS, (value.strip() for value in row), strict=False))
    params["cmd"] = "history_row"
    key = required(params, "uid")
    kind = params.get("type", "").lower()
    started = time_value(required(params, "start"))
    duration, wait = seconds(params, "duration"), seconds(params, "wait")
    direction = Direction.OUT if kind in ("out", "outgoing") else Direction.IN
    answered = kind not in ("missed",) and (duration or 0) > 0
    user = params.get("user", "").split("@")[0] or None  # user@domain
    event = CallEvent(
        kind=EventKind.END,
        call_key=key,
        at=started + timedelta(seconds=(wait or 0) + (duration or 0)),
        started_at=started,
        direction=direction,
        phone=phone(params, "phone", region, required=False),
        virtual_number=normalize(params.get("diversion"), region),
        employee=None if user and user.startswith("g_") else user,
        result=CallResult.ANSWERED if answered else (CallResult.MISSED if direction is Direction.IN else None),
        wait_seconds=wait,
        talk_seconds=duration if answered else 0,
        recording_url=params.get("link") or None,
    )
    return params, Events("history_row", key, [event])
