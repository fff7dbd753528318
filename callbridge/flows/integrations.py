"""Administering an integration: its inbound URL, a connection check, its rules, on and off."""

from __future__ import annotations

from .. import automation
from ..domain.pbx import PbxError
from ..services import Services
from ..store import integrations
from ..store import outbox as outbox_store
from ..store.tables import Integration


def inbound_url(services: Services, integration: Integration) -> str:
    """The URL to paste into the PBX cabinet."""
    path = services.dialects[integration.kind].inbound_path(integration.id, integration.token)
    return services.settings.public_url.rstrip("/") + path


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
    services._integrations.pop(integration_id, None)


async def set_enabled(services: Services, integration_id: int, enabled: bool) -> None:
    """Switch an integration on or off; switching off also gives up a `setup` still being retried."""
    async with services.db.transaction() as session:
        await integrations.update_integration(session, integration_id, enabled=enabled)
        if not enabled:
            await outbox_store.cancel(session, integration_id, "setup", "the integration was switched off")
    services._integrations.pop(integration_id, None)
