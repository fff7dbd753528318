"""What a Planfix-protocol PBX posts for each step of a simulated call: an `event` per extension."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...domain.phones import wire_digits

if TYPE_CHECKING:
    from ...simulate import Step


def render(step: Step, *, call: str, phone: str, outgoing: bool, token: str) -> list[dict[str, Any]]:
    """The requests (httpx keyword arguments) this PBX sends for one step."""
    digits = wire_digits(phone)
    who = [person.extension or person.key for person in step.who]  # the Planfix protocol knows employees by extension
    base = {"cmd": "event", "type": "out" if outgoing else "in", "callid": call, "phone": digits,
            "planfix_token": token}  # fmt: skip
    event = {"ring": {"event": "OUTGOING" if outgoing else "INCOMING"}, "answer": {"event": "ACCEPTED"},
             "leg_over": {"event": "COMPLETED", "status": "Cancelled"},
             "end": {"event": "COMPLETED", "status": "Success" if step.result == "answered" else "Missed",
                     "duration": str(step.talk)}}[step.what]  # fmt: skip
    return [{"data": base | event | {"ext": employee}} for employee in who]
