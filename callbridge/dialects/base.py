"""What every dialect provides, and the HTTP helpers they share."""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

import httpx
from fastapi import APIRouter
from pydantic import BaseModel, Field, HttpUrl, SecretStr
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request

from .. import outbound, safejson
from ..domain.pbx import Account, Command, Events, PbxError, PbxUser, WireError


def retryable_status(status: int) -> bool:
    """HTTP answers that mean "not now" rather than "no"."""
    return status >= 500 or status in (408, 425, 429)


class PbxSettings(BaseModel):
    """The PBX's API address and the token for our requests to it, as its cabinet shows them."""

    pbx_url: HttpUrl = Field(description="the PBX's API address", json_schema_extra={"ru": "Адрес API АТС"})
    pbx_token: SecretStr = Field(description="token from the PBX cabinet for requests to the PBX",
                                 json_schema_extra={"ru": "Ключ из кабинета АТС для запросов к АТС"})  # fmt: skip


# (http, stored settings, employee, E.164 number) -> the PBX's call id, if it gives one
MakeCall = Callable[[httpx.AsyncClient, dict[str, Any], PbxUser, str], Awaitable[str | None]]
ListAccounts = Callable[[httpx.AsyncClient, dict[str, Any]], Awaitable[list[Account]]]
# (http, stored settings, our token, our inbound URL): tell the PBX we are on; PbxError says why not
Enable = Callable[[httpx.AsyncClient, dict[str, Any], str, str], Awaitable[None]]


@dataclass(frozen=True)
class Dialect:
    """One PBX vendor's protocol: its inbound routes and what we can ask of the PBX."""

    kind: str
    title: str
    settings: type[BaseModel]  # what `integration add` asks for, kept in Integration.settings
    router: APIRouter
    inbound_path: Callable[[int, str], str]  # (integration id, token) -> path of the inbound URL
    secret_in_path: str | None = None  # a regex whose group `secret` is the token in that path: masked in logs
    uploads_under: str | None = None  # inbound paths that take recording uploads (bodies up to recording_max_bytes)
    # what `simulate` and the tests post as this PBX: (step, call=, phone=, outgoing=, token=) -> httpx requests
    fake: Callable[..., list[dict[str, Any]]] | None = None
    make_call: MakeCall | None = None
    accounts: ListAccounts | None = None
    enable: Enable | None = None
    instructions: Callable[[], list[dict[str, str]]] | None = None  # what to set up in the PBX cabinet
    default_rules: Callable[[dict[str, Any]], dict[str, Any]] | None = None  # CRM rules a new integration starts with
    # (services, integration, journaled params, journaled call key, received at) -> the command, to replay it
    replay: Callable[..., Awaitable[Command]] | None = None
    # back-fill: (http, stored settings, period) -> the PBX's history rows;
    # (one row, region=, settings=) -> (journal params, events)
    history: Callable[[httpx.AsyncClient, dict[str, Any], str], Awaitable[list[Any]]] | None = None
    history_row: Callable[..., tuple[dict[str, str], Events]] | None = None
    # requests a second we allow ourselves to one PBX account; none of these vendors publishes a figure for
    # its call API, so this is a courteous default (UIS answers limit_exceeded, which is retried later)
    rate_per_second: float = 5.0


def token_matches(given: object, expected: str) -> bool:
    """Constant-time token comparison."""
    if not isinstance(given, str) or not given:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())


async def read_params(request: Request) -> dict[str, str]:
    """A flat dict of strings of `read_fields`' fields, repeated values comma-joined."""
    fields, _ = await read_fields(request, max_files=0)
    return {name: ",".join(values) for name, values in fields.items()}


FIELD_MAX = 64_000  # bytes of one multipart field that is not a file: PBXs' fields are words and numbers
EXCERPT_MAX = 2_000  # characters of one value the journal keeps of a request


def journal_excerpt(params: dict[str, str], limit: int = EXCERPT_MAX) -> dict[str, str]:
    """What the journal keeps of a request's parameters: every one, each value at most `limit` characters, a cut
    one marked with how much was left out (a stranger's megabytes are not kept verbatim)."""
    kept = {}
    for name, value in params.items():
        if len(value) > limit:
            value = f"{value[:limit]}… [{len(value) - limit} more characters not kept]"
        kept[name[:200]] = value
    return kept


async def read_fields(request: Request, *, max_files: int) -> tuple[dict[str, list[str]], list[tuple[str, UploadFile]]]:
    """Every field of a form-encoded, multipart or JSON body (PBXs send all three) as a list of strings (repeated
    form fields and JSON arrays alike), over the fields of the URL's query string (where a script or an admin's
    pasted URL may put some, the token even); and the uploaded files (spooled to disk, counted by the app's body
    limit)."""
    fields, files = await _body_fields(request, max_files=max_files)
    if query := request.scope.get("query_string"):  # read off the scope: `request.url` would build the whole URL
        fields = form_fields(query.decode(errors="replace"), strict=False) | fields
    return fields, files


async def _body_fields(request: Request, max_files: int) -> tuple[dict[str, list[str]], list[tuple[str, UploadFile]]]:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "multipart/form-data":
        try:
            form = await request.form(max_files=max_files, max_fields=500, max_part_size=FIELD_MAX)
        except HTTPException as exc:  # a broken body; a body over the limit stays the app's 413
            if exc.status_code == 413:
                raise
            raise WireError(f"broken multipart body: {exc.detail}") from None
        fields: dict[str, list[str]] = {}
        files = []
        for name, value in form.multi_items():
            if isinstance(value, UploadFile):
                files.append((name, value))
            else:
                fields.setdefault(name, []).append(checked_text(name, value))
        return fields, files
    try:
        text = (await request.body()).decode("utf-8")
    except UnicodeDecodeError:
        raise WireError("body is not UTF-8") from None
    if content_type.endswith("json") or text.lstrip().startswith("{"):  # JSON, whatever the header says
        return _json_fields(text), []
    return form_fields(text), []


def form_fields(text: str, *, strict: bool = True) -> dict[str, list[str]]:
    """The fields of a form-encoded text, each with its values, or WireError; not `strict` (a query string, which
    a PBX may end with a stray `?` or `&`), what is not a field is skipped."""
    try:
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=strict and bool(text), max_num_fields=500)
    except ValueError as exc:
        raise WireError(f"invalid form: {exc}") from None
    fields: dict[str, list[str]] = {}
    for name, value in pairs:
        fields.setdefault(name, []).append(checked_text(name, value))
    return fields


def _json_fields(text: str) -> dict[str, list[str]]:
    try:
        data = safejson.loads(text)
    except safejson.JsonRefused as exc:
        raise WireError(f"the JSON body is not valid: {exc}") from None
    if not isinstance(data, dict):
        raise WireError("the JSON body must be an object")
    return {str(k): [_flat(item) for item in v if item is not None] if isinstance(v, list) else [_flat(v)]
            for k, v in data.items() if v is not None}  # fmt: skip


def _checked(params: dict[str, str]) -> dict[str, str]:
    for name, value in params.items():
        checked_text(name, value)
    return params


def checked_text(name: str, value: str) -> str:
    """A form value our store can keep (no NUL, no lone surrogate), or WireError."""
    try:
        safejson.check_text(name)
        safejson.check_text(value)
    except safejson.JsonRefused as exc:
        raise WireError(f"{name[:40]!r}: {exc}") from None
    return value


def _flat(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, ensure_ascii=False)


def utc(value: datetime) -> datetime:
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


async def post_form(http: httpx.AsyncClient, settings: dict[str, Any], data: dict[str, str]) -> httpx.Response:
    """POST a form with `token` to the PBX's API address; PbxError with the PBX's own words if it refuses."""
    config = PbxSettings.model_validate(settings)
    try:
        response = await http.post(str(config.pbx_url), data=data | {"token": config.pbx_token.get_secret_value()})
    except outbound.Refused as exc:
        raise PbxError(str(exc)) from None
    except httpx.HTTPError as exc:
        raise PbxError(f"PBX did not answer: {exc.__class__.__name__}", retryable=True) from None
    if response.status_code != 200:
        raise PbxError(
            f"PBX answered {response.status_code}: {_error_text(response)}",
            retryable=retryable_status(response.status_code),
        )
    return response


def _error_text(response: httpx.Response) -> str:
    try:
        return outbound.excerpt(str(response.json().get("error") or response.text))
    except (ValueError, AttributeError):
        return outbound.excerpt(response.text) or response.reason_phrase


def stored_settings(settings: BaseModel) -> dict[str, Any]:
    """A dialect's validated settings as JSON to keep, secrets in clear (the store is the vault)."""
    plain = {}
    for name, value in settings:
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        plain[name] = value if isinstance(value, str | int | float | bool | None) else str(value)
    return plain
