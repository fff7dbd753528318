"""ITooLabs "REST API for CRM" wire format (MegaFon, Gravitel, Dom.ru, ...): pure parsing.

PBX -> us: `history`, `event`, `contact`, `rating`, each with `crm_token`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

from pydantic import ValidationError

from ...domain.calls import CallEvent, CallResult, Direction, EventKind, LegState
from ...domain.phones import normalize
from ..base import Command, Events, Lookup, WireError, utc

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
    "notallowed": CallResult.NOT_ALLOWED,
    "notfound": CallResult.FAILED,
}

_EVENT = {
    "INCOMING": (EventKind.RING, Direction.IN),
    "OUTGOING": (EventKind.RING, Direction.OUT),
    "ACCEPTED": (EventKind.ANSWER, None),
    "COMPLETED": (EventKind.END, None),
    "CANCELLED": (EventKind.LEG_END, None),
    "TRANSFERRED": (EventKind.NOTE, None),
}

_DIRECTION = {"in": Direction.IN, "incoming": Direction.IN, "out": Direction.OUT, "outgoing": Direction.OUT}

_MAX_VALUE = 2000  # characters; longer values are not something a PBX sends


def parse(params: Mapping[str, str], *, received_at: datetime, region: str) -> Command:
    """Turn one request's parameters into a lookup or call events; WireError if it is neither."""
    try:
        return _parse(params, received_at, region)
    except ValidationError as exc:  # a value our call model cannot hold (e.g. a 500-character callid)
        problem = exc.errors()[0]
        raise WireError(f"{'.'.join(map(str, problem['loc']))}: {problem['msg']}") from None


def _parse(params: Mapping[str, str], received_at: datetime, region: str) -> Command:
    for name, value in params.items():
        if len(value) > _MAX_VALUE:
            raise WireError(f"{name} is too long")
    cmd = params.get("cmd", "").strip()
    if cmd == "contact":
        return Lookup(phone=_phone(params, region, required=True), call_key=params.get("callid") or None)
    if cmd == "history":
        return _history(params, received_at, region)
    if cmd == "event":
        return _event(params, received_at, region)
    if cmd == "rating":
        key = _call_key(params)
        event = _base(params, EventKind.NOTE, key, received_at, region)
        fields = event.fields | {"rating": _required(params, "rating")}
        return Events(cmd, key, [event.model_copy(update={"fields": fields})])
    raise WireError(f"unknown cmd {cmd!r}" if cmd else "cmd is missing")


def contact_reply(name: str | None, responsible_login: str | None) -> dict[str, str]:
    """`contact` answer: both keys optional, `{}` for an unknown number."""
    reply = {}
    if name:
        reply["contact_name"] = name
    if responsible_login:
        reply["responsible"] = responsible_login
    return reply


def _history(params: Mapping[str, str], received_at: datetime, region: str) -> Events:
    key = _call_key(params)
    direction = _direction(_required(params, "type"))
    status = _required(params, "status")
    result = _STATUS.get(status.lower().replace("_", "").replace(" ", ""))
    duration = _seconds(params, "duration")
    started = _time(params["start"]) if params.get("start") else None
    ended = started + timedelta(seconds=duration or 0) if started else received_at
    event = _base(params, EventKind.END, key, ended, region)
    fields = event.fields | ({"pbx_status": status} if result is None else {})
    fields |= {f: params[f] for f in ("rating", "groupRealName", "telnum") if params.get(f)}
    return Events(
        "history",
        key,
        [
            event.model_copy(
                update={
                    "direction": direction,
                    "phone": _phone(params, region, required=True),
                    "result": result,
                    "started_at": started,
                    "total_seconds": duration,
                    "wait_seconds": _seconds(params, "wait") if params.get("wait") else None,
                    "recording_url": params.get("link") or None,
                    "fields": fields,
                }
            )
        ],
    )


def _event(params: Mapping[str, str], received_at: datetime, region: str) -> Events:
    key = _call_key(params)
    name = _required(params, "type").upper()
    if name not in _EVENT:
        raise WireError(f"unknown event type {name!r}")
    kind, direction = _EVENT[name]
    event = _base(params, kind, key, received_at, region)
    update: dict = {"direction": direction or event.direction}
    if kind is EventKind.LEG_END:
        update["leg_state"] = LegState.CANCELLED
    if name == "TRANSFERRED" and params.get("second_callid"):
        update["fields"] = event.fields | {"transferred_to": params["second_callid"]}
    return Events("event", key, [event.model_copy(update=update)])


def _base(params: Mapping[str, str], kind: EventKind, key: str, at: datetime, region: str) -> CallEvent:
    """The fields every command may carry: who, which numbers, which direction."""
    user = params.get("user") or params.get("ext") or None
    if user and user.startswith("g_"):
        user = None  # a group login, not a person
    direction = params.get("direction")
    raw_phone = params.get("phone", "").strip()
    return CallEvent(
        kind=kind,
        call_key=key,
        at=at,
        fields={"pbx_phone": raw_phone} if raw_phone and normalize(raw_phone, region) is None else {},
        employee=user,
        phone=_phone(params, region, required=False),
        virtual_number=normalize(params.get("diversion") or params.get("telnum"), region),
        direction=_DIRECTION.get(direction.lower()) if direction else None,
    )


def _call_key(params: Mapping[str, str]) -> str:
    return _required(params, "callid")


def _required(params: Mapping[str, str], name: str) -> str:
    value = params.get(name, "").strip()
    if not value:
        raise WireError(f"{name} is missing")
    return value


def _phone(params: Mapping[str, str], region: str, *, required: bool) -> str | None:
    """The client's number; a hidden one ("anonymous") is a call without a number, not an error."""
    raw = params.get("phone", "").strip()
    if required and not raw:
        raise WireError("phone is missing")
    return normalize(raw, region)


def _direction(value: str) -> Direction:
    try:
        return _DIRECTION[value.lower()]
    except KeyError:
        raise WireError(f"type must be in or out, not {value!r}") from None


def _seconds(params: Mapping[str, str], name: str) -> int | None:
    raw = params.get(name, "").strip()
    if not raw:
        return None
    try:
        value = round(float(raw))
    except ValueError:
        raise WireError(f"{name} must be a number of seconds, not {raw!r}") from None
    if not 0 <= value <= 7 * 24 * 3600:
        raise WireError(f"{name} is out of range")
    return value


def _time(raw: str) -> datetime:
    """UTC `YYYYmmddTHHMMSSZ` as the spec says, or ISO 8601 as some installations send."""
    for parse in (lambda s: datetime.strptime(s, "%Y%m%dT%H%M%SZ"), datetime.fromisoformat):
        try:
            return utc(parse(raw.strip()))
        except ValueError:
            continue
    raise WireError(f"start {raw!r} is not a time")
