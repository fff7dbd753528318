"""HelpDeskEddy requests -> validated call requests -> call events, table-driven, and fuzzed."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callbridge.dialects.helpdesk import wire
from callbridge.domain.calls import CallResult, Direction, EventKind
from callbridge.domain.pbx import WireError

SAMPLES = Path(__file__).parent / "samples"
AT = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


def sample(name: str) -> dict[str, list[str]]:
    return parse_qs((SAMPLES / name).read_text().strip(), keep_blank_values=True)


def form(**values) -> dict[str, list[str]]:
    return {k.replace("__", "[]"): v if isinstance(v, list) else [v] for k, v in values.items()}


def test_the_documented_samples_parse():
    created = wire.parse(sample("create_call.form"), region="RU")
    assert created.action == "create_call" and created.direction is Direction.OUT and created.status == "ringing"
    assert created.comment == "start"
    updated = wire.parse(sample("update_call.form"), region="RU")
    assert (updated.action, updated.call_id, updated.user_id, updated.status) == ("update_call", 725, 1, "canceled")


@pytest.mark.parametrize(
    "values, problem",
    [
        ({}, "action is missing"),
        ({"action": "delete_call"}, "action must be"),
        ({"action": "create_call", "direction": "incoming"}, "phone is missing"),
        ({"action": "create_call", "phone": "79101234567"}, "direction is missing"),
        ({"action": "create_call", "direction": "incoming", "phone": "79101234567", "user_ids__": ["1"],
          "group_ids__": ["2"]}, "only one of"),
        ({"action": "create_call", "direction": "incoming", "phone": "79101234567", "user_ids__": ["²"]},
         "must be a number"),
        ({"action": "create_call", "direction": "incoming", "phone": "79101234567", "pbx_call_id": "x" * 201},
         "longer than 200"),
        ({"action": "update_call", "call_status": "answered"}, "call_id or pbx_call_id is missing"),
        ({"action": "update_call", "call_status": "answered", "call_id": "1", "pbx_call_id": "a"}, "got both"),
        ({"action": "update_call", "call_status": "answered", "call_id": str(2**31)}, "must be a number"),
        ({"action": "update_call", "call_id": "1"}, "call_status is missing"),
    ],
)  # fmt: skip
def test_bad_requests_name_their_problem(values, problem):
    with pytest.raises(WireError, match=problem):
        wire.parse(form(**values), region="RU")


@pytest.mark.parametrize(
    "status, employees, kinds, result",
    [
        ("ringing", ["id:1", "id:2"], [EventKind.RING, EventKind.RING], None),
        ("in-progress", ["id:1"], [EventKind.ANSWER], None),
        ("in-progress", ["id:1", "id:2"], [EventKind.RING, EventKind.RING, EventKind.ANSWER], None),
        ("answered", ["id:1"], [EventKind.RING, EventKind.END], CallResult.ANSWERED),
        ("missed", [], [EventKind.END], CallResult.MISSED),
    ],
)
def test_a_created_call_becomes_the_events_it_means(status, employees, kinds, result):
    request = wire.parse(form(action="create_call", direction="incoming", phone="79101234567", call_status=status),
                         region="RU")  # fmt: skip
    events = wire.events(request, call_key="c-1", employees=employees, at=AT)
    assert [e.kind for e in events] == kinds
    assert events[-1].result == result and all(e.phone == "+79101234567" for e in events)


def test_an_update_that_names_who_answered_binds_them():
    request = wire.parse(form(action="update_call", pbx_call_id="c-1", call_status="answered", user_id="3"),
                         region="RU")  # fmt: skip
    (end,) = wire.events(request, call_key="c-1", employees=["id:3"], at=AT)
    assert end.kind is EventKind.END and end.result is CallResult.ANSWERED and end.employee == "id:3"


NAMES = ["action", "direction", "phone", "call_status", "pbx_call_id", "call_id", "user_id", "pbx_user_id",
         "user_ids[]", "group_ids[]", "pbx_user_ids[]", "comment"]  # fmt: skip
WORDS = ["create_call", "update_call", "incoming", "outgoing", "ringing", "in-progress", "answered", "missed",
         "79101234567", "1", "²", "-1", str(2**40)]  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(NAMES), st.lists(st.sampled_from(WORDS) | st.text(max_size=30), max_size=3),
                       max_size=8))  # fmt: skip
def test_any_form_parses_or_is_refused_cleanly(values):
    try:
        request = wire.parse(values, region="RU")
    except WireError:
        return
    assert request.action in ("create_call", "update_call")
    wire.events(request, call_key="c", employees=[], at=AT)
