"""The call engine: `(call, event) -> (call, effects)`, pure.

Effects are the difference between the call's view before and after the event, so a duplicate
or an event that teaches nothing new produces none.
"""

from __future__ import annotations

from dataclasses import dataclass

from .calls import Call, CallEvent, CallResult, LegState


@dataclass(frozen=True)
class CallOpened:
    """A call we had not seen before."""


@dataclass(frozen=True)
class CardShown:
    """An employee's phone started ringing: show them the call card."""

    employee: str


@dataclass(frozen=True)
class CardHidden:
    """An employee's phone stopped ringing (answered, cancelled, missed): hide their card."""

    employee: str
    leg_state: LegState


@dataclass(frozen=True)
class CallAnswered:
    employee: str | None


@dataclass(frozen=True)
class CallEnded:
    """The call is over, or its result changed after a late event (missed -> answered)."""

    result: CallResult


@dataclass(frozen=True)
class RecordingReady:
    """A (new) recording link: keep the file, at once if the link is temporary."""

    url: str
    temporary: bool = False


Effect = CallOpened | CardShown | CardHidden | CallAnswered | CallEnded | RecordingReady


def apply(call: Call | None, event: CallEvent) -> tuple[Call, list[Effect]]:
    """Fold one event into a call and say what changed."""
    before = call or Call(key=event.call_key)
    after = before.merge(event)
    effects: list[Effect] = [CallOpened()] if call is None else []
    effects += _diff(before, after)
    return after, effects


def _diff(before: Call, after: Call) -> list[Effect]:
    effects: list[Effect] = []
    was_ringing, now_ringing = before.ringing_employees, after.ringing_employees
    effects += [CardShown(e) for e in sorted(now_ringing - was_ringing)]
    for leg in after.legs:
        if leg.employee in was_ringing - now_ringing:
            effects.append(CardHidden(leg.employee, after.leg_state(leg)))
    if after.answered and not before.answered:
        effects.append(CallAnswered(after.answered_by))
    if after.result is not None and after.result != before.result:
        effects.append(CallEnded(after.result))
    if after.recording_url and after.recording_url != before.recording_url:
        effects.append(RecordingReady(after.recording_url, after.recording_temporary))
    return effects
