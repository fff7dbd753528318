"""What a HelpDeskEddy-channel PBX posts for each step of a simulated call: `create_call`, then `update_call`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...domain.phones import wire_digits

if TYPE_CHECKING:
    from ...simulate import Step


def render(step: Step, *, call: str, phone: str, outgoing: bool, token: str) -> list[dict[str, Any]]:
    """The requests (httpx keyword arguments) this PBX sends for one step."""
    digits = wire_digits(phone)
    who = [person.key for person in step.who]
    if step.what == "ring":
        first = {"action": "create_call", "direction": "outgoing" if outgoing else "incoming", "phone": digits,
                 "pbx_call_id": call, "pbx_user_ids[]": who}  # fmt: skip
        return [{"data": first}]
    status = {"answer": "in-progress", "leg_over": None, "end": step.result}[step.what]
    if status is None:
        return []
    return [{"data": {"action": "update_call", "pbx_call_id": call, "call_status": status,
                      "pbx_user_id": who[0]}}]  # fmt: skip
