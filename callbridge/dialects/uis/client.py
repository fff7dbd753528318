"""UIS Call API (JSON-RPC 2.0): click-to-call with `start.employee_call`, authorised by a permanent API key
or by `login.user` tokens that are renewed before they expire."""

from __future__ import annotations

import itertools
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from pydantic import BaseModel, Field, SecretStr, model_validator

from ... import outbound
from ...domain.pbx import Events, PbxError, PbxUser
from ...domain.phones import wire_digits
from ..base import retryable_status
from . import wire

CALL_API = "https://callapi.uiscom.ru/v4.0"
DATA_API = "https://dataapi.uiscom.ru/v2.0"
MEDIA = "https://app.uiscom.ru/system/media/talk"
REPORT_PAGE = 10_000  # the Data API's largest page
_ids = itertools.count(1)
_tokens: dict[tuple[str, str], tuple[str, float]] = {}  # (api url, login) -> (token, expires at, monotonic)


class UisSettings(BaseModel):
    """What the UIS cabinet gives: a login and password, or an API key; and the number clients see."""

    login: str | None = Field(None, description="UIS cabinet login (with --password)",
                              json_schema_extra={"ru": "Логин кабинета UIS (вместе с паролем)"})
    password: SecretStr | None = Field(None, description="UIS cabinet password",
                                       json_schema_extra={"ru": "Пароль кабинета UIS"})
    api_key: SecretStr | None = Field(None, description="a permanent Call API key, instead of login and password",
                                      json_schema_extra={"ru": "Постоянный ключ Call API (вместо логина и пароля)"})
    virtual_number: str = Field(pattern=r"^\+?\d{10,15}$", description="the virtual number clients see",
                                json_schema_extra={"ru": "Виртуальный номер, который видят клиенты"})
    call_api_url: str = Field(CALL_API, description="the Call API address", json_schema_extra={"ru": "Адрес Call API"})
    data_api_url: str = Field(DATA_API, description="the Data API address (call history, for back-fill)",
                              json_schema_extra={"ru": "Адрес Data API (история звонков, для догрузки)"})
    media_url: str = Field(MEDIA, description="where UIS serves call recordings",
                           json_schema_extra={"ru": "Откуда UIS отдаёт записи разговоров"})
    timezone: str = Field("Europe/Moscow", description="the account's time zone, for times without one",
                          json_schema_extra={"ru": "Часовой пояс кабинета (для времени без пояса)"})

    @model_validator(mode="after")
    def _credentials(self) -> UisSettings:
        if self.api_key is None and not (self.login and self.password):
            raise ValueError("give --api-key, or --login and --password")
        return self


# Call API errors, in words a user can act on.
_EXPLAINED = {
    "access_token_expired": "the UIS session expired",
    "access_token_invalid": "UIS did not accept the API key or login: check them in the integration",
    "access_token_blocked": "UIS blocked this API key",
    "ip_not_whitelisted": "UIS refuses requests from this server's address: allow it under Call API in the UIS cabinet",
    "component_disabled": "the Call API option is off in the UIS cabinet",
    "limit_exceeded": "the UIS Call API limit is reached",
    "employee_not_found": "UIS does not know this employee: check their UIS employee id (the PBX login in callbridge)",
    "no_active_phone_number": "the employee has no active phone in UIS",
    "contact_in_blacklist": "the client's number is on the UIS blacklist",
}


class CallApiError(PbxError):
    def __init__(self, code: int | None, mnemonic: str | None, message: str) -> None:
        self.code, self.mnemonic = code, mnemonic
        explained = _EXPLAINED.get(mnemonic or "")
        if explained is None and code == -32007:
            explained = "UIS does not accept the virtual number: check it in the integration"
        super().__init__(explained or f"UIS Call API error {code}: {message}", retryable=code == -32029)


async def _rpc(http: httpx.AsyncClient, url: str, method: str, params: dict[str, Any]) -> dict[str, Any]:
    body = {"jsonrpc": "2.0", "id": next(_ids), "method": method, "params": params}
    try:
        response = await http.post(url, json=body, headers={"Content-Type": "application/json; charset=UTF-8"})
    except outbound.Refused as exc:
        raise PbxError(str(exc)) from None
    except httpx.HTTPError as exc:
        raise PbxError(f"UIS did not answer: {exc.__class__.__name__}", retryable=True) from None
    try:
        reply = response.json()
    except ValueError:
        raise PbxError(
            f"UIS answered {response.status_code} without JSON", retryable=retryable_status(response.status_code)
        ) from None
    if not isinstance(reply, dict):
        raise PbxError("UIS answered something that is not a JSON-RPC reply")
    if error := reply.get("error"):
        data = error.get("data") or {}
        raise CallApiError(error.get("code"), data.get("mnemonic"), str(error.get("message", "")))
    data = (reply.get("result") or {}).get("data")
    return {} if data is None else data


async def _token(http: httpx.AsyncClient, config: UisSettings, url: str, *, renew: bool = False) -> str:
    """The API key, or a session token from this API's `login.user` reused until a minute before it expires."""
    if config.api_key is not None:
        return config.api_key.get_secret_value()
    cache_key = (url, config.login or "")
    cached = _tokens.get(cache_key)
    if cached and not renew and cached[1] > time.monotonic():
        return cached[0]
    data = await _rpc(
        http,
        url,
        "login.user",
        {"login": config.login, "password": config.password.get_secret_value() if config.password else ""},
    )
    token = data.get("access_token")
    if not token:
        raise PbxError("UIS did not give an access token")
    lifetime = max(0.0, float(data.get("expire_at", 0)) - time.time()) if data.get("expire_at") else 3600.0
    _tokens[cache_key] = (token, time.monotonic() + lifetime - 60)
    return token


async def make_call(http: httpx.AsyncClient, settings: dict[str, Any], user: PbxUser, phone: str) -> str | None:
    """`start.employee_call`: UIS rings the employee first, then the client; returns the call session id."""
    config = UisSettings.model_validate(settings)
    if not (user.login or "").isdigit():
        raise PbxError("the employee has no UIS employee id: set it as their PBX login")
    employee: dict[str, Any] = {"id": int(user.login)}
    if user.extension and len(wire_digits(user.extension)) >= 10:  # a real number, not a short extension
        employee["phone_number"] = wire_digits(user.extension)
    shown = user.clid or config.virtual_number  # UIS shows the client one of the account's virtual numbers
    params = {"first_call": "employee", "virtual_phone_number": wire_digits(shown),
              "contact": wire_digits(phone), "employee": employee}  # fmt: skip
    data = await _authorised(http, config, config.call_api_url, "start.employee_call", params)
    session = data.get("call_session_id")
    return str(session) if session is not None else None


async def _authorised(http: httpx.AsyncClient, config: UisSettings, url: str, method: str, params: dict[str, Any]):
    """A call with our access token, renewing an expired session token once."""
    for attempt in (1, 2):
        token = await _token(http, config, url, renew=attempt == 2)
        try:
            return await _rpc(http, url, method, params | {"access_token": token})
        except CallApiError as exc:
            if exc.mnemonic == "access_token_expired" and attempt == 1 and config.api_key is None:
                continue
            raise
    raise AssertionError("unreachable")


async def history(http: httpx.AsyncClient, settings: dict[str, Any], period: str) -> list[Any]:
    """The calls of a period (today, yesterday, this_week, ...) from the Data API's `get.calls_report`, page by
    page: its rows as they come."""
    config = UisSettings.model_validate(settings)
    date_from, date_till = period_range(period, datetime.now(ZoneInfo(config.timezone)))
    rows: list[Any] = []
    for offset in itertools.count(0, REPORT_PAGE):
        page = await _authorised(http, config, config.data_api_url, "get.calls_report", {
            "date_from": date_from, "date_till": date_till, "offset": offset, "limit": REPORT_PAGE,
            "fields": list(wire.REPORT_FIELDS),
        })  # fmt: skip
        if not isinstance(page, list):
            raise PbxError("the UIS Data API answered something that is not a calls report")
        rows.extend(page)
        if len(page) < REPORT_PAGE:
            return rows
    return rows


def history_row(row: Any, *, region: str, settings: dict[str, Any]) -> tuple[dict[str, str], Events]:
    """One calls-report row as journal parameters and the call's events; WireError if it is not a call."""
    config = UisSettings.model_validate(settings)
    params = wire.report_params(row, zone=config.timezone, media_url=config.media_url)
    return params, wire.parse(params, received_at=datetime.now(UTC), region=region, zone=config.timezone)


def period_range(period: str, now: datetime) -> tuple[str, str]:
    """A named period as the Data API's `date_from`/`date_till`, in the account's local time."""
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    monday = today - timedelta(days=today.weekday())
    first = today.replace(day=1)
    ranges = {
        "today": (today, now),
        "yesterday": (today - timedelta(days=1), today),
        "this_week": (monday, now),
        "last_week": (monday - timedelta(days=7), monday),
        "this_month": (first, now),
        "last_month": ((first - timedelta(days=1)).replace(day=1), first),
    }
    if period not in ranges:
        raise PbxError(f"period must be one of {', '.join(ranges)}")
    start, end = ranges[period]
    return start.strftime("%Y-%m-%d %H:%M:%S"), end.strftime("%Y-%m-%d %H:%M:%S")
