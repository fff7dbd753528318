"""The JSON API's administration: integrations and their CRM rules, the requests made of the PBXs, API keys."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Literal

from fastapi import APIRouter, Depends, HTTPException

from .. import flows, outbox
from ..automation import Rules
from ..store import integrations
from ..store import outbox as outbox_store
from ..store.tables import Integration
from .routes import IdPath, IdQuery, Limit, Services, StrictJsonRoute, require_key
from .schemas import (
    ApiKeyCreated,
    ApiKeyIn,
    ApiKeyOut,
    IntegrationOut,
    IntegrationSecrets,
    OutboxAttemptOut,
    OutboxOut,
    RotationIn,
)

router = APIRouter(prefix="/api", dependencies=[Depends(require_key)], route_class=StrictJsonRoute)


# ---- integrations and their automations ---------------------------------------------------------


@router.get("/integrations", response_model=list[IntegrationOut], tags=["integrations"])
async def list_integrations(services: Services):
    async with services.db.read() as session:
        rows = await integrations.list_integrations(session)
    return [
        IntegrationOut(
            id=i.id,
            kind=i.kind,
            name=i.name,
            enabled=i.enabled,
            inbound_url=flows.inbound_url(services, i, masked=True),
        )  # fmt: skip
        for i in rows
    ]


async def _integration(services: Services, integration_id: int) -> Integration:
    async with services.db.read() as session:
        integration = await integrations.get_integration(session, integration_id)
    if integration is None:
        raise HTTPException(404, "no such integration")
    return integration


def _secrets(services: Services, integration: Integration) -> IntegrationSecrets:
    until = integration.previous_token_until
    return IntegrationSecrets(
        id=integration.id,
        token=integration.token,
        inbound_url=flows.inbound_url(services, integration),
        previous_token_valid_until=until if until and until > datetime.now(UTC) else None,
    )


@router.post("/integrations/{integration_id}/reveal", response_model=IntegrationSecrets, tags=["integrations"])
async def reveal_token(integration_id: IdPath, services: Services):
    """The integration's token and inbound URL in full (a read-only key is refused: a token forges PBX events)."""
    return _secrets(services, await _integration(services, integration_id))


@router.post("/integrations/{integration_id}/rotate", response_model=IntegrationSecrets, tags=["integrations"])
async def rotate_token(integration_id: IdPath, services: Services, body: RotationIn | None = None):
    """A new token (and URL secret); the old one is still accepted for `grace_hours` (24 by default) while the
    PBX is told. Calls and the journal keep their history."""
    grace = timedelta(hours=(body or RotationIn()).grace_hours)
    try:
        return _secrets(services, await flows.rotate_token(services, integration_id, grace))
    except LookupError:
        raise HTTPException(404, "no such integration") from None


@router.get("/integrations/{integration_id}/automation", response_model=Rules, tags=["integrations"])
async def get_automation(integration_id: IdPath, services: Services):
    """The CRM automations of this integration."""
    return Rules.model_validate((await _integration(services, integration_id)).automation)


@router.put("/integrations/{integration_id}/automation", response_model=Rules, tags=["integrations"])
async def put_automation(integration_id: IdPath, rules: Rules, services: Services):
    """Replace the CRM automations of this integration."""
    try:
        await flows.set_rules(services, integration_id, rules)
    except LookupError as exc:
        raise HTTPException(404, str(exc)) from None
    return rules


# ---- the outbox: requests made of the PBXs -------------------------------------------------------


@router.get("/outbox", response_model=list[OutboxOut], tags=["outbox"])
async def list_outbox(
    services: Services,
    status: Literal["pending", "done", "failed"] | None = None,
    integration_id: IdQuery = None,
    limit: Limit = 50,
):
    """The newest requests to PBXs (click-to-call, setup, account sync), newest first."""
    async with services.db.read() as session:
        return await outbox_store.listing(session, status=status, integration_id=integration_id, limit=limit)


@router.get("/outbox/{request_id}", response_model=OutboxOut, tags=["outbox"])
async def get_outbox(request_id: IdPath, services: Services):
    """One request with its attempt log."""
    async with services.db.read() as session:
        request = await outbox_store.get(session, request_id)
        if request is None:
            raise HTTPException(404, "no such outbox request")
        attempts = await outbox_store.attempts_of(session, request_id)
    return OutboxOut.model_validate(request).model_copy(
        update={"attempt_log": [OutboxAttemptOut.model_validate(a) for a in attempts]}
    )


@router.post("/outbox/{request_id}/retry", response_model=OutboxOut, tags=["outbox"])
async def retry_outbox(request_id: IdPath, services: Services):
    """Try a failed request again now, with a fresh set of attempts (409 unless it had failed)."""
    async with services.db.read() as session:
        request = await outbox_store.get(session, request_id)
    if request is None:
        raise HTTPException(404, "no such outbox request")
    if request.status != "failed":
        raise HTTPException(409, f"the request is {request.status}, not failed")
    return await outbox.retry(services, request_id)


# ---- API keys -----------------------------------------------------------------------------------


@router.get("/keys", response_model=list[ApiKeyOut], tags=["keys"])
async def list_keys(services: Services):
    """Every API key, revoked ones included (the key itself is never shown again)."""
    async with services.db.read() as session:
        return await integrations.list_api_keys(session)


@router.post("/keys", response_model=ApiKeyCreated, status_code=201, tags=["keys"])
async def create_key(body: ApiKeyIn, services: Services):
    """A new key; the answer is the only time it is shown."""
    async with services.db.transaction() as session:
        key = await integrations.add_api_key(session, body.name, read_only=body.read_only)
        row = await integrations.api_key(session, key)
    return ApiKeyCreated(**ApiKeyOut.model_validate(row).model_dump(), key=key)


@router.delete("/keys/{key_id}", status_code=204, tags=["keys"])
async def revoke_key(key_id: IdPath, services: Services):
    """Revoke a key: every worker refuses it from the next request on."""
    async with services.db.transaction() as session:
        if not await integrations.revoke_api_key(session, key_id):
            raise HTTPException(404, "no such key, or revoked already")
