"""What a cloudpbx PBX posts for each step of a simulated call: `event`s per employee, `history` at the end."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...domain.phones import wire_digits

if TYPE_CHECKING:
    from ...simulate import Step


def render(step: Step, *, call: str, phone: str, outgoing: bool, token: str) -> list[dict[str, Any]]:
    """The requests (httpx keyword arguments) this PBX sends for one step."""
    digits = wire_digits(phone)
    who = [person.key for person in step.who]
    name = {"ring": "OUTGOING" if outgoing else "INCOMING", "answer": "ACCEPTED", "leg_over": "CANCELLED",
            "end": "COMPLETED"}[step.what]  # fmt: skip
    base = {"cmd": "event", "type": name, "callid": call, "phone": digits, "crm_token": token}
    requests = [{"data": base | {"user": employee}} for employee in who]
    if step.what == "end":
        status = "Success" if step.result == "answered" else "Missed"
        requests.append({"data": {"cmd": "history", "type": "out" if outgoing else "in", "status": status,
                                  "phone": digits, "user": who[0], "duration": str(step.talk), "callid": call,
                                  "crm_token": token}})  # fmt: skip
    return requests
