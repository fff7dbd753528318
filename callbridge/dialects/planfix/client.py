"""Requests to a PBX that speaks the Planfix telephony API: `makeCall` and `setup`."""

from __future__ import annotations

from typing import Any

import httpx

from ...domain.pbx import PbxError, PbxUser
from ...domain.phones import wire_digits
from ..base import post_form


async def make_call(http: httpx.AsyncClient, settings: dict[str, Any], user: PbxUser, phone: str) -> None:
    """Ask the PBX to ring the employee's extension (`from`), then the client (`to`)."""
    if not user.extension:
        raise PbxError("the employee has no extension")
    await post_form(http, settings, {"cmd": "makeCall", "from": user.extension, "to": wire_digits(phone)})
    return None


async def setup(http: httpx.AsyncClient, settings: dict[str, Any], token: str, inbound_url: str) -> None:
    """Tell the PBX our URL and token when the integration is switched on; its refusal text reaches the user."""
    await post_form(http, settings, {"cmd": "setup", "planfix_token": token, "planfix_url": inbound_url})
