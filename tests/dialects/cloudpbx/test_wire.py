"""cloudpbx wire format: each spec sample parses to the right events; nothing else gets past."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qsl

import pytest
from hypothesis import given, settings

from callbridge.dialects.cloudpbx import wire
from callbridge.domain.calls import CallResult, Direction, EventKind, LegState
from callbridge.domain.pbx import CallerInfo, Events, Lookup, WireError

from ..fuzz import parses_or_is_refused, wire_params

SAMPLES = Path(__file__).with_name("samples")
NOW = datetime(2026, 11, 24, 9, 30, tzinfo=UTC)


def sample(name: str) -> dict[str, str]:
    body = (SAMPLES / name).read_text()
    params = json.loads(body) if name.endswith(".json") else dict(parse_qsl(body))
    params = {k: str(v) for k, v in params.items()}
    params.pop("crm_token")
    return params


def parse(params):
    return wire.parse(params, received_at=NOW, region="RU")


@pytest.mark.parametrize(
    "name, kind, employee, direction, extra",
    [
        ("event_incoming.form", EventKind.RING, "andy", Direction.IN, {}),
        ("event_incoming.json", EventKind.RING, "andy", Direction.IN, {"virtual_number": "+74950000000"}),
        ("event_outgoing.form", EventKind.RING, "andy", Direction.OUT, {"virtual_number": "+74950000000"}),
        ("event_accepted.form", EventKind.ANSWER, "andy", None, {}),
        ("event_completed.form", EventKind.END, "andy", None, {"result": None}),
        ("event_cancelled.form", EventKind.LEG_END, "andy", None, {"leg_state": LegState.CANCELLED}),
        ("event_transferred.form", EventKind.NOTE, "andy", None, {"fields": {"transferred_to": "B11"}}),
        ("rating.form", EventKind.NOTE, "andy", None, {"fields": {"rating": "5"}}),
    ],
)
def test_event_samples(name, kind, employee, direction, extra):
    command = parse(sample(name))
    assert isinstance(command, Events)
    (event,) = command.events
    assert event.kind is kind and event.employee == employee and event.direction == direction
    assert event.call_key in {"B10D0EB124F4E64AF4EA-1511", "D30"}
    assert event.at == NOW
    for field, value in extra.items():
        assert getattr(event, field) == value


def test_history_success_is_an_answered_end_with_recording():
    for name in ("history_in_success.form", "history_in_success.json"):
        (event,) = parse(sample(name)).events
        assert event.kind is EventKind.END and event.result is CallResult.ANSWERED
        assert event.direction is Direction.IN and event.phone == "+79101234567"
        assert event.total_seconds == 124 and event.recording_url == "https://link/file.mp3"
        assert event.started_at is None and event.at == NOW


def test_history_with_start_time_and_busy_status():
    (event,) = parse(sample("history_out_busy.form")).events
    assert event.result is CallResult.BUSY and event.direction is Direction.OUT
    assert event.started_at == datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
    assert event.at == event.started_at and event.virtual_number == "+74950000000"


def test_history_status_is_case_insensitive():
    (event,) = parse(sample("history_out_lowercase_status.form")).events
    assert event.result is CallResult.UNAVAILABLE and event.phone == "+79161112233"


def test_unknown_history_status_is_kept_not_guessed():
    params = sample("history_in_success.form") | {"status": "Teleported"}
    (event,) = parse(params).events
    assert event.result is None and event.fields["pbx_status"] == "Teleported"


def test_contact_is_a_lookup():
    command = parse(sample("contact.form"))
    assert command == Lookup(phone="+79101234567", call_key="B10D0EB124F4E64AF4EA-1511")


@pytest.mark.parametrize("raw", ["79101234567", "+79101234567", "89101234567", "8 (910) 123-45-67", "9101234567"])
def test_phone_spellings_all_normalise(raw):
    assert parse({"cmd": "contact", "phone": raw}).phone == "+79101234567"


def test_hidden_number_is_a_call_without_a_number():
    (event,) = parse(sample("history_in_success.form") | {"phone": "anonymous"}).events
    assert event.phone is None and event.fields == {"pbx_phone": "anonymous"}
    assert parse({"cmd": "contact", "phone": "anonymous"}) == Lookup(phone=None, call_key=None)


def test_group_login_is_not_an_employee():
    (event,) = parse(sample("event_incoming.form") | {"user": "g_sales"}).events
    assert event.employee is None


def test_start_accepts_iso_too():
    params = sample("history_out_busy.form") | {"start": "2026-11-24T12:00:00+03:00"}
    (event,) = parse(params).events
    assert event.started_at == datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
    assert event.at - event.started_at == timedelta(0)


@pytest.mark.parametrize(
    "change, reason",
    [
        ({"cmd": ""}, "cmd is missing"),
        ({"cmd": "reboot"}, "unknown cmd"),
        ({"callid": ""}, "callid is missing"),
        ({"type": ""}, "type is missing"),
        ({"duration": "long"}, "duration must be a number"),
        ({"duration": "-5"}, "out of range"),
        ({"phone": ""}, "phone is missing"),
        ({"status": ""}, "status is missing"),
        ({"start": "yesterday"}, "is not a time"),
        ({"link": "x" * 5000}, "too long"),
        ({"callid": "c" * 300}, "call_key"),
        ({"user": "u" * 150}, "employee"),
    ],
)
def test_bad_history_is_refused_with_a_reason(change, reason):
    with pytest.raises(WireError, match=reason):
        parse(sample("history_in_success.form") | change)


def test_an_event_type_we_do_not_know_is_kept_not_refused():
    (event,) = parse(sample("event_incoming.form") | {"type": "Parked"}).events
    assert event.kind is EventKind.NOTE and event.fields["pbx_type"] == "Parked" and event.employee == "andy"
    (ring,) = parse(sample("event_incoming.form") | {"type": "InComing"}).events  # case does not matter
    assert ring.kind is EventKind.RING and ring.direction is Direction.IN


@pytest.mark.parametrize(
    "status, result",
    [("NotAvaliable", CallResult.UNAVAILABLE), ("no_answer", CallResult.NO_ANSWER), ("SUCCESS", CallResult.ANSWERED),
     ("Teleported", None)],
)  # fmt: skip
def test_history_statuses_are_read_leniently_and_unknown_ones_kept(status, result):
    (event,) = parse(sample("history_in_success.form") | {"status": status}).events
    assert event.kind is EventKind.END and event.result is result
    assert event.fields.get("pbx_status") == (status if result is None else None)


def test_contact_reply_shapes():
    known = CallerInfo(1, "ООО Ромашка", 2, "Дария", "daria", "101")
    assert wire.contact_reply(known) == {"contact_name": "ООО Ромашка", "responsible": "daria"}
    assert wire.contact_reply(replace(known, responsible_login=None)) == {"contact_name": "ООО Ромашка"}
    assert wire.contact_reply(None) == {}


@settings(max_examples=500, deadline=None)
@given(
    wire_params(
        ["cmd", "type", "phone", "user", "callid", "duration", "status", "start", "link", "ext", "x"],
        ["history", "event", "contact", "rating", "INCOMING", "in", "Success", "79101234567", "12"],
    )
)
def test_any_parameters_parse_or_are_refused_cleanly(params):
    parses_or_is_refused(parse, params, Lookup | Events)
