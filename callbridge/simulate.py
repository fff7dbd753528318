"""Play realistic calls against a running callbridge, as each kind of PBX would send them.

A scenario is a list of steps in our own terms (ring, answer, leg over, end); each dialect renders a
step as its PBX's request. Used after `callbridge demo` to watch the workspace come alive.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

SCENARIOS = ("group", "hunting", "missed", "outgoing")


@dataclass(frozen=True)
class Step:
    what: str  # ring | answer | leg_over | end
    who: tuple[Person, ...] = ()  # the employees whose phones take part
    result: str = "answered"  # for end
    pause: float = 0.0  # seconds to wait before the next step
    talk: int = 42  # for end: how long they talked, in seconds


@dataclass(frozen=True)
class Person:
    login: str | None
    extension: str | None

    @property
    def key(self) -> str:
        """How most PBXs name the employee: their login, else their extension."""
        return self.login or self.extension or "100"


RING = "ring"  # a pause as long as phones ring before anyone answers (`ring` seconds), not `pause`


def steps(scenario: str, people: list[Person], pause: float, ring: float = 5.0) -> list[Step]:
    """The steps of a scenario with these employees (at least one; three for hunting); phones ring `ring` seconds
    before anyone answers, so a person watching sees the card ring (both cards, in a group call)."""
    a, b, c = (people * 3)[:3]
    keys = {"a": a, "b": b, "c": c}
    plans = {
        "group": [("ring", "ab", RING), ("answer", "b", 1), ("leg_over", "a", 0), ("end", "b", 1)],
        "hunting": [
            ("ring", "a", RING),
            ("leg_over", "a", 0),
            ("ring", "b", RING),
            ("leg_over", "b", 0),
            ("ring", "c", RING),
            ("answer", "c", 1),
            ("end", "c", 1),
        ],
        "missed": [("ring", "ab", RING), ("end_missed", "ab", 0)],
        "outgoing": [("ring", "a", RING), ("answer", "a", 1), ("end", "a", 0)],
    }
    plan = []
    for what, who, pauses in plans[scenario]:
        result = "missed" if what == "end_missed" else "answered"
        waits = ring if pauses == RING else pauses * pause
        plan.append(Step(what.removesuffix("_missed"), tuple(keys[k] for k in who), result, waits))
    return plan


_ids = itertools.count(int(time.time()))
# (step, call=, phone=, outgoing=, token=) -> the requests (httpx keyword arguments) the PBX sends for it
Render = Callable[..., list[dict[str, Any]]]


async def play(
    base_url: str,
    path: str,
    render: Render,
    token: str,
    scenario: str,
    people: list[Person],
    phone: str,
    pause: float,
    ring: float = 5.0,
) -> str:
    """Play one scenario, each step rendered as the PBX's requests by its dialect's fake; returns the call id."""
    call = f"sim-{next(_ids)}-{random.randrange(1000)}"
    outgoing = scenario == "outgoing"
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as http:
        for step in steps(scenario, people, pause, ring):
            for request in render(step, call=call, phone=phone, outgoing=outgoing, token=token):
                response = await http.post(path, **request)
                if response.status_code >= 400:
                    raise RuntimeError(f"{step.what}: the server answered {response.status_code} {response.text}")
            await asyncio.sleep(step.pause)
    return call
