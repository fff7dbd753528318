"""Requests to an ITooLabs PBX: `makeCall` and `accounts` (form-encoded POST with `cmd` and `token`)."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import httpx

from ...domain.pbx import Account, PbxError, PbxUser
from ...domain.phones import wire_digits
from ..base import post_form


async def make_call(http: httpx.AsyncClient, settings: dict[str, Any], user: PbxUser, phone: str) -> str | None:
    """Ask the PBX to ring the employee (by login), then the client; the PBX's call id when it returns one."""
    who = user.login or user.extension
    if not who:
        raise PbxError("the employee has no PBX login")
    request = {"cmd": "makeCall", "user": who, "phone": wire_digits(phone)}
    if user.clid:
        request["clid"] = wire_digits(user.clid)
    response = await post_form(http, settings, request)
    text = response.text.strip()
    if not text:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return text[:200]
    return (str(data.get("uuid") or data.get("callid") or "") or None) if isinstance(data, dict) else None


async def accounts(http: httpx.AsyncClient, settings: dict[str, Any]) -> list[Account]:
    """The PBX's employees: login, name, extension, e-mail."""
    response = await post_form(http, settings, {"cmd": "accounts"})
    try:
        rows = response.json()
    except ValueError:
        raise PbxError("PBX sent accounts that are not JSON") from None
    if not isinstance(rows, list):
        raise PbxError("PBX sent accounts that are not a list")
    return [
        Account(
            login=str(row["name"]),
            name=str(row.get("realName") or row["name"]),
            extension=str(row["ext"]) if row.get("ext") else None,
            email=row.get("email") or None,
        )
        for row in rows
        if isinstance(row, dict) and row.get("name")
    ]


async def history(http: httpx.AsyncClient, settings: dict[str, Any], period: str) -> list[list[str]]:
    """The PBX's call history for a period (today, yesterday, this_week, ...): CSV rows."""
    response = await post_form(http, settings, {"cmd": "history", "period": period, "type": "all"})
    return [row for row in csv.reader(io.StringIO(response.text)) if any(cell.strip() for cell in row)]
