"""Requests to an ITooLabs PBX: `makeCall` and `accounts` (form-encoded POST with `cmd` and `token`)."""

from __future__ import annotations

import json
from typing import Any

import httpx
from pydantic import BaseModel, Field, HttpUrl, SecretStr

from ...domain.phones import wire_digits
from ..base import Account, PbxError


class CloudPbxSettings(BaseModel):
    """What the PBX cabinet shows: its API address and the token for requests to it."""

    pbx_url: HttpUrl = Field(description="PBX API address, e.g. https://NAME.megapbx.ru/sys/crm_api.wcgp")
    pbx_token: SecretStr = Field(description="token from the PBX cabinet for requests to the PBX")


async def _post(http: httpx.AsyncClient, settings: dict[str, Any], data: dict[str, str]) -> httpx.Response:
    config = CloudPbxSettings.model_validate(settings)
    try:
        response = await http.post(
            str(config.pbx_url), data=data | {"token": config.pbx_token.get_secret_value()}
        )
    except httpx.HTTPError as exc:
        raise PbxError(f"PBX did not answer: {exc.__class__.__name__}") from None
    if response.status_code != 200:
        raise PbxError(f"PBX answered {response.status_code}: {_error_text(response)}")
    return response


def _error_text(response: httpx.Response) -> str:
    try:
        return str(response.json().get("error") or response.text)[:200]
    except (ValueError, AttributeError):
        return response.text[:200] or response.reason_phrase


async def make_call(http: httpx.AsyncClient, settings: dict[str, Any], user: str, phone: str) -> str | None:
    """Ask the PBX to ring `user`, then the client; the PBX's call id when it returns one."""
    response = await _post(http, settings, {"cmd": "makeCall", "user": user, "phone": wire_digits(phone)})
    text = response.text.strip()
    if not text:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return text[:200]
    return str(data.get("uuid") or data.get("callid") or "") or None if isinstance(data, dict) else None


async def accounts(http: httpx.AsyncClient, settings: dict[str, Any]) -> list[Account]:
    """The PBX's employees: login, name, extension, e-mail."""
    response = await _post(http, settings, {"cmd": "accounts"})
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
