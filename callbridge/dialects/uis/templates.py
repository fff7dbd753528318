"""The notification bodies a customer pastes into the UIS cabinet, one per event type callbridge needs."""

from __future__ import annotations

import json

from . import wire

_COMMON = ("call_session_id", "notification_time", "contact_phone_number", "virtual_phone_number", "direction")
# (UIS event type as the cabinet names it, our kind, the variables beyond the common ones)
_NOTIFICATIONS = [
    ("Входящий звонок на виртуальный номер", wire.INCOMING, ("scenario_name", "contact_full_name")),
    ("Ожидание ответа", wire.WAITING, ("employee_id", "employee_full_name", "leg_id")),
    ("Исходящий звонок", wire.OUTGOING, ("employee_id", "employee_full_name", "employee_phone_number")),
    ("Начало разговора", wire.TALK_START, ("employee_id", "employee_full_name", "leg_ids")),
    (
        "Завершение звонка",
        wire.CALL_END,
        (
            "employee_id",
            "talk_time_duration",
            "total_time_duration",
            "wait_time_duration",
            "tag_names",
            "scenario_name",
        ),
    ),  # fmt: skip
    ("Записанный разговор", wire.RECORDED, ("employee_id", "file_link", "file_duration")),
    ("Потерянный звонок", wire.LOST, ("employee_ids", "wait_time_duration", "scenario_name")),
]


def notification_bodies() -> list[dict[str, str]]:
    """Each notification to create: its UIS event type and the JSON body (every value quoted: UIS pastes
    values as they are, and an unquoted word would break the JSON)."""
    result = []
    for event_type, kind, extra in _NOTIFICATIONS:
        body = {"callbridge_event": kind} | {name: f"{{{{{name}}}}}" for name in (*_COMMON, *extra)}
        result.append({"event_type": event_type, "method": "POST", "body": json.dumps(body, indent=2)})
    return result
