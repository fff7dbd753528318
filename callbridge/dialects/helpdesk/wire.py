"""HelpDeskEddy "telephony through API" channel: pure parsing of `create_call` / `update_call` forms.

Arrays come as `user_ids[]`, `group_ids[]`, `pbx_user_ids[]`. Our own employees are named to the
engine as `id:<n>`, which the store maps to that employee directly.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from ...domain.calls import CallEvent, CallResult, Direction, EventKind
from ...domain.ids import ID_KEY, parse_id
from ...domain.pbx import WireError
from ...domain.phones import normalize
from ..params import word

ACTIVE = ("ringing", "in-progress")  # the card is shown
FINAL = {"canceled": None, "missed": CallResult.MISSED, "failed": CallResult.FAILED,
         "answered": CallResult.ANSWERED, "busy": CallResult.BUSY}  # fmt: skip
_STATUS = {word(status): status for status in (*ACTIVE, *FINAL)} | {"cancelled": "canceled"}
_DIRECTION = {"incoming": Direction.IN, "outgoing": Direction.OUT, "in": Direction.IN, "out": Direction.OUT}
_ONLY_ONE_TARGET = ("user_ids[]", "group_ids[]", "pbx_user_ids[]")


_LONGEST = {"pbx_call_id": 200}  # characters; a call's key is kept in 200


@dataclass(frozen=True)
class CallRequest:
    """One `create_call` or `update_call`, validated."""

    action: str
    status: str  # one of ACTIVE or FINAL, or a word we do not know: the call is over, its result unknown
    direction: Direction | None = None
    phone: str | None = None
    raw_phone: str | None = None
    raw_direction: str | None = None  # a direction we do not know, kept on the call
    pbx_call_id: str | None = None
    call_id: int | None = None
    user_ids: tuple[int, ...] = ()
    group_ids: tuple[int, ...] = ()
    pbx_user_ids: tuple[str, ...] = ()
    user_id: int | None = None
    pbx_user_id: str | None = None
    comment: str | None = None
    extra: dict[str, str] = field(default_factory=dict)


def parse(form: Mapping[str, list[str]], *, region: str) -> CallRequest:
    """Validate a request's fields (as lists, since arrays repeat); WireError names what is wrong.

    An array may also come without its `[]` (JSON clients write `"pbx_user_ids": [101]`)."""
    form = _arrays_named(form)

    def one(name: str) -> str | None:
        values = [v.strip() for v in form.get(name, []) if v.strip()]
        if len(values) > 1:
            raise WireError(f"{name} is given more than once")
        if values and len(values[0]) > _LONGEST.get(name, 500):
            raise WireError(f"{name} is longer than {_LONGEST.get(name, 500)} characters")
        return values[0] if values else None

    action = one("action")
    if action not in ("create_call", "update_call"):
        raise WireError("action must be create_call or update_call" if action else "action is missing")
    given = one("call_status") or ("ringing" if action == "create_call" else "")
    if not given:
        raise WireError("call_status is missing")
    status = _STATUS.get(word(given), given)
    if action == "create_call":
        return _create(form, one, status, region)
    return _update(form, one, status)


def _create(form, one, status: str, region: str) -> CallRequest:
    direction = one("direction")
    if not direction:
        raise WireError("direction is missing")
    raw = one("phone")
    if raw is None:
        raise WireError("phone is missing")
    given = [name for name in _ONLY_ONE_TARGET if _many(form, name)]
    if len(given) > 1:
        raise WireError(f"give only one of user_ids[], group_ids[], pbx_user_ids[]: got {', '.join(given)}")
    return CallRequest(
        action="create_call",
        status=status,
        direction=_DIRECTION.get(word(direction)),
        raw_direction=None if word(direction) in _DIRECTION else direction,
        phone=normalize(raw, region),
        raw_phone=raw,
        pbx_call_id=one("pbx_call_id"),
        user_ids=tuple(_numbers(form, "user_ids[]")),
        group_ids=tuple(_numbers(form, "group_ids[]")),
        pbx_user_ids=tuple(_many(form, "pbx_user_ids[]")),
        comment=one("comment"),
    )


def _update(form, one, status: str) -> CallRequest:
    call_id, pbx_call_id = one("call_id"), one("pbx_call_id")
    if call_id and pbx_call_id:
        raise WireError("give only one of call_id, pbx_call_id: got both")
    if not (call_id or pbx_call_id):
        raise WireError("call_id or pbx_call_id is missing")
    user_id, pbx_user_id = one("user_id"), one("pbx_user_id")
    if user_id and pbx_user_id:
        raise WireError("give only one of user_id, pbx_user_id: got both")
    return CallRequest(
        action="update_call",
        status=status,
        call_id=_number("call_id", call_id) if call_id else None,
        pbx_call_id=pbx_call_id,
        user_id=_number("user_id", user_id) if user_id else None,
        pbx_user_id=pbx_user_id,
        comment=one("comment"),
    )


def events(request: CallRequest, *, call_key: str, employees: list[str], at: datetime) -> list[CallEvent]:
    """The call events a validated request means, for a call known as `call_key`.

    `employees` are the engine keys of whom the card is for (create) or who is bound to the call (update).
    """
    status = request.status
    base = CallEvent(
        kind=EventKind.NOTE,
        call_key=call_key,
        at=at,
        direction=request.direction,
        phone=request.phone,
        fields=({"comment": request.comment} if request.comment else {})
        | ({"pbx_phone": request.raw_phone} if request.raw_phone and request.phone is None else {})
        | ({"pbx_direction": request.raw_direction} if request.raw_direction else {})
        | ({} if status in ACTIVE or status in FINAL else {"pbx_call_status": status}),
    )
    if status == "ringing":
        return [base.model_copy(update={"kind": EventKind.RING, "employee": e}) for e in employees] or [
            base.model_copy(update={"kind": EventKind.RING})
        ]
    if status == "in-progress":
        if request.action == "create_call" and len(employees) != 1:
            rings = [base.model_copy(update={"kind": EventKind.RING, "employee": e}) for e in employees]
            return [*rings, base.model_copy(update={"kind": EventKind.ANSWER})]
        return [base.model_copy(update={"kind": EventKind.ANSWER, "employee": e}) for e in employees] or [
            base.model_copy(update={"kind": EventKind.ANSWER})
        ]
    end = base.model_copy(update={"kind": EventKind.END, "result": FINAL.get(status)})
    if request.action == "create_call":  # a call reported only when it was over
        return [base.model_copy(update={"kind": EventKind.RING, "employee": e}) for e in employees] + [end]
    if len(employees) == 1 and status == "answered":
        return [end.model_copy(update={"employee": employees[0]})]
    return [end]


def _arrays_named(form: Mapping[str, list[str]]) -> dict[str, list[str]]:
    named: dict[str, list[str]] = {}
    for name, values in form.items():
        named.setdefault(f"{name}[]" if f"{name}[]" in _ONLY_ONE_TARGET else name, []).extend(values)
    return named


def employee_key(employee_id: int) -> str:
    return f"{ID_KEY}{employee_id}"


def _many(form: Mapping[str, list[str]], name: str) -> list[str]:
    return [v.strip() for v in form.get(name, []) if v.strip()]


def _numbers(form: Mapping[str, list[str]], name: str) -> list[int]:
    return [_number(name, v) for v in _many(form, name)]


def _number(name: str, value: str) -> int:
    number = parse_id(value)
    if number is None:
        raise WireError(f"{name} must be a number, not {value!r}")
    return number
