"""The lookup source (the company's own system asked about unknown numbers), and the clients it tells us of."""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from . import directory
from .tables import LookupSource


async def get(session: AsyncSession) -> LookupSource | None:
    return (await session.scalars(select(LookupSource).order_by(LookupSource.id))).first()


async def put(session: AsyncSession, *, url: str, secret: str, cache_seconds: int) -> LookupSource:
    """The one lookup source, replacing any there was."""
    await session.execute(delete(LookupSource))
    source = LookupSource(url=url, secret=secret, cache_seconds=cache_seconds)
    session.add(source)
    await session.flush()
    return source


async def clear(session: AsyncSession) -> bool:
    return (await session.execute(delete(LookupSource))).rowcount > 0


async def keep_client(session: AsyncSession, *, phone: str, name: str, responsible_id: int | None,
                      external_id: str | None, deal: tuple[str, int | None] | None) -> int | None:  # fmt: skip
    """The client the source named, kept here with its id there (and its deal); None if the number is taken."""
    if await directory.taken_phones(session, [phone]):
        return None
    client = await directory.add_client(session, name=name, phones=[phone], responsible_id=responsible_id)
    client.external_id = external_id
    if deal is not None:
        await directory.add_deal(session, client_id=client.id, title=deal[0], amount=deal[1])
    return client.id
