"""The inbound handler shared by the token-in-the-body dialects (cloudpbx, planfix).

read the body -> check the token -> parse -> answer a lookup or a ping, or journal and apply events.
Errors are these dialects' documented ones: 400 Invalid parameters, 401 Invalid token.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from .. import flows
from ..domain.ids import parse_id
from ..domain.pbx import CallerInfo, Command, Lookup, Ping, WireError
from ..services import Services
from ..store.tables import Integration
from .base import Dialect, PbxSettings, read_params, token_matches


@dataclass(frozen=True)
class TokenHook:
    """How one dialect's PBX posts to us."""

    kind: str
    token_field: str
    parse: Callable[..., Command]  # (params, *, received_at, region) -> Command
    lookup_reply: Callable[[CallerInfo | None], dict[str, Any]]
    ping_reply: Callable[[Mapping[str, Any]], dict[str, Any]] | None = None


def _error(status: int, text: str) -> JSONResponse:
    return JSONResponse({"error": text}, status_code=status)


async def handle(hook: TokenHook, integration_id: str, request: Request) -> JSONResponse:
    services: Services = request.app.state.services
    try:
        params = await read_params(request)
    except WireError:
        return _error(400, "Invalid parameters")
    integration = await services.integration(parse_id(integration_id))
    if not authentic(hook.kind, integration, params.pop(hook.token_field, None)):
        return _error(401, "Invalid token")
    try:
        command = hook.parse(params, received_at=datetime.now(UTC), region=services.settings.default_region)
    except WireError as exc:
        await flows.reject(services, integration.id, params, str(exc), command=params.get("cmd"))
        return _error(400, "Invalid parameters")
    problems: list[str] = []
    if isinstance(command, Lookup):
        info = await flows.lookup(services, command.phone, integration.id, call_key=command.call_key,
                                  problems=problems)  # fmt: skip
        reply = hook.lookup_reply(info)
    elif isinstance(command, Ping) and hook.ping_reply is not None:
        reply = hook.ping_reply(integration.settings)
    else:
        await flows.ingest(services, integration.id, params, command)
        return JSONResponse({})
    call_key = command.call_key if isinstance(command, Lookup) else None
    services.lookups.add(integration.id, params, reply, command=params.get("cmd"), call_key=call_key,
                         error="; ".join(problems)[:1000] or None)  # fmt: skip
    return JSONResponse(reply)


def authentic(kind: str, integration: Integration | None, token: object) -> bool:
    """The integration exists, is of this dialect, is on, and the token is its own (constant time), or the one it
    had before a rotation while that is still accepted."""
    if integration is None or integration.kind != kind or not integration.enabled:
        return False
    if token_matches(token, integration.token):
        return True
    until = integration.previous_token_until
    return bool(integration.previous_token and until and until > datetime.now(UTC)) and token_matches(
        token, integration.previous_token or ""
    )


def dialect(hook: TokenHook, *, title: str, settings: type[BaseModel] = PbxSettings, **outbound: Any) -> Dialect:
    """A token-in-the-body dialect: its inbound route is `/hooks/<kind>/<integration id>`."""
    router = APIRouter()

    async def inbound(request: Request) -> JSONResponse:
        return await handle(hook, request.path_params["integration_id"], request)

    # a plain Starlette route: the handler reads the request itself, so FastAPI has no parameters to solve
    router.add_route(f"/hooks/{hook.kind}/{{integration_id}}", inbound, methods=["POST"], include_in_schema=False)

    async def replay(services, _integration, params, _call_key, received_at) -> Command:
        return hook.parse(params, received_at=received_at, region=services.settings.default_region)

    return Dialect(
        kind=hook.kind,
        title=title,
        settings=settings,
        router=router,
        inbound_path=lambda integration_id, _token: f"/hooks/{hook.kind}/{integration_id}",
        replay=replay,
        **outbound,
    )
