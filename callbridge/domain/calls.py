"""The normalised call model every dialect speaks.

A `Call` holds only *facts* merged from events (earliest start, latest end, whether a leg was
answered, ...). Every merge is commutative and idempotent, and state, result and durations are
derived from the facts, so any order or repetition of the same events gives the same call.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from functools import cached_property

from pydantic import BaseModel, ConfigDict, Field


class Direction(StrEnum):
    IN = "in"
    OUT = "out"


class CallState(StrEnum):
    RINGING = "ringing"
    TALKING = "talking"
    ENDED = "ended"


class CallResult(StrEnum):
    ANSWERED = "answered"
    MISSED = "missed"
    BUSY = "busy"
    NO_ANSWER = "no_answer"
    UNAVAILABLE = "unavailable"
    NOT_ALLOWED = "not_allowed"
    FAILED = "failed"


class LegState(StrEnum):
    RINGING = "ringing"
    ANSWERED = "answered"
    CANCELLED = "cancelled"
    MISSED = "missed"


class EventKind(StrEnum):
    RING = "ring"  # an employee's phone rings, or an employee dials out
    ANSWER = "answer"  # an employee (or, outgoing, the client) picked up
    LEG_END = "leg_end"  # one employee's leg ended without talk (hunting, group answered elsewhere)
    END = "end"  # the whole call is over; also a history record of a call we never saw
    RECORDING = "recording"  # a recording link arrived (possibly late)
    NOTE = "note"  # extra analytics fields only (rating, transfer, utm, ...)


# When two events disagree, the higher rank wins whatever order they came in.
_RESULT_RANK = {r: i for i, r in enumerate(CallResult)}
_RESULT_RANK[CallResult.ANSWERED] = len(CallResult)
_CLOSE_RANK = {LegState.CANCELLED: 1, LegState.MISSED: 2}
_LIVE = frozenset({EventKind.RING, EventKind.ANSWER, EventKind.LEG_END})  # sent while the call is on


class CallEvent(BaseModel):
    """One thing a PBX told us about a call, already in our terms."""

    model_config = ConfigDict(frozen=True)

    kind: EventKind
    call_key: str = Field(min_length=1, max_length=200)
    at: datetime
    direction: Direction | None = None
    phone: str | None = None
    virtual_number: str | None = None
    employee: str | None = Field(default=None, max_length=100)
    result: CallResult | None = None
    leg_state: LegState | None = None
    started_at: datetime | None = None
    talk_seconds: int | None = Field(default=None, ge=0)
    wait_seconds: int | None = Field(default=None, ge=0)
    total_seconds: int | None = Field(default=None, ge=0)
    recording_url: str | None = None
    recording_temporary: bool = False  # the link works once: keep the file now or lose it
    recording_expected: bool = False  # the PBX recorded the call and will send the link later
    fields: dict[str, str] = Field(default_factory=dict)
    tags: tuple[str, ...] = ()


class Leg(BaseModel):
    """One employee's phone in a call: facts only, state is derived by the call."""

    model_config = ConfigDict(frozen=True)

    employee: str
    rang_at: datetime | None = None
    answered: bool = False
    answered_at: datetime | None = None
    closed_at: datetime | None = None
    closed_as: LegState | None = None

    def merge(self, other: Leg) -> Leg:
        return Leg(
            employee=self.employee,
            rang_at=_min(self.rang_at, other.rang_at),
            answered=self.answered or other.answered,
            answered_at=_min(self.answered_at, other.answered_at),
            closed_at=_max(self.closed_at, other.closed_at),
            closed_as=max((s for s in (self.closed_as, other.closed_as) if s), key=_CLOSE_RANK.get, default=None),
        )


class Call(BaseModel):
    """Everything known about one call, merged from its events."""

    model_config = ConfigDict(frozen=True)

    key: str
    direction: Direction | None = None
    phone: str | None = None
    virtual_number: str | None = None
    first_at: datetime | None = None  # earliest live event or PBX-given start time
    last_at: datetime | None = None
    ended_at: datetime | None = None
    picked_up_at: datetime | None = None  # answered, but the PBX did not say by whom
    pbx_result: CallResult | None = None
    talk_given: int | None = None
    wait_given: int | None = None
    total_given: int | None = None
    recording: tuple[int, str, bool] | None = None  # (rank, url, temporary): a recording event beats END
    recording_expected: bool = False
    fields: dict[str, str] = Field(default_factory=dict)
    tags: tuple[str, ...] = ()
    legs: tuple[Leg, ...] = ()

    # ---- derived view -------------------------------------------------------------------------
    # (the ones every other derived value asks for are kept once computed: the call is frozen)

    @cached_property
    def started_at(self) -> datetime | None:
        """When the call began; for a call known only from its end, the end minus its length."""
        if self.first_at is not None:
            return self.first_at
        if self.ended_at is not None and self.total_given is not None:
            return self.ended_at - timedelta(seconds=self.total_given)
        return self.ended_at

    @cached_property
    def answered(self) -> bool:
        """Said by the PBX, or shown by someone picking up, or by time spent talking."""
        return (
            self.pbx_result is CallResult.ANSWERED
            or self.picked_up_at is not None
            or (self.talk_given or 0) > 0
            or any(leg.answered for leg in self.legs)
        )

    @cached_property
    def answered_at(self) -> datetime | None:
        times = [leg.answered_at for leg in self.legs if leg.answered_at] + [self.picked_up_at]
        return min((t for t in times if t), default=None)

    @property
    def answered_by(self) -> str | None:
        """The first employee to pick up (by time when known, else by name, so it is stable)."""
        answered = [leg for leg in self.legs if leg.answered]
        if not answered:
            return None
        timed = [leg for leg in answered if leg.answered_at] or answered
        return min(timed, key=lambda leg: (leg.answered_at or 0, leg.employee)).employee

    @cached_property
    def state(self) -> CallState:
        if self.ended_at is not None:
            return CallState.ENDED
        return CallState.TALKING if self.answered else CallState.RINGING

    @property
    def result(self) -> CallResult | None:
        if self.ended_at is None:
            return None
        if self.answered:
            return CallResult.ANSWERED
        if self.pbx_result is not None:
            return self.pbx_result
        return CallResult.NO_ANSWER if self.direction is Direction.OUT else CallResult.MISSED

    @property
    def recording_url(self) -> str | None:
        return self.recording[1] if self.recording else None

    @property
    def recording_temporary(self) -> bool:
        return bool(self.recording and self.recording[2])

    def leg_state(self, leg: Leg) -> LegState:
        if leg.answered:
            return LegState.ANSWERED
        if leg.closed_as is not None:
            return leg.closed_as
        if self.answered:
            return LegState.CANCELLED  # someone else picked up: a group call closes the others
        if self.ended_at is not None:
            return LegState.CANCELLED if self.direction is Direction.OUT else LegState.MISSED
        return LegState.RINGING

    @property
    def ringing_employees(self) -> frozenset[str]:
        """Employees whose phone rings now (a leg known only from a note never rang)."""
        return frozenset(
            leg.employee for leg in self.legs if leg.rang_at is not None and self.leg_state(leg) is LegState.RINGING
        )

    @property
    def last_rung(self) -> str | None:
        """The employee whose phone rang last: who a missed call belongs to when nobody answered."""
        rung = [leg for leg in self.legs if leg.rang_at]
        return max(rung, key=lambda leg: (leg.rang_at, leg.employee)).employee if rung else None

    @property
    def wait_seconds(self) -> int | None:
        if self.wait_given is not None:
            return self.wait_given
        started = self.started_at
        if started is None:
            return None
        if self.answered_at is not None:
            return _seconds(self.answered_at - started)
        if self.ended_at is not None and not self.answered:
            return _seconds(self.ended_at - started)
        return None

    @property
    def talk_seconds(self) -> int | None:
        if self.talk_given is not None:
            return self.talk_given
        if not self.answered:
            return 0 if self.ended_at is not None else None
        if self.total_given is not None:
            return max(0, self.total_given - (self.wait_seconds or 0))
        if self.answered_at is not None and self.ended_at is not None:
            return _seconds(self.ended_at - self.answered_at)
        return None

    # ---- merging ------------------------------------------------------------------------------

    def merge(self, event: CallEvent) -> Call:
        """This call with one more event folded in."""
        legs = {leg.employee: leg for leg in self.legs}
        if event.employee:
            new = _leg_from(event)
            old = legs.get(event.employee)
            legs[event.employee] = old.merge(new) if old else new
        ended_at = self.ended_at
        if event.kind is EventKind.END:
            ended_at = _max(ended_at, event.at)
        recording = self.recording
        if event.recording_url:
            rank = 1 if event.kind is EventKind.RECORDING else 0
            recording = max(r for r in (recording, (rank, event.recording_url, event.recording_temporary)) if r)
        fields = dict(self.fields)
        for name, value in event.fields.items():
            fields[name] = max(fields.get(name, value), value)
        return Call(
            key=self.key,
            direction=_max(self.direction, event.direction),
            phone=_max(self.phone, event.phone),
            virtual_number=_max(self.virtual_number, event.virtual_number),
            first_at=_min(self.first_at, _min(event.started_at, event.at if event.kind in _LIVE else None)),
            last_at=_max(self.last_at, event.at),
            ended_at=ended_at,
            picked_up_at=_min(
                self.picked_up_at, event.at if event.kind is EventKind.ANSWER and not event.employee else None
            ),
            pbx_result=max(
                (r for r in (self.pbx_result, event.result if event.kind is EventKind.END else None) if r),
                key=_RESULT_RANK.get,
                default=None,
            ),
            talk_given=_max(self.talk_given, event.talk_seconds),
            wait_given=_max(self.wait_given, event.wait_seconds),
            total_given=_max(self.total_given, event.total_seconds),
            recording=recording,
            recording_expected=self.recording_expected or event.recording_expected,
            fields=dict(sorted(fields.items())),
            tags=tuple(sorted(set(self.tags) | set(event.tags))),
            legs=tuple(sorted(legs.values(), key=lambda leg: leg.employee)),
        )


def _leg_from(event: CallEvent) -> Leg:
    kind = event.kind
    # the end of the call names the employee who talked: by its result, or (with no result) by a talk time
    talked = event.result is CallResult.ANSWERED or (event.result is None and (event.talk_seconds or 0) > 0)
    answered = kind is EventKind.ANSWER or (kind is EventKind.END and talked)
    return Leg(
        employee=event.employee or "",
        rang_at=event.at if kind in (EventKind.RING, EventKind.ANSWER) else None,
        answered=answered,
        answered_at=event.at if kind is EventKind.ANSWER else None,
        closed_at=event.at if kind in (EventKind.LEG_END, EventKind.END) else None,
        closed_as=_closing_state(event) if kind is EventKind.LEG_END else None,
    )


def _closing_state(event: CallEvent) -> LegState:
    return event.leg_state if event.leg_state in _CLOSE_RANK else LegState.CANCELLED


def _min(a, b):
    return b if a is None else a if b is None else min(a, b)


def _max(a, b):
    return b if a is None else a if b is None else max(a, b)


def _seconds(delta) -> int:
    return max(0, round(delta.total_seconds()))
