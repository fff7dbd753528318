"""HelpDeskEddy "telephony through API" channel: PBXs built for it post to
`/api/v2/telephony/calls/@<channelKey>`; moving to callbridge only changes the domain."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.datastructures import UploadFile

from ... import flows, recordings
from ...domain.ids import parse_id
from ...domain.pbx import Events, WireError
from ...services import Services
from ...store.tables import Integration
from .. import hooks
from ..base import journal_excerpt, read_fields
from . import wire

KIND = "helpdesk"
WINDOW_SECONDS = 300  # a create_call without pbx_call_id repeated within this window is the same call
router = APIRouter()


class HelpdeskSettings(BaseModel):
    department: str | None = Field(None, description="the department tickets are created in",
                                   json_schema_extra={"ru": "Отдел, в котором создаются заявки"})


def channel_path(integration_id: int, token: str) -> str:
    return f"/api/v2/telephony/calls/@{integration_id}-{token}"


def _error(status: int, text: str) -> JSONResponse:
    return JSONResponse({"error": text}, status_code=status)


@router.post("/api/v2/telephony/calls/@{channel}", include_in_schema=False)
@router.post("/api/v2/telephony/calls/@{channel}/", include_in_schema=False)
async def inbound(channel: str, request: Request) -> JSONResponse:
    services: Services = request.app.state.services
    integration = await _channel(services, channel)
    if integration is None:
        return _error(404, "unknown channel key")
    now = datetime.now(UTC)
    form: dict[str, list[str]] = {}
    try:
        form, upload = await _read(request)
        call = wire.parse(form, region=services.settings.default_region)
        audio = await _audio(upload, services.settings.recording_max_bytes) if upload else None
        employees = await _employees(services, call)
        key, params = await _identify(services, integration, call, form, now)
    except WireError as exc:
        await flows.reject(services, integration.id, _flat(form) or {"body": "unreadable"}, str(exc))
        return _error(400, str(exc))
    except LookupError as exc:
        return _error(404, str(exc))
    events = wire.events(call, call_key=key, employees=employees, at=now)
    await flows.ingest(services, integration.id, params, Events(call.action, key, events))
    summary = await flows.call_summary(services, integration.id, key)
    if audio is not None:
        await recordings.keep_upload(services, summary.call_id, *audio)
    return JSONResponse({"data": _reply(call, summary, key, audio is not None)})


async def _channel(services: Services, channel: str) -> Integration | None:
    """The integration a channel key (`<id>-<secret>`) names, the secret compared in constant time."""
    integration_id, _, secret = channel.partition("-")
    integration = await services.integration(parse_id(integration_id))
    return integration if hooks.authentic(KIND, integration, secret) else None


async def _read(request: Request) -> tuple[dict[str, list[str]], UploadFile | None]:
    """The fields (`read_fields`'), and an uploaded recording spooled to disk as it arrives."""
    form, files = await read_fields(request, max_files=2)
    for name, _ in files:
        if name != "audio_record":
            raise WireError(f"only audio_record may be a file, not {name}")
    return form, files[-1][1] if files else None


async def _audio(upload: UploadFile, max_bytes: int):
    if (upload.size or 0) > max_bytes:
        raise WireError(f"audio_record is larger than {max_bytes} bytes")
    kind = recordings.audio_type(await upload.read(262))
    if kind is None:
        raise WireError("audio_record must be an mp3, mp4, wav or ogg file")
    await upload.seek(0)
    return upload.file, kind


async def _employees(services: Services, call: wire.CallRequest) -> list[str]:
    """Engine keys of the employees the request names: ours by id, groups expanded, PBX users by login."""
    ids = list(call.user_ids) + ([call.user_id] if call.user_id else [])
    if call.group_ids:
        members, missing = await flows.group_members(services, call.group_ids)
        if missing:
            raise WireError(f"group_ids[] names groups that do not exist: {', '.join(map(str, sorted(missing)))}")
        ids += members
    unknown = set(ids) - await flows.existing_employees(services, ids)
    if unknown:
        field = "user_id" if call.user_id else "user_ids[]"
        raise WireError(f"{field} names employees that do not exist: {', '.join(map(str, sorted(unknown)))}")
    pbx_users = list(call.pbx_user_ids) + ([call.pbx_user_id] if call.pbx_user_id else [])
    return [wire.employee_key(i) for i in dict.fromkeys(ids)] + pbx_users


async def _identify(
    services: Services, integration: Integration, call: wire.CallRequest, form, now: datetime
) -> tuple[str, dict[str, str]]:
    """The call's key and the parameters to journal.

    Without `pbx_call_id` a created call is known by a hash of the request and a time window, so a
    PBX repeating its request does not make a second call, while the same caller tomorrow does.
    """
    params = _flat(form)
    if call.call_id is not None:
        key = await flows.call_key_of(services, integration.id, call.call_id)
        if key is None:
            raise LookupError(f"no call {call.call_id} in this channel")
        return key, params
    if call.pbx_call_id:
        return call.pbx_call_id, params
    params["window"] = str(int(now.timestamp()) // WINDOW_SECONDS)
    digest = hashlib.sha256(json.dumps(params, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
    return f"hde-{digest[:24]}", params


def _flat(form: dict[str, list[str]]) -> dict[str, str]:
    return journal_excerpt({name: ",".join(values) for name, values in form.items()})


def _reply(call: wire.CallRequest, summary: flows.CallSummary, key: str, uploaded: bool) -> dict[str, Any]:
    return {
        "call_id": summary.call_id,
        "pbx_call_id": None if key.startswith("hde-") else key,
        "user_id": summary.employee_id or 0,
        "pbx_user_id": summary.employee_login,
        "call_status": call.status,
        "audio_record": f"/api/calls/{summary.call_id}/recording" if uploaded or summary.recording_kept else None,
        "ticket_id": summary.ticket_id,
    }


async def replay(services: Services, integration: Integration, params, call_key, received_at) -> Events:
    """A journaled request again; arrays were kept comma-joined, the window it fell in is in the params."""
    form = {k: (v.split(",") if k.endswith("[]") else [v]) for k, v in params.items() if k != "window"}
    call = wire.parse(form, region=services.settings.default_region)
    employees = await _employees(services, call)
    key = call_key or (await _identify(services, integration, call, form, received_at))[0]
    return Events(call.action, key, wire.events(call, call_key=key, employees=employees, at=received_at))
