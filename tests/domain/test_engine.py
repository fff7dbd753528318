"""The call engine: every transition, and any order or repetition of events ends in the same call."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from callbridge.domain.calls import CallEvent, CallResult, CallState, Direction, EventKind, LegState
from callbridge.domain.engine import (
    CallAnswered,
    CallEnded,
    CallOpened,
    CardHidden,
    CardShown,
    RecordingReady,
    apply,
)

T0 = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


def ev(kind: EventKind, second: int, employee: str | None = None, **extra) -> CallEvent:
    return CallEvent(kind=kind, call_key="c1", at=T0 + timedelta(seconds=second), employee=employee, **extra)


def fold(events):
    call = None
    for event in events:
        call, _ = apply(call, event)
    return call


def effects_of(events):
    call, out = None, []
    for event in events:
        call, effects = apply(call, event)
        out.append(effects)
    return out


RING_IN = dict(direction=Direction.IN, phone="+79101234567")

GROUP_CALL = [  # Planfix spec scenario 1: the whole group rings, one answers
    ev(EventKind.RING, 0, "101", **RING_IN),
    ev(EventKind.RING, 0, "102", **RING_IN),
    ev(EventKind.RING, 0, "103", **RING_IN),
    ev(EventKind.ANSWER, 7, "102"),
    ev(EventKind.LEG_END, 7, "101", leg_state=LegState.CANCELLED),
    ev(EventKind.LEG_END, 7, "103", leg_state=LegState.CANCELLED),
    ev(EventKind.END, 67, "102", result=CallResult.ANSWERED, talk_seconds=60, recording_url="https://r/1.mp3"),
]

HUNTING = [  # Planfix spec scenario 2: one after another until the third answers
    ev(EventKind.RING, 0, "101", **RING_IN),
    ev(EventKind.LEG_END, 10, "101", leg_state=LegState.CANCELLED),
    ev(EventKind.RING, 10, "102", **RING_IN),
    ev(EventKind.LEG_END, 20, "102", leg_state=LegState.CANCELLED),
    ev(EventKind.RING, 20, "103", **RING_IN),
    ev(EventKind.ANSWER, 25, "103"),
    ev(EventKind.END, 85, "103"),
]

MISSED = [
    ev(EventKind.RING, 0, "101", **RING_IN),
    ev(EventKind.RING, 0, "102", **RING_IN),
    ev(EventKind.END, 30, None, result=CallResult.MISSED),
]

OUTGOING_BUSY = [
    ev(EventKind.RING, 0, "101", direction=Direction.OUT, phone="+74951234567"),
    ev(EventKind.END, 5, "101", result=CallResult.BUSY),
]

HISTORY_ONLY = [  # a call we only learn about afterwards
    ev(
        EventKind.END,
        200,
        "andy",
        result=CallResult.ANSWERED,
        total_seconds=124,
        direction=Direction.IN,
        phone="+79101234567",
        recording_url="https://link/file.mp3",
    ),
]

SCENARIOS = {
    "group": GROUP_CALL,
    "hunting": HUNTING,
    "missed": MISSED,
    "busy": OUTGOING_BUSY,
    "history": HISTORY_ONLY,
}


def test_group_call_answered_by_one_cancels_the_others():
    call = fold(GROUP_CALL)
    assert call.state is CallState.ENDED and call.result is CallResult.ANSWERED
    assert call.answered_by == "102"
    assert {leg.employee: call.leg_state(leg) for leg in call.legs} == {
        "101": LegState.CANCELLED,
        "102": LegState.ANSWERED,
        "103": LegState.CANCELLED,
    }
    assert call.wait_seconds == 7 and call.talk_seconds == 60
    assert call.recording_url == "https://r/1.mp3"


def test_answer_hides_every_other_card_even_without_their_cancel_events():
    call = fold(GROUP_CALL[:3])
    call, effects = apply(call, GROUP_CALL[3])
    assert set(effects) == {
        CardHidden("101", LegState.CANCELLED),
        CardHidden("102", LegState.ANSWERED),
        CardHidden("103", LegState.CANCELLED),
        CallAnswered("102"),
    }
    assert call.state is CallState.TALKING and call.ringing_employees == frozenset()


def test_hunting_rings_one_after_another():
    steps = effects_of(HUNTING)
    assert steps[0] == [CallOpened(), CardShown("101")]
    assert steps[1] == [CardHidden("101", LegState.CANCELLED)]
    assert steps[2] == [CardShown("102")]
    call = fold(HUNTING)
    assert call.answered_by == "103" and call.result is CallResult.ANSWERED
    assert call.wait_seconds == 25 and call.talk_seconds == 60
    assert [call.leg_state(leg) for leg in call.legs] == [
        LegState.CANCELLED,
        LegState.CANCELLED,
        LegState.ANSWERED,
    ]


def test_missed_call_marks_every_leg_missed():
    call = fold(MISSED)
    assert call.result is CallResult.MISSED and call.answered_by is None
    assert [call.leg_state(leg) for leg in call.legs] == [LegState.MISSED, LegState.MISSED]
    assert call.wait_seconds == 30 and call.talk_seconds == 0
    assert call.last_rung in {"101", "102"}


def test_outgoing_busy_keeps_the_pbx_result():
    call = fold(OUTGOING_BUSY)
    assert call.direction is Direction.OUT and call.result is CallResult.BUSY
    assert call.legs[0].employee == "101" and call.leg_state(call.legs[0]) is LegState.CANCELLED


def test_end_without_result_is_missed_incoming_and_no_answer_outgoing():
    assert fold([ev(EventKind.RING, 0, "1", direction=Direction.IN), ev(EventKind.END, 9)]).result is CallResult.MISSED
    assert (
        fold([ev(EventKind.RING, 0, "1", direction=Direction.OUT), ev(EventKind.END, 9)]).result is CallResult.NO_ANSWER
    )


def test_history_only_call_is_complete():
    call, effects = apply(None, HISTORY_ONLY[0])
    assert call.result is CallResult.ANSWERED and call.answered_by == "andy"
    assert call.talk_seconds == 124 and call.started_at == T0 + timedelta(seconds=200 - 124)
    assert effects == [
        CallOpened(),
        CallAnswered("andy"),
        CallEnded(CallResult.ANSWERED),
        RecordingReady("https://link/file.mp3"),
    ]


def test_history_after_live_events_keeps_the_live_start():
    live = [
        ev(EventKind.RING, 0, "andy", **RING_IN),
        ev(EventKind.ANSWER, 4, "andy"),
        ev(EventKind.END, 128, "andy"),
    ]
    history = ev(EventKind.END, 129, "andy", result=CallResult.ANSWERED, total_seconds=124)
    call = fold(live + [history])
    assert call.started_at == T0 and call.wait_seconds == 4 and call.talk_seconds == 120


def test_an_answer_without_an_employee_still_answers_the_call():
    call = fold([ev(EventKind.RING, 0, "a", **RING_IN), ev(EventKind.RING, 0, "b", **RING_IN), ev(EventKind.ANSWER, 6)])
    assert (
        call.state is CallState.TALKING and call.answered_by is None and call.answered_at == T0 + timedelta(seconds=6)
    )
    assert call.ringing_employees == frozenset()  # nobody's card stays up
    call = fold([*[ev(EventKind.RING, 0, "a", **RING_IN), ev(EventKind.ANSWER, 6)], ev(EventKind.END, 66)])
    assert call.result is CallResult.ANSWERED and call.talk_seconds == 60


def test_completed_before_accepted_still_ends_answered():
    call = fold([ev(EventKind.RING, 0, "a", **RING_IN), ev(EventKind.END, 60, "a"), ev(EventKind.ANSWER, 5, "a")])
    assert call.result is CallResult.ANSWERED and call.talk_seconds == 55


def test_late_answer_turns_a_missed_call_into_answered_with_an_effect():
    call = fold([ev(EventKind.RING, 0, "a", **RING_IN), ev(EventKind.END, 60)])
    assert call.result is CallResult.MISSED
    call, effects = apply(call, ev(EventKind.ANSWER, 5, "a"))
    assert CallEnded(CallResult.ANSWERED) in effects and call.result is CallResult.ANSWERED


def test_recording_before_completion_is_kept_and_a_dedicated_one_wins():
    call = fold(
        [
            ev(EventKind.RECORDING, 100, recording_url="https://r/late.mp3"),
            ev(EventKind.RING, 0, "a", **RING_IN),
            ev(EventKind.END, 60, "a", recording_url="https://r/early.mp3"),
        ]
    )
    assert call.recording_url == "https://r/late.mp3"


def test_duplicate_event_has_no_effect():
    call = fold(GROUP_CALL)
    for event in GROUP_CALL:
        again, effects = apply(call, event)
        assert again == call and effects == []


def test_fields_and_tags_merge():
    call = fold(
        [
            ev(EventKind.NOTE, 1, fields={"rating": "5"}, tags=("vip",)),
            ev(EventKind.NOTE, 2, fields={"utm_source": "site"}, tags=("new",)),
        ]
    )
    assert call.fields == {"rating": "5", "utm_source": "site"} and call.tags == ("new", "vip")


def test_facts_survive_a_round_trip_through_json():
    call = fold(GROUP_CALL)
    assert type(call).model_validate(call.model_dump(mode="json")) == call


# ---- properties ---------------------------------------------------------------------------------

scenario_events = st.sampled_from(list(SCENARIOS.values()))


@st.composite
def delivered(draw):
    """A scenario and the same events as a PBX might deliver them: shuffled, some repeated."""
    events = draw(scenario_events)
    repeats = draw(st.lists(st.sampled_from(events), max_size=len(events)))
    return events, draw(st.permutations(events + repeats))


@settings(max_examples=300, deadline=None)
@given(delivered())
def test_any_order_or_repetition_ends_in_the_same_call(case):
    events, shuffled = case
    assert fold(shuffled) == fold(events)


def arbitrary_event():
    return st.builds(
        CallEvent,
        kind=st.sampled_from(EventKind),
        call_key=st.just("c1"),
        at=st.integers(0, 600).map(lambda s: T0 + timedelta(seconds=s)),
        employee=st.sampled_from([None, "101", "102", "103"]),
        direction=st.sampled_from([None, Direction.IN, Direction.OUT]),
        result=st.sampled_from([None, *CallResult]),
        leg_state=st.sampled_from([None, LegState.CANCELLED, LegState.MISSED]),
        talk_seconds=st.one_of(st.none(), st.integers(0, 500)),
        total_seconds=st.one_of(st.none(), st.integers(0, 500)),
        recording_url=st.sampled_from([None, "https://r/a.mp3", "https://r/b.mp3"]),
        fields=st.dictionaries(st.sampled_from(["rating", "utm"]), st.sampled_from(["1", "5"]), max_size=2),
    )


@settings(max_examples=300, deadline=None)
@given(st.lists(arbitrary_event(), min_size=1, max_size=12), st.randoms(use_true_random=False))
def test_merging_is_order_independent_for_arbitrary_events(events, rnd):
    shuffled = list(events) + rnd.sample(events, k=min(3, len(events)))
    rnd.shuffle(shuffled)
    assert fold(shuffled) == fold(events)


@settings(max_examples=200, deadline=None)
@given(st.lists(arbitrary_event(), min_size=1, max_size=12))
def test_view_is_always_consistent(events):
    call = fold(events)
    assert (call.result is None) == (call.state is not CallState.ENDED)
    if call.result is CallResult.ANSWERED or call.state is CallState.TALKING:
        assert call.answered
    ringing = call.ringing_employees
    if call.state is not CallState.RINGING:
        assert ringing == frozenset()  # nobody's card stays up once the call is answered or over
    assert call.talk_seconds is None or call.talk_seconds >= 0
    assert call.wait_seconds is None or call.wait_seconds >= 0
