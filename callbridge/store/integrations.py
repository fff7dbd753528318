"""Integrations (connected PBXs) and JSON API keys."""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from .tables import ApiKey, Integration


def new_secret() -> str:
    """An unguessable token for a PBX or an API client."""
    return secrets.token_urlsafe(24)


async def add_integration(
    session: AsyncSession,
    *,
    kind: str,
    name: str,
    settings: dict[str, Any],
    enabled: bool = True,
    automation: dict[str, Any] | None = None,
) -> Integration:
    integration = Integration(
        kind=kind, name=name, token=new_secret(), settings=settings, enabled=enabled, automation=automation or {}
    )
    session.add(integration)
    await session.flush()
    return integration


async def get_integration(session: AsyncSession, integration_id: int) -> Integration | None:
    return await session.get(Integration, integration_id)


async def list_integrations(session: AsyncSession, kind: str | None = None) -> list[Integration]:
    query = select(Integration).order_by(Integration.id)
    if kind:
        query = query.where(Integration.kind == kind)
    return list((await session.scalars(query)).all())


async def update_integration(session: AsyncSession, integration_id: int, **values: Any) -> bool:
    result = await session.execute(update(Integration).where(Integration.id == integration_id).values(**values))
    return result.rowcount > 0


async def remove_integration(session: AsyncSession, integration_id: int) -> bool:
    result = await session.execute(delete(Integration).where(Integration.id == integration_id))
    return result.rowcount > 0


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


async def add_api_key(session: AsyncSession, name: str) -> str:
    """Create a key and return it; only its hash is kept."""
    key = "cb_" + new_secret()
    session.add(ApiKey(name=name, key_hash=hash_key(key)))
    await session.flush()
    return key


async def api_key_exists(session: AsyncSession, key: str) -> bool:
    return (await session.scalar(select(ApiKey.id).where(ApiKey.key_hash == hash_key(key)))) is not None
