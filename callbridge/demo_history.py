"""Two weeks of calls for the demo, so a first run shows what callbridge does: answered, missed, group and outgoing
calls across the team, recordings that play, missed calls called back or still owed, and what the CRM rules made
of them (tasks, leads, contact records, calls on deals).

Every call is played the way a PBX would send it (the dialect's own fake renders each step as its requests, taken
back in time), through the same journal, engine and rules as a live call; only the recordings are written
straight into storage (short tones made here: nothing is downloaded).
"""

from __future__ import annotations

import asyncio
import functools
import io
import math
import random
import struct
import wave
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from . import flows
from .services import Services
from .simulate import Person, Step
from .store import recordings as recording_store
from .store.tables import Integration

LINE = "+74951200000"  # the company's number the demo's calls come in on


@dataclass
class Played:
    calls: int = 0
    recordings: int = 0


@dataclass(frozen=True)
class DemoCall:
    start: datetime
    phone: str
    people: tuple[Person, ...]  # whose phones ring (the first dials out, for an outgoing call)
    answered_by: Person | None  # None: missed
    outgoing: bool = False
    wait: int = 0
    talk: int = 0


def plan(people: list[Person], owners: dict[str, Person | None], *, days: int, now: datetime, zone: ZoneInfo,
         seed: int = 2026) -> list[DemoCall]:  # fmt: skip
    """The calls of `days` working days back to now: office hours, busier on weekdays; half the missed calls are
    called back within two hours. `owners` maps the clients' numbers to their managers."""
    rng = random.Random(seed)
    known = list(owners)
    calls: list[DemoCall] = []
    for back in range(days, -1, -1):
        day = (now.astimezone(zone) - timedelta(days=back)).date()
        for _ in range(rng.randint(7, 11) if day.weekday() < 5 else rng.randint(0, 2)):
            start = datetime.combine(day, time(9), zone) + timedelta(seconds=rng.randint(0, 10 * 3600))
            if start > now - timedelta(minutes=15):
                continue
            phone = rng.choice(known) if rng.random() < 0.7 else f"+79{rng.randint(10**8, 10**9 - 1)}"
            owner = owners.get(phone) or rng.choice(people)
            kind = rng.choices(["answered", "group", "missed", "outgoing"], [45, 15, 20, 20])[0]
            wait, talk = rng.randint(3, 25), rng.randint(25, 420)
            if kind == "outgoing":
                calls.append(DemoCall(start, phone, (owner,), owner, outgoing=True, wait=wait, talk=talk))
            elif kind == "answered":
                calls.append(DemoCall(start, phone, (owner,), owner, wait=wait, talk=talk))
            else:
                group = (owner, *rng.sample([p for p in people if p != owner], 1))
                answered = rng.choice(group) if kind == "group" else None
                calls.append(DemoCall(start, phone, group, answered, wait=wait if answered else 30, talk=talk))
                if answered is None and rng.random() < 0.5:  # called back
                    later = start + timedelta(minutes=rng.randint(20, 120))
                    if later < now - timedelta(minutes=5):
                        calls.append(DemoCall(later, phone, (owner,), owner, outgoing=True, wait=8, talk=90))
    return sorted(calls, key=lambda call: call.start)


def steps_of(call: DemoCall) -> list[tuple[datetime, Step]]:
    """The call's steps, each with the moment the PBX sends it."""
    answered_at = call.start + timedelta(seconds=call.wait)
    timeline = [(call.start, Step("ring", call.people))]
    if call.answered_by is None:
        return [*timeline, (answered_at, Step("end", call.people, result="missed", talk=0))]
    others = tuple(p for p in call.people if p != call.answered_by)
    timeline.append((answered_at, Step("answer", (call.answered_by,))))
    if others:
        timeline.append((answered_at, Step("leg_over", others)))
    return [*timeline, (answered_at + timedelta(seconds=call.talk), Step("end", (call.answered_by,), talk=call.talk))]


async def play(services: Services, integration: Integration, calls: list[DemoCall], side_by_side: int = 8) -> Played:
    """Each call through the journal, the engine and the rules, at the times it happened (several calls at once,
    as a PBX sends them, sharing commits); a recording for each call that was talked."""
    dialect = services.dialects[integration.kind]
    played, turns = Played(), asyncio.Semaphore(side_by_side)

    async def one(n: int, call: DemoCall) -> None:
        key, call_ids = f"demo-{n:04d}", set()
        async with turns:
            for at, step in steps_of(call):
                for request in dialect.fake(step, call=key, phone=call.phone, outgoing=call.outgoing, token="-"):
                    params = {k: str(v) for k, v in request["data"].items() if v != "-"}  # no token in the journal
                    params |= {} if call.outgoing else {"diversion": LINE[1:]}
                    command = await dialect.replay(services, integration, params, key, at)
                    call_ids.update((await flows.ingest(services, integration.id, params, command)).call_ids)
            played.calls += 1
            if call.answered_by is not None and call_ids:
                await keep_recording(services, min(call_ids), tone(seconds=2 + n % 3, seed=n % 6))
                played.recordings += 1

    await asyncio.gather(*(one(n, call) for n, call in enumerate(calls)))
    return played


async def keep_recording(services: Services, call_id: int, audio: bytes) -> None:
    """Keep `audio` as the call's recording, as an uploaded one is kept."""
    files = services.recording_files
    spooled = files.spool(str(call_id))
    spooled.write_bytes(audio)
    await files.keep(f"{call_id}.wav", spooled, "audio/x-wav")
    async with services.db.transaction() as session:
        await recording_store.keep_upload(session, call_id, file=f"{call_id}.wav", content_type="audio/x-wav",
                                          size=len(audio))  # fmt: skip


@functools.cache
def tone(seconds: float, seed: int, rate: int = 8000) -> bytes:
    """A WAV of a few soft tones that rise and fall like a voice (8 kHz mono, as telephony records)."""
    rng = random.Random(seed)
    pitches = [rng.uniform(180, 320) for _ in range(int(seconds * 3) + 1)]
    frames = bytearray()
    for n in range(int(seconds * rate)):
        pitch = pitches[n * 3 // rate]
        envelope = 0.5 - 0.5 * math.cos(2 * math.pi * ((n * 3 / rate) % 1))
        frames += struct.pack("<h", int(6000 * envelope * math.sin(2 * math.pi * pitch * n / rate)))
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(bytes(frames))
    return buffer.getvalue()

