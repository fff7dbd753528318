"""uis wire format: every seed notification and template parses; broken hand-written JSON is repaired."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlencode

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callbridge.dialects.uis import templates, wire
from callbridge.domain.calls import CallResult, Direction, EventKind, LegState
from callbridge.domain.pbx import WireError

SAMPLES = Path(__file__).with_name("samples")
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def parse_sample(name: str):
    params = wire.flatten(wire.read_json((SAMPLES / name).read_bytes()))
    return wire.parse(params, received_at=NOW, region="RU")


def at(h: int, m: int, s: int) -> datetime:
    return datetime(2026, 11, 24, h, m, s, tzinfo=UTC)


@pytest.mark.parametrize(
    "name, kind, event_kind, employee, when",
    [
        ("000_1_incoming_call.json", wire.INCOMING, EventKind.RING, None, at(9, 0, 0)),  # Moscow time, no zone
        ("000_4_waiting_for_answer.json", wire.WAITING, EventKind.RING, "1001", at(9, 0, 3)),  # unix seconds
        ("000_6_talk_start.json", wire.TALK_START, EventKind.ANSWER, "1001", at(9, 0, 15)),
        ("000_7_talk_end.json", wire.TALK_END, EventKind.LEG_END, "1001", at(9, 1, 50)),
        ("000_2_call_end.json", wire.CALL_END, EventKind.END, "1001", at(9, 1, 50)),
        ("000_3_recorded_call.json", wire.RECORDED, EventKind.RECORDING, "1001", at(9, 2, 30)),
        ("000_5_outgoing_call.json", wire.OUTGOING, EventKind.RING, "1002", at(10, 0, 0)),
        ("001_ringing.json", wire.WAITING, EventKind.RING, "101", NOW),
        ("001_answered.json", wire.TALK_START, EventKind.ANSWER, "101", NOW),
        ("001_hangup.json", wire.CALL_END, EventKind.END, "101", NOW),
    ],
)
def test_each_notification(name, kind, event_kind, employee, when):
    command = parse_sample(name)
    assert command.command == kind
    (event,) = command.events
    assert event.kind is event_kind and event.employee == employee and event.at == when
    assert event.phone in ("+79101234567", "+74951234567")


def test_incoming_call_details():
    (event,) = parse_sample("000_1_incoming_call.json").events
    assert event.direction is Direction.IN and event.virtual_number == "+74950000000"
    assert event.call_key == "3342129" and event.fields["scenario_name"] == "Основной сценарий"
    assert event.fields["contact_full_name"] == "Иванов Иван"


def test_call_end_carries_durations_and_tags():
    (event,) = parse_sample("000_2_call_end.json").events
    assert (event.talk_seconds, event.wait_seconds, event.total_seconds) == (95, 15, 110)
    assert event.tags == ("VIP", "Повторный") and event.direction is Direction.IN


def test_recording_and_list_values():
    (event,) = parse_sample("000_3_recorded_call.json").events
    assert event.recording_url == "https://app.uiscom.ru/system/media/talk/3342129/0f1e2d/"
    assert event.tags == ("VIP", "Повторный") and event.fields["file_duration"] == "95"


def test_lost_call_misses_every_employee_it_rang():
    command = parse_sample("000_8_lost_call.json")
    assert command.command == wire.LOST
    legs, end = command.events[:-1], command.events[-1]
    assert [(e.kind, e.employee, e.leg_state) for e in legs] == [
        (EventKind.LEG_END, "1001", LegState.MISSED), (EventKind.LEG_END, "1002", LegState.MISSED)]  # fmt: skip
    assert end.kind is EventKind.END and end.result is CallResult.MISSED and end.wait_seconds == 40


def test_missed_template_with_null_extension():
    (end,) = parse_sample("001_missed.json").events
    assert end.kind is EventKind.END and end.result is CallResult.MISSED and end.employee is None
    assert end.call_key == "3342600" and end.phone == "+79261112233"


def test_hangup_template_keeps_the_bare_recording_url():
    (event,) = parse_sample("001_hangup.json").events
    assert event.recording_url == "https://app.uiscom.ru/system/media/talk/3342500/aa11/"


def test_our_own_bodies_round_trip():
    """The bodies `integration add uis` prints, filled in by UIS, parse to the kind they announce."""
    values = {"call_session_id": "77", "notification_time": "1795597200", "contact_phone_number": "79101234567",
              "virtual_phone_number": "74950000000", "direction": "in", "employee_id": "1001", "leg_id": "5",
              "leg_ids": "5", "employee_ids": "1001", "file_link": "https://r/1.mp3", "talk_time_duration": "3",
              "total_time_duration": "9", "wait_time_duration": "6",
              "employee_phone_number": "79160000002"}  # fmt: skip
    for notification in templates.notification_bodies():
        body = notification["body"]
        for name, value in values.items():
            body = body.replace("{{" + name + "}}", value)
        body = body.replace('"{{', '"').replace('}}"', '"')  # variables UIS leaves empty
        command = wire.parse(wire.flatten(wire.read_json(body.encode())), received_at=NOW, region="RU")
        assert command.command == json.loads(body)["callbridge_event"]


def test_extra_and_missing_keys_are_fine():
    params = {"call_state": "ANSWERED", "call_id": "9", "surprise": "yes", "user_extension": "102"}
    (event,) = wire.parse(params, received_at=NOW, region="RU").events
    assert event.kind is EventKind.ANSWER and event.phone is None and event.employee == "102"


@pytest.mark.parametrize(
    "body, reason",
    [
        (b"[1, 2]", "must be a JSON object"),
        (b"{not json at all", "not JSON even after repair"),
        (b"\xff\xfe", "not UTF-8"),
        (b'{"call_state": "EXPLODED", "call_id": "1"}', "call_state 'EXPLODED' is unknown"),
        (b'{"callbridge_event": "party", "call_session_id": "1"}', "callbridge_event 'party' is unknown"),
        (b'{"call_state": "RINGING"}', "call_session_id is missing"),
        (b'{"hello": "world"}', "cannot tell which notification"),
        (b'{"call_state": "HANGUP", "call_id": "1", "talk_time_duration": "long"}', "talk_time_duration"),
        (b'{"call_state": "HANGUP", "call_id": "1", "notification_time": "soon"}', "is not a time"),
        (b'{"call_state": "HANGUP", "call_id": "1", "notification_time": "1e30"}', "out of range"),
    ],
)
def test_bodies_that_cannot_be_events_get_a_reason(body, reason):
    with pytest.raises(WireError, match=reason):
        wire.parse(wire.flatten(wire.read_json(body)), received_at=NOW, region="RU")


def test_repair_turns_bare_words_into_strings_and_gaps_into_null():
    data = wire.read_json(b'{"direction":in, "employee_id":, "n": 12, "ok": true, "t": 2026-11-24 12:00:00}')
    assert data == {"direction": "in", "employee_id": None, "n": 12, "ok": True, "t": "2026-11-24 12:00:00"}


LITERALS = ("true", "false", "null", "NaN", "Infinity", "-Infinity")  # what JSON (or Python's reader) takes bare
TEXT = st.characters(blacklist_categories=("Cs", "Cc"))
BARE = st.text(st.characters(blacklist_characters='",{}[]\\', blacklist_categories=("Cs", "Cc")), min_size=1,
               max_size=20).map(str.strip).filter(lambda v: v and v not in LITERALS and not
                                                  v.lstrip("-").replace(".", "", 1).isdigit())  # fmt: skip
PLACEHOLDER = st.one_of(
    BARE.map(lambda v: (f" {v}", v)),  # a value put in without quotes
    st.just(("", None)),  # an empty variable
    st.text(TEXT, max_size=20).map(lambda v: (json.dumps(v, ensure_ascii=False), v)),  # a quoted one, as written
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.from_regex(r"[a-z_]{1,12}", fullmatch=True), PLACEHOLDER, min_size=1, max_size=8))
def test_a_template_with_placeholders_left_bare_or_empty_is_read_back(values):
    """What UIS makes of `"key":{{variable}}`: each value put in as it is (a string without quotes, nothing for an
    empty variable); quoted strings, colons and commas inside them included, stay as they were."""
    body = "{" + ", ".join(f'"{key}":{written}' for key, (written, _) in values.items()) + "}"
    assert wire.read_json(body.encode()) == {key: value for key, (_, value) in values.items()}


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_any_body_parses_or_is_refused_cleanly(body):
    try:
        wire.parse(wire.flatten(wire.read_json(body)), received_at=NOW, region="RU")
    except WireError:
        pass


def test_a_notification_reads_the_same_as_json_as_a_form_or_in_the_query_string():
    """A customer may write the template as a form, or put it in the URL (a GET notification): the same fields."""
    as_json = json.loads((SAMPLES / "000_2_call_end.json").read_bytes())
    expected = wire.flatten(as_json)
    form = urlencode(expected).encode()
    assert wire.read_notification("", form, "application/x-www-form-urlencoded") == expected
    assert wire.read_notification("", form, "text/plain") == expected  # a form, whatever the header says
    assert wire.read_notification(urlencode(expected), b"", "") == expected
    # the query string under a JSON body: the body's values win
    query = urlencode({"callbridge_event": "call_end", "talk_time_duration": "1"})
    both = wire.read_notification(query, json.dumps(as_json).encode(), "application/json")
    assert both == expected | {"callbridge_event": "call_end"}


@pytest.mark.parametrize("query, body, content_type", [("", b"", ""), ("", b"  ", "application/json"),
                                                       ("&&", b"", ""), ("", b"hello", "text/plain"),
                                                       ("", b"\xff\xfe", ""), ("x=\x00", b"", "")])  # fmt: skip
def test_a_notification_that_is_neither_json_nor_a_form_is_refused(query, body, content_type):
    with pytest.raises(WireError):
        wire.read_notification(query, body, content_type)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80), st.binary(max_size=120) | st.text(max_size=120).map(str.encode),
       st.sampled_from(["", "application/json", "application/x-www-form-urlencoded", "text/plain"]))  # fmt: skip
def test_any_query_and_body_parse_or_are_refused_cleanly(query, body, content_type):
    try:
        wire.parse(wire.read_notification(query, body, content_type), received_at=NOW, region="RU")
    except WireError:
        pass


json_values = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=30),
                        st.lists(st.integers(), max_size=3))  # fmt: skip
keys = st.sampled_from(["call_state", "callbridge_event", "call_id", "call_session_id", "employee_id", "leg_id",
                        "leg_ids", "file_link", "talk_time_duration", "total_time_duration", "employee_ids",
                        "notification_time", "contact_phone_number", "direction", "x"])  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(keys, json_values, max_size=8))
def test_any_json_object_parses_or_is_refused_cleanly(data):
    try:
        wire.parse(wire.flatten(data), received_at=NOW, region="RU")
    except WireError:
        pass


# ---- Data API calls report (back-fill) ----------------------------------------------------------

REPORT = json.loads((SAMPLES / "data_api_calls_report.json").read_text())["result"]["data"]


def history(row):
    params = wire.report_params(row, zone="Europe/Moscow", media_url="https://app.uiscom.ru/system/media/talk")
    return params, wire.parse(params, received_at=NOW, region="RU")


def test_an_answered_call_from_the_report_is_the_whole_call():
    params, command = history(REPORT[0])
    assert params["call_session_id"] == "3342129" and params["start_time"] == "2026-11-24T09:00:00+00:00"
    (end,) = command.events
    assert (end.kind, end.result, end.employee, end.direction) == (EventKind.END, CallResult.ANSWERED, "1001",
                                                                    Direction.IN)  # fmt: skip
    assert (end.started_at, end.at) == (at(9, 0, 0), at(9, 1, 50))
    assert (end.talk_seconds, end.wait_seconds, end.total_seconds) == (95, 15, 110)
    assert end.recording_url == "https://app.uiscom.ru/system/media/talk/3342129/0f1e2d/"


def test_a_lost_call_from_the_report_was_missed_by_everyone_it_rang():
    _, command = history(REPORT[1])
    assert [(e.kind, e.employee, e.leg_state or e.result) for e in command.events] == [
        (EventKind.LEG_END, "1001", LegState.MISSED),
        (EventKind.LEG_END, "1002", LegState.MISSED),
        (EventKind.END, None, CallResult.MISSED),
    ]


def test_an_outgoing_call_from_the_report():
    _, command = history(REPORT[2])
    (end,) = command.events
    assert (end.direction, end.employee, end.result, end.talk_seconds) == (Direction.OUT, "1002",
                                                                            CallResult.ANSWERED, 60)  # fmt: skip


def test_a_report_row_without_an_id_is_refused():
    with pytest.raises(WireError, match="without an id"):
        history(REPORT[3])


report_values = st.one_of(json_values, st.lists(st.dictionaries(st.sampled_from(["employee_id", "x"]),
                                                                 json_values, max_size=2), max_size=3))  # fmt: skip
report_keys = st.sampled_from([*wire.REPORT_FIELDS, "x"])


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(report_keys, report_values, max_size=10) | json_values)
def test_any_report_row_reads_or_is_refused_cleanly(row):
    try:
        history(row)
    except WireError:
        pass
