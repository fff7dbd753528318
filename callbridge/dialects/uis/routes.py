"""UIS notifications in: UIS sends no token, so the secret is in the URL's path; and a journaled one replayed.
A notification may also come as a GET, its variables in the query string."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from ... import flows
from ...domain.ids import parse_id
from ...domain.pbx import Events, WireError
from ...services import Services
from ...store.tables import Integration
from .. import hooks
from . import wire

KIND = "uis"
router = APIRouter()


@router.api_route("/hooks/uis/{integration_id}/{secret}", methods=["GET", "POST"], include_in_schema=False)
async def inbound(integration_id: str, secret: str, request: Request) -> JSONResponse:
    services: Services = request.app.state.services
    body = await request.body()
    integration = await services.integration(parse_id(integration_id))
    if not hooks.authentic(KIND, integration, secret):
        return JSONResponse({"error": "unknown notification address"}, status_code=404)
    params: dict[str, str] = {}
    try:
        params = wire.read_notification(request.url.query, body, request.headers.get("content-type", "").lower())
        zone = integration.settings.get("timezone") or "Europe/Moscow"
        command = wire.parse(params, received_at=datetime.now(UTC), region=services.settings.default_region, zone=zone)
    except WireError as exc:
        kept = params or {"body": body[:20_000].decode("utf-8", "replace")}  # nothing a PBX sent is lost
        await flows.reject(services, integration.id, kept, str(exc))
        return JSONResponse({"error": str(exc)}, status_code=400)
    await flows.ingest(services, integration.id, params, command)
    return JSONResponse({})


async def replay(services: Services, integration: Integration, params, _call_key, received_at) -> Events:
    zone = integration.settings.get("timezone") or "Europe/Moscow"
    return wire.parse(params, received_at=received_at, region=services.settings.default_region, zone=zone)
