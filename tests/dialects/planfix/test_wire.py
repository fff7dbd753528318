"""planfix wire format: each spec sample parses to the right events; nothing else gets past."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qsl

import pytest
from hypothesis import given, settings

from callbridge.dialects.planfix import wire
from callbridge.domain.calls import CallResult, Direction, EventKind, LegState
from callbridge.domain.pbx import CallerInfo, Events, Lookup, Ping, WireError

from ..fuzz import parses_or_is_refused, wire_params

SAMPLES = Path(__file__).with_name("samples")
NOW = datetime(2026, 11, 24, 9, 30, tzinfo=UTC)


def sample(name: str) -> dict[str, str]:
    params = dict(parse_qsl((SAMPLES / name).read_text()))
    params.pop("planfix_token")
    return params


def parse(params):
    return wire.parse(params, received_at=NOW, region="RU")


def only_event(name: str, **change):
    command = parse(sample(name) | change)
    assert isinstance(command, Events)
    (event,) = command.events
    return event


def test_spec_completed_example():
    event = only_event("event_out_completed.form")
    assert event.kind is EventKind.END and event.result is CallResult.ANSWERED
    assert event.direction is Direction.OUT and event.employee == "102" and event.phone == "+79101234567"
    assert event.total_seconds == 124 and event.recording_url == "https://link/file.mp3"
    assert event.recording_expected and event.call_key == "D10D0EB124F4E64AF4EA-1511"
    assert event.fields == {"utm_source": "site.io", "utm_medium": "banner"}


@pytest.mark.parametrize(
    "name, kind, direction",
    [
        ("event_in_incoming.form", EventKind.RING, Direction.IN),
        ("event_out_outgoing.form", EventKind.RING, Direction.OUT),
        ("event_in_accepted.form", EventKind.ANSWER, Direction.IN),
    ],
)
def test_live_events(name, kind, direction):
    event = only_event(name)
    assert event.kind is kind and event.direction is direction and event.at == NOW and event.employee


def test_completed_cancelled_closes_only_that_leg():
    event = only_event("event_in_completed_cancelled.form")
    assert event.kind is EventKind.LEG_END and event.leg_state is LegState.CANCELLED and event.employee == "102"


@pytest.mark.parametrize(
    "status, result",
    [
        ("Success", CallResult.ANSWERED),
        ("Missed", CallResult.MISSED),
        ("Busy", CallResult.BUSY),
        ("NoAnswer", CallResult.NO_ANSWER),
        ("NotAvailable", CallResult.UNAVAILABLE),
        ("NotAllowed", CallResult.NOT_ALLOWED),
        ("notallowed", CallResult.NOT_ALLOWED),
        ("", None),
    ],
)
def test_completed_statuses(status, result):
    event = only_event("event_out_completed.form", status=status)
    assert event.kind is EventKind.END and event.result is result


def test_completed_without_recording():
    event = only_event("event_in_completed_missed.form")
    assert not event.recording_expected and event.recording_url is None and event.total_seconds == 0


def test_record_permanent_and_temporary():
    permanent = only_event("record.form")
    assert permanent.kind is EventKind.RECORDING and permanent.recording_url == "https://link/file.mp3"
    assert not permanent.recording_temporary
    temporary = only_event("record_temp.form")
    assert temporary.recording_temporary and temporary.call_key == "G1"


def test_contact_and_ping():
    assert parse(sample("contact.form")) == Lookup(phone="+79101234567", call_key="D12D0EB124F4E64AF4EA-1511")
    assert parse(sample("ping.form")) == Ping()


def test_replies_match_the_spec():
    known = CallerInfo(1, "Иванов Иван Иванович", 3, "Менеджер", "andy", "103")
    assert wire.contact_reply(known) == {"contact_name": "Иванов Иван Иванович", "responsible": 103}
    no_extension = CallerInfo(1, "Иванов Иван Иванович", 3, "Менеджер", "andy", None)
    assert wire.contact_reply(no_extension) == {"contact_name": "Иванов Иван Иванович"}
    assert wire.contact_reply(None) == {}
    settings_ = {"pbx_url": "https://domain.com/path", "pbx_token": "value"}
    assert wire.ping_reply(settings_) == {"pbxToken": "value", "pbxUrl": "https://domain.com/path"}


@pytest.mark.parametrize(
    "name, change, reason",
    [
        ("event_in_incoming.form", {"cmd": "dance"}, "unknown cmd"),
        ("event_in_incoming.form", {"event": ""}, "event is missing"),
        ("event_in_incoming.form", {"type": ""}, "type is missing"),
        ("event_in_incoming.form", {"callid": ""}, "callid is missing"),
        ("event_out_completed.form", {"duration": "long"}, "duration must be a number"),
        ("event_out_completed.form", {"is_recorded": "maybe"}, "is_recorded must be 0 or 1"),
        ("record.form", {"record_link": ""}, "record_link is missing"),
        ("record.form", {"is_temp": "2"}, "is_temp must be 0 or 1"),
        ("contact.form", {"phone": ""}, "phone is missing"),
        ("event_in_incoming.form", {"ext": "1" * 150}, "employee"),
    ],
)
def test_bad_requests_are_refused_with_a_reason(name, change, reason):
    with pytest.raises(WireError, match=reason):
        parse(sample(name) | change)


@settings(max_examples=500, deadline=None)
@given(
    wire_params(
        [
            "cmd",
            "type",
            "event",
            "phone",
            "ext",
            "callid",
            "duration",
            "status",
            "is_recorded",
            "is_temp",
            "record_link",
            "data_x",
            "x",
        ],
        [
            "event",
            "record",
            "contact",
            "ping",
            "in",
            "out",
            "COMPLETED",
            "INCOMING",
            "Success",
            "Cancelled",
            "1",
            "0",
            "79101234567",
        ],
    )
)
def test_any_parameters_parse_or_are_refused_cleanly(params):
    parses_or_is_refused(parse, params, Lookup | Events | Ping)
