"""Integrations (connected PBXs) and JSON API keys."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from .tables import ApiKey, Integration, utcnow


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


async def get_integration(session: AsyncSession, integration_id: int, *, fresh: bool = False) -> Integration | None:
    """The integration (`fresh`: read again, not the copy this session already holds)."""
    return await session.get(Integration, integration_id, populate_existing=fresh)


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


async def add_api_key(session: AsyncSession, name: str, *, read_only: bool = False) -> str:
    """Create a key and return it; only its hash is kept."""
    key = "cb_" + new_secret()
    session.add(ApiKey(name=name, key_hash=hash_key(key), read_only=read_only))
    await session.flush()
    return key


async def api_key(session: AsyncSession, key: str) -> ApiKey | None:
    """The key's row if it exists and is not revoked."""
    query = select(ApiKey).where(ApiKey.key_hash == hash_key(key), ApiKey.revoked_at.is_(None))
    return await session.scalar(query)


async def list_api_keys(session: AsyncSession) -> list[ApiKey]:
    return list((await session.scalars(select(ApiKey).order_by(ApiKey.id))).all())


async def revoke_api_key(session: AsyncSession, key_id: int) -> bool:
    query = update(ApiKey).where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None)).values(revoked_at=utcnow())
    return (await session.execute(query)).rowcount > 0


async def api_key_used(session: AsyncSession, key_id: int, at: datetime) -> None:
    await session.execute(update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=at))
