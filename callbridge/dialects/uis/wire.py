"""UIS (CoMagic) notifications: pure parsing of the bodies customers write in the UIS cabinet.

The body is a template with `{{variable}}` placeholders, so keys, value types and even JSON validity
vary; a customer may write a form instead of JSON, or put variables in the URL's query string. A body says
what happened in one of three ways, tried in order: our own `callbridge_event` key (in the bodies
`integration add uis` prints), `call_state` (the RBS plugin's four templates, seed 001), or the variables
it carries (the eight notifications of seed 000).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from ... import safejson
from ...domain.calls import CallEvent, CallResult, Direction, EventKind, LegState
from ...domain.pbx import Events, WireError
from ...domain.phones import normalize
from ..base import form_fields
from ..params import guarded, hidden_phone, plausible, seconds, word

# What each kind of notification means for the call.
INCOMING = "incoming_call"  # 1. a call reached a virtual number
CALL_END = "call_end"  # 2. the whole call is over, with durations
RECORDED = "recorded_call"  # 3. the recording is ready
WAITING = "waiting_for_answer"  # 4. an employee's phone rings (one leg)
OUTGOING = "outgoing_call"  # 5. an employee dials out
TALK_START = "talk_start"  # 6. an employee picked up
TALK_END = "talk_end"  # 7. an employee's conversation ended
LOST = "lost_call"  # 8. nobody answered
HISTORY = "call_history"  # a whole call from the Data API's calls report (our back-fill)
KINDS = (INCOMING, CALL_END, RECORDED, WAITING, OUTGOING, TALK_START, TALK_END, LOST, HISTORY)

_EXPLICIT = {word(kind): kind for kind in KINDS}
_CALL_STATE = {"ringing": WAITING, "answered": TALK_START, "hangup": CALL_END, "missed": LOST}
_DIRECTION = {"in": Direction.IN, "incoming": Direction.IN, "out": Direction.OUT, "outgoing": Direction.OUT}


def read_notification(query: str, body: bytes, content_type: str) -> dict[str, str]:
    """A notification's fields (see `flatten`): the body's (JSON; a form when it says so, or when it does not start
    as JSON does) over those of the URL's query string. One with neither is refused."""
    fields = _form(query, strict=False)
    if body.strip():
        as_form = "json" not in content_type and ("form" in content_type or body.lstrip()[:1] not in (b"{", b"["))
        fields |= _form(_text(body)) if as_form else flatten(read_json(body))
    if not fields:
        raise WireError("the notification has no body and no query string")
    return fields


def _form(text: str, strict: bool = True) -> dict[str, str]:
    return {name: ",".join(values) for name, values in form_fields(text, strict=strict).items()}


def _text(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise WireError("body is not UTF-8") from None


def read_json(body: bytes) -> dict[str, Any]:
    """A notification body as a dict, repairing what hand-written templates break.

    UIS puts values in as they are, so `"direction":{{direction}}` arrives as `"direction":in` and an
    empty variable as `"employee_id":,`. Such bare words become strings and gaps become null.
    """
    text = _text(body)
    try:
        data = safejson.loads(text)
    except safejson.NotJson:
        data = _repaired(text)
    except safejson.JsonRefused as exc:
        raise WireError(str(exc)) from None
    if not isinstance(data, dict):
        raise WireError("the body must be a JSON object")
    return data


REPAIR_LIMIT = 64_000  # characters: a template a person wrote is a few hundred; longer non-JSON is refused as it is
_LITERAL = re.compile(r"true|false|null|-?\d+(\.\d+)?")


def _repaired(text: str) -> Any:
    """One pass over the text outside strings: after a colon, a gap before `,` or `}` becomes null and a bare value
    (anything up to `,` or `}` without quotes or brackets) becomes a string, unless it is a JSON literal."""
    if len(text) > REPAIR_LIMIT:
        raise WireError(f"the body is not JSON, and at over {REPAIR_LIMIT} characters not a template to repair")
    out, start, i, n = [], 0, 0, len(text)
    while i < n:
        char = text[i]
        if char == '"':
            i = _string_end(text, i + 1)
            continue
        i += 1
        if char != ":":
            continue
        value_at = i
        while value_at < n and text[value_at] in " \t\r\n":
            value_at += 1
        end = value_at
        while end < n and text[end] not in '",{}[]':
            end += 1
        if end == n or text[end] not in ",}":
            i = max(i, value_at if end == value_at else end)
            continue
        value = text[value_at:end].rstrip()
        if not value:
            out += [text[start:i], " null"]
            start = i = value_at
        elif not _LITERAL.fullmatch(value):
            out += [text[start:value_at], json.dumps(value)]
            start = i = value_at + len(value)
        else:
            i = end
    out.append(text[start:])
    try:
        return safejson.loads("".join(out))
    except safejson.JsonRefused as exc:
        raise WireError(f"the body is not JSON even after repair: {exc}") from None


def _string_end(text: str, i: int) -> int:
    """Where the JSON string that starts before `i` ends (past its closing quote), escapes skipped."""
    n = len(text)
    while i < n:
        if text[i] == "\\":
            i += 2
        elif text[i] == '"':
            return i + 1
        else:
            i += 1
    return n


def flatten(data: Mapping[str, Any]) -> dict[str, str]:
    """Values as strings (lists as comma-separated), dropping nulls: what the journal keeps."""
    flat = {}
    for key, value in data.items():
        if value is None:
            continue
        if isinstance(value, list):
            value = ",".join(str(v) for v in value if v is not None)
        elif isinstance(value, bool):
            value = "1" if value else "0"
        elif not isinstance(value, str):
            value = json.dumps(value, ensure_ascii=False) if isinstance(value, dict) else str(value)
        flat[str(key)] = value
    return flat


def kind_of(params: Mapping[str, str]) -> str:
    """Which of the eight notifications (or four templates) this body is.

    A `callbridge_event` or `call_state` we do not know (a hand-edited template) is kept on the call by `parse`,
    and the body is read by the variables it carries instead."""
    explicit = word(params.get("callbridge_event", ""))
    if explicit in _EXPLICIT:
        return _EXPLICIT[explicit]
    state = word(params.get("call_state", ""))
    if state in _CALL_STATE:
        return _CALL_STATE[state]
    has = {k for k, v in params.items() if v != ""}
    if "file_link" in has:
        return RECORDED
    if "employee_ids" in has or "lost" in params.get("notification_mnemonic", "").lower():
        return LOST
    if "total_time_duration" in has:
        return CALL_END
    if "talk_time_duration" in has:
        return TALK_END
    if "leg_ids" in has:
        return TALK_START
    if "leg_id" in has:
        return WAITING
    if "employee_phone_number" in has:
        return OUTGOING
    if "virtual_phone_number" in has or "contact_phone_number" in has:
        return INCOMING
    unknown = "".join(f"; {name[4:]} {value[:40]!r} is unknown" for name, value in _unknown_words(params).items())
    raise WireError(f"cannot tell which notification this is: no call_state, callbridge_event or known "
                    f"variables{unknown}")  # fmt: skip


@guarded
def parse(params: Mapping[str, str], *, received_at: datetime, region: str, zone: str = "Europe/Moscow") -> Events:
    """Turn one notification into call events; WireError if it cannot be one."""
    kind = kind_of(params)
    key = (params.get("call_session_id") or params.get("call_id") or "").strip()
    if not key:
        raise WireError("call_session_id is missing")
    raw_phone = params.get("contact_phone_number") or params.get("from_number") or ""
    direction = word(params.get("direction", ""))
    employee = _employee(params)
    event = CallEvent(
        kind=EventKind.NOTE,
        call_key=key,
        at=_time(params.get("notification_time") or params.get("notification_timestamp"), received_at, zone),
        direction=Direction.OUT if kind == OUTGOING else _DIRECTION.get(direction),
        phone=normalize(raw_phone, region),
        virtual_number=normalize(params.get("virtual_phone_number") or params.get("diversion"), region),
        employee=employee,
        talk_seconds=seconds(params, "talk_time_duration"),
        wait_seconds=seconds(params, "wait_time_duration"),
        total_seconds=seconds(params, "total_time_duration"),
        recording_url=(params.get("file_link") or params.get("call_record_url") or "").strip() or None,
        fields=_fields(params) | hidden_phone({"phone": raw_phone}, "phone", region) | _unknown_words(params),
        tags=tuple(t.strip() for t in params.get("tag_names", "").split(",") if t.strip()),
    )
    if kind in (INCOMING, LOST) and event.direction is None:  # a lost call is one nobody answered: incoming
        event = event.model_copy(update={"direction": Direction.IN})
    if kind == LOST:
        return Events(kind, key, _lost(event, params))
    if kind == HISTORY:
        return Events(kind, key, _history(event, params))
    return Events(kind, key, [event.model_copy(update={"kind": _KIND[kind]})])


_KIND = {
    INCOMING: EventKind.RING,
    WAITING: EventKind.RING,
    OUTGOING: EventKind.RING,
    TALK_START: EventKind.ANSWER,
    TALK_END: EventKind.LEG_END,
    CALL_END: EventKind.END,
    RECORDED: EventKind.RECORDING,
}


def _lost(event: CallEvent, params: Mapping[str, str]) -> list[CallEvent]:
    """A lost call: every employee it rang missed it, and the call ended unanswered."""
    ids = [i.strip() for i in params.get("employee_ids", "").strip("[]").split(",") if i.strip()]
    legs = [
        event.model_copy(update={"kind": EventKind.LEG_END, "employee": i, "leg_state": LegState.MISSED}) for i in ids
    ]
    return [*legs, event.model_copy(update={"kind": EventKind.END, "result": CallResult.MISSED, "employee": None})]


def _history(event: CallEvent, params: Mapping[str, str]) -> list[CallEvent]:
    """A call as the calls report gives it: whom it rang, who answered, how it ended."""
    started = _time(params.get("start_time"), event.at, "UTC")
    event = event.model_copy(update={"started_at": started, "direction": event.direction or Direction.IN})
    if params.get("is_lost") == "1":
        return _lost(event, params)
    answered = event.employee if (event.talk_seconds or 0) > 0 else None
    ids = [i.strip() for i in params.get("employee_ids", "").split(",") if i.strip() and i.strip() != answered]
    legs = [
        event.model_copy(update={"kind": EventKind.LEG_END, "employee": i, "leg_state": LegState.MISSED}) for i in ids
    ]
    result = CallResult.ANSWERED if answered else (CallResult.MISSED if event.direction is Direction.IN else None)
    end = event.model_copy(update={"kind": EventKind.END, "employee": answered, "result": result})
    return [*legs, end]


# Data API `get.calls_report`: the fields we ask for, and how they read as notification variables
REPORT_FIELDS = ("id", "start_time", "finish_time", "direction", "is_lost", "contact_phone_number",
                 "virtual_phone_number", "talk_duration", "wait_duration", "total_duration", "call_records",
                 "employees", "last_answered_employee_id", "scenario_name")  # fmt: skip
_AS_NOTIFICATION = {"id": "call_session_id", "talk_duration": "talk_time_duration",
                    "wait_duration": "wait_time_duration", "total_duration": "total_time_duration",
                    "last_answered_employee_id": "employee_id"}  # fmt: skip


def report_params(row: Mapping[str, Any], *, zone: str, media_url: str) -> dict[str, str]:
    """One calls-report row in the terms of a notification (times made absolute), to journal and parse."""
    if not isinstance(row, Mapping) or row.get("id") in (None, ""):
        raise WireError("a calls report row without an id")
    params = flatten({_AS_NOTIFICATION.get(k, k): v for k, v in row.items() if k in REPORT_FIELDS})
    params["callbridge_event"] = HISTORY
    for name in ("start_time", "finish_time"):
        if params.get(name):
            params[name] = _time(params[name], datetime.now(UTC), zone).isoformat()
    params["notification_time"] = params.pop("finish_time", "") or params.get("start_time", "")
    employees = row.get("employees") if isinstance(row.get("employees"), list) else []
    params.pop("employees", None)
    ids = [str(e["employee_id"]) for e in employees if isinstance(e, Mapping) and e.get("employee_id") is not None]
    if ids:
        params["employee_ids"] = ",".join(ids)
    records = row.get("call_records") if isinstance(row.get("call_records"), list) else []
    params.pop("call_records", None)
    if records:  # the talk's media address: <media>/<call session>/<record>/
        params["file_link"] = f"{media_url.rstrip('/')}/{params['call_session_id']}/{records[-1]}/"
    return params


def _unknown_words(params: Mapping[str, str]) -> dict[str, str]:
    """Enumerated values we could not read (a hand-edited template, a new word), kept on the call as they came."""
    known = {"callbridge_event": _EXPLICIT, "call_state": _CALL_STATE, "direction": _DIRECTION}
    return {f"pbx_{name}": params[name] for name, words in known.items()
            if params.get(name, "").strip() and word(params[name]) not in words}  # fmt: skip


def _employee(params: Mapping[str, str]) -> str | None:
    """The UIS employee id when the body has it (it is the same in every notification), else the extension."""
    for name in ("employee_id", "extension_phone_number", "user_extension"):
        value = params.get(name, "").strip()
        if value and value.lower() != "null":
            return value
    return None


_FIELDS = ("scenario_name", "scenario_id", "call_source", "external_id", "contact_id", "contact_full_name",
           "communication_number", "leg_id", "leg_ids", "file_duration", "is_internal")  # fmt: skip


def _fields(params: Mapping[str, str]) -> dict[str, str]:
    return {name: params[name] for name in _FIELDS if params.get(name)}


def _time(raw: str | None, received_at: datetime, zone: str) -> datetime:
    """unix seconds, ISO 8601, or `YYYY-MM-DD HH:MM:SS` in the account's time zone; absent: when it came."""
    if raw is None or not str(raw).strip():
        return received_at
    text = str(raw).strip()
    try:
        number = float(text)
    except ValueError:
        pass
    else:
        try:
            return plausible(datetime.fromtimestamp(number / 1000 if number > 1e11 else number, UTC), text)
        except (OverflowError, OSError, ValueError):
            raise WireError(f"notification_time {text!r} is out of range") from None
    try:
        parsed = datetime.fromisoformat(text.replace(" ", "T", 1))
    except ValueError:
        raise WireError(f"notification_time {text!r} is not a time") from None
    plausible(parsed, text)
    return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=ZoneInfo(zone)).astimezone(UTC)
