"""Thin HTTP for the ITooLabs PBX: read the body, check `crm_token`, hand over to the flows."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from ... import flows
from ..base import Lookup, WireError, read_params, token_matches
from . import wire

KIND = "cloudpbx"
router = APIRouter()


def inbound_path(integration_id: int, _token: str) -> str:
    return f"/hooks/{KIND}/{integration_id}"


def _error(status: int, text: str) -> JSONResponse:
    return JSONResponse({"error": text}, status_code=status)


@router.post("/hooks/cloudpbx/{integration_id}", include_in_schema=False)
async def inbound(integration_id: str, request: Request) -> JSONResponse:
    services: flows.Services = request.app.state.services
    try:
        params = await read_params(request, services.settings.max_body_bytes)
    except WireError:
        return _error(400, "Invalid parameters")
    integration = await services.integration(int(integration_id)) if integration_id.isdigit() else None
    if (
        integration is None
        or integration.kind != KIND
        or not integration.enabled
        or not token_matches(params.pop(wire.TOKEN_FIELD, None), integration.token)
    ):
        return _error(401, "Invalid token")
    try:
        command = wire.parse(params, received_at=datetime.now(UTC), region=services.settings.default_region)
    except WireError as exc:
        await flows.reject(services, integration.id, params, str(exc))
        return _error(400, "Invalid parameters")
    if isinstance(command, Lookup):
        info = await flows.lookup(services, command.phone)
        reply = wire.contact_reply(info and info.client_name, info and info.responsible_login)
        services.lookups.add(integration.id, params, reply)
        return JSONResponse(reply)
    await flows.ingest(services, integration.id, params, command)
    return JSONResponse({})
