"""What UIS posts for each step of a simulated call: one notification (JSON) per employee."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...domain.phones import wire_digits

if TYPE_CHECKING:
    from ...simulate import Step


def render(step: Step, *, call: str, phone: str, outgoing: bool, token: str) -> list[dict[str, Any]]:
    """The requests (httpx keyword arguments) this PBX sends for one step."""
    digits = wire_digits(phone)
    who = [person.key for person in step.who]
    base = {"call_session_id": call, "contact_phone_number": digits, "direction": "out" if outgoing else "in"}
    if step.what == "end" and step.result != "answered":
        return [{"json": base | {"callbridge_event": "lost_call", "employee_ids": ",".join(who)}}]
    event = {"ring": "outgoing_call" if outgoing else "waiting_for_answer", "answer": "talk_start",
             "leg_over": "talk_end", "end": "call_end"}[step.what]  # fmt: skip
    extra = {"talk_time_duration": str(step.talk)} if step.what == "end" else {}
    return [{"json": base | extra | {"callbridge_event": event, "employee_id": employee}} for employee in who]
