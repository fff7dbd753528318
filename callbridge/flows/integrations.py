"""Administering an integration: adding it, switching it on (telling its PBX, `setup`) and off, its inbound URL,
a connection check, its rules. The CLI and the settings page both come here."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from .. import automation, outbox
from ..domain.pbx import PbxError
from ..services import Services
from ..store import integrations
from ..store import outbox as outbox_store
from ..store.tables import Integration
from .requests import _request


MASK = "***"
ROTATION_GRACE = timedelta(hours=24)  # how long the token before a rotation is still accepted, unless told


def inbound_url(services: Services, integration: Integration, *, masked: bool = False) -> str:
    """The URL to paste into the PBX cabinet; `masked`, with the secret some dialects carry in it as `***` (what
    a list or a read shows: the secret is shown when made, rotated or revealed)."""
    token = MASK if masked else integration.token
    path = services.dialects[integration.kind].inbound_path(integration.id, token)
    return services.settings.public_url.rstrip("/") + path


async def rotate_token(services: Services, integration_id: int, grace: timedelta = ROTATION_GRACE) -> Integration:
    """A new token (and with it the secret in a UIS or helpdesk URL); the old one is still accepted for `grace`, so
    the PBX can be told without losing a call. History stays: calls and the journal name the integration, not its
    token. LookupError if there is no such integration."""
    async with services.db.transaction() as session:
        integration = await integrations.get_integration(session, integration_id)
        if integration is None:
            raise LookupError(f"integration {integration_id} does not exist")
        previous = integration.token
        await integrations.update_integration(
            session, integration_id, token=integrations.new_secret(), previous_token=previous,
            previous_token_until=datetime.now(UTC) + grace,
        )  # fmt: skip
        rotated = await integrations.get_integration(session, integration_id, fresh=True)
    services.forget(integration_id)
    return rotated or integration


async def check_integration(services: Services, integration_id: int) -> str:
    """Ask the PBX something harmless (its `setup`, or its accounts): "check_ok" or what went wrong."""
    integration = await services.integration(integration_id)
    dialect = services.dialects.get(integration.kind) if integration else None
    if dialect is None:
        return f"integration {integration_id} does not exist"
    try:
        if dialect.enable is not None:
            await dialect.enable(services.http_client(integration.settings), integration.settings, integration.token,
                                 inbound_url(services, integration))  # fmt: skip
        elif dialect.accounts is not None:
            await dialect.accounts(services.http_client(integration.settings), integration.settings)
    except PbxError as exc:
        return str(exc)
    return "check_ok"


async def set_rules(services: Services, integration_id: int, rules: automation.Rules) -> None:
    """Replace an integration's CRM automations (LookupError if there is no such integration)."""
    async with services.db.transaction() as session:
        if not await integrations.update_integration(session, integration_id, automation=rules.model_dump()):
            raise LookupError(f"integration {integration_id} does not exist")
    services.forget(integration_id)


async def set_enabled(services: Services, integration_id: int, enabled: bool) -> None:
    """Switch an integration on or off (LookupError if there is none); switching off also gives up a `setup` still
    being retried."""
    async with services.db.transaction() as session:
        if not await integrations.update_integration(session, integration_id, enabled=enabled):
            raise LookupError(f"integration {integration_id} does not exist")
        if not enabled:
            await outbox_store.cancel(session, integration_id, "setup", "the integration was switched off")
    services.forget(integration_id)


async def enable_without_setup(services: Services, integration_id: int) -> None:
    """Switch an integration on without telling its PBX (one that refuses or does not implement `setup`: the admin
    enters our URL and token on the PBX by hand); a `setup` still being retried is given up."""
    await set_enabled(services, integration_id, True)
    async with services.db.transaction() as session:
        await outbox_store.cancel(session, integration_id, "setup", "switched on without setup")


async def add_integration(
    services: Services, kind: str, *, name: str, settings: dict[str, Any], setup: bool = True
) -> tuple[Integration, str | None]:
    """Keep a new integration of this dialect (validated `settings`, the dialect's default rules) and switch it
    on: at once, or, where the dialect tells its PBX first, once the PBX agrees. The PBX's words if it refused
    (it stays off). `setup=False` switches it on without asking: for PBXs that do not implement `setup`, where
    the admin enters our URL and token by hand."""
    dialect = services.dialects[kind]
    asks_pbx = dialect.enable is not None and setup
    async with services.db.transaction() as session:
        row = await integrations.add_integration(
            session, kind=dialect.kind, name=name, settings=settings, enabled=not asks_pbx,
            automation=dialect.default_rules(settings) if dialect.default_rules else None,
        )  # fmt: skip
    if not asks_pbx:
        return row, None
    try:
        await enable_integration(services, row.id)
    except PbxError as exc:
        return row, str(exc)
    return row, None


async def send_setup(services: Services, integration: Integration, _payload: dict[str, Any]) -> dict[str, Any]:
    enable = services.dialects[integration.kind].enable
    if enable is not None:
        await enable(services.http_client(integration.settings), integration.settings, integration.token,
                     inbound_url(services, integration))  # fmt: skip
    await set_enabled(services, integration.id, True)
    return {}


async def enable_integration(services: Services, integration_id: int) -> None:
    """Switch an integration on, first telling its PBX where we are when the dialect does that (`setup`).

    PbxError (with the PBX's own words) if the PBX refuses: the integration stays off. outbox.StillTrying if the
    PBX did not answer: the server asks again later and switches the integration on when the PBX agrees.
    """
    outbox.result_of(await _request(services, "setup", integration_id))
