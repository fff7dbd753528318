"""Play realistic calls against a running callbridge, as each kind of PBX would send them.

A scenario is a list of steps in our own terms (ring, answer, leg over, end); each dialect renders a
step as its PBX's request. Used after `callbridge demo` to watch the workspace come alive.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from dataclasses import dataclass
from typing import Any

import httpx

from .domain.phones import wire_digits

SCENARIOS = ("group", "hunting", "missed", "outgoing")


@dataclass(frozen=True)
class Step:
    what: str  # ring | answer | leg_over | end
    who: tuple[str, ...] = ()  # employees, as the PBX knows them
    result: str = "answered"  # for end
    pause: float = 0.0  # seconds to wait before the next step


@dataclass(frozen=True)
class Person:
    login: str | None
    extension: str | None


def steps(scenario: str, people: list[Person], pause: float) -> list[Step]:
    """The steps of a scenario with these employees (at least one; three for hunting)."""
    a, b, c = (people * 3)[:3]
    keys = {"a": a, "b": b, "c": c}
    plans = {
        "group": [("ring", "ab", 0), ("answer", "b", 1), ("leg_over", "a", 0), ("end", "b", 1)],
        "hunting": [
            ("ring", "a", 1),
            ("leg_over", "a", 0),
            ("ring", "b", 1),
            ("leg_over", "b", 0),
            ("ring", "c", 1),
            ("answer", "c", 1),
            ("end", "c", 1),
        ],  # fmt: skip
        "missed": [("ring", "ab", 2), ("end_missed", "ab", 0)],
        "outgoing": [("ring", "a", 1), ("answer", "a", 1), ("end", "a", 0)],
    }
    plan = []
    for what, who, pauses in plans[scenario]:
        result = "missed" if what == "end_missed" else "answered"
        plan.append(Step(what.removesuffix("_missed"), tuple(_key(keys[k]) for k in who), result, pauses * pause))
    return plan


def _key(person: Person) -> str:
    return person.login or person.extension or "100"


_ids = itertools.count(int(time.time()))


def render(kind: str, step: Step, *, call: str, phone: str, outgoing: bool, token: str) -> list[dict[str, Any]]:
    """The requests (httpx keyword arguments) a PBX of this kind sends for one step."""
    digits = wire_digits(phone)
    if kind == "cloudpbx":
        name = {"ring": "OUTGOING" if outgoing else "INCOMING", "answer": "ACCEPTED", "leg_over": "CANCELLED",
                "end": "COMPLETED"}[step.what]  # fmt: skip
        base = {"cmd": "event", "type": name, "callid": call, "phone": digits, "crm_token": token}
        requests = [{"data": base | {"user": who}} for who in step.who]
        if step.what == "end":
            status = "Success" if step.result == "answered" else "Missed"
            requests.append({"data": {"cmd": "history", "type": "out" if outgoing else "in", "status": status,
                                      "phone": digits, "user": step.who[0], "duration": "42", "callid": call,
                                      "crm_token": token}})  # fmt: skip
        return requests
    if kind == "planfix":
        base = {"cmd": "event", "type": "out" if outgoing else "in", "callid": call, "phone": digits,
                "planfix_token": token}  # fmt: skip
        event = {"ring": {"event": "OUTGOING" if outgoing else "INCOMING"}, "answer": {"event": "ACCEPTED"},
                 "leg_over": {"event": "COMPLETED", "status": "Cancelled"},
                 "end": {"event": "COMPLETED", "status": "Success" if step.result == "answered" else "Missed",
                         "duration": "42"}}[step.what]  # fmt: skip
        return [{"data": base | event | {"ext": who}} for who in step.who]
    if kind == "uis":
        base = {"call_session_id": call, "contact_phone_number": digits, "direction": "out" if outgoing else "in"}
        if step.what == "end" and step.result != "answered":
            return [{"json": base | {"callbridge_event": "lost_call", "employee_ids": ",".join(step.who)}}]
        event = {"ring": "outgoing_call" if outgoing else "waiting_for_answer", "answer": "talk_start",
                 "leg_over": "talk_end", "end": "call_end"}[step.what]  # fmt: skip
        extra = {"talk_time_duration": "42"} if step.what == "end" else {}
        return [{"json": base | extra | {"callbridge_event": event, "employee_id": who}} for who in step.who]
    if kind == "helpdesk":
        if step.what == "ring":
            first = {"action": "create_call", "direction": "outgoing" if outgoing else "incoming", "phone": digits,
                     "pbx_call_id": call, "pbx_user_ids[]": list(step.who)}  # fmt: skip
            return [{"data": first}]
        status = {"answer": "in-progress", "leg_over": None, "end": step.result}[step.what]
        if status is None:
            return []
        return [{"data": {"action": "update_call", "pbx_call_id": call, "call_status": status,
                          "pbx_user_id": step.who[0]}}]  # fmt: skip
    raise ValueError(f"cannot simulate {kind}")


async def play(
    base_url: str, path: str, kind: str, token: str, scenario: str, people: list[Person], phone: str, pause: float
) -> str:
    """Play one scenario; returns the call id the PBX used."""
    call = f"sim-{next(_ids)}-{random.randrange(1000)}"
    outgoing = scenario == "outgoing"
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as http:
        for step in steps(scenario, people, pause):
            for request in render(kind, step, call=call, phone=phone, outgoing=outgoing, token=token):
                response = await http.post(path, **request)
                if response.status_code >= 400:
                    raise RuntimeError(
                        f"{kind} {step.what}: the server answered {response.status_code} {response.text}"
                    )
            await asyncio.sleep(step.pause)
    return call
