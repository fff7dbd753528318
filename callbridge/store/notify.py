"""PostgreSQL LISTEN/NOTIFY: how server processes sharing one database tell each other about live calls."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import asyncpg
from sqlalchemy.engine import make_url

MAX_PAYLOAD = 7900  # PostgreSQL refuses a NOTIFY payload of 8000 bytes or more


def dsn(url: str) -> str:
    """The libpq address of a SQLAlchemy PostgreSQL URL."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@asynccontextmanager
async def channel(url: str, name: str, received: Callable[[str], None]) -> AsyncIterator[Channel]:
    """A connection that listens on `name` (each payload goes to `received`) and can notify it."""
    connection = await asyncpg.connect(dsn(url))
    try:
        await connection.add_listener(name, lambda _connection, _pid, _channel, payload: received(payload))
        yield Channel(connection, name)
    finally:
        await connection.close()


class Channel:
    def __init__(self, connection: asyncpg.Connection, name: str) -> None:
        self._connection, self._name = connection, name

    def notify(self, payloads: list[str]) -> Awaitable[str]:
        """Send payloads in order, in one statement: a round trip each costs the database more than the NOTIFY.
        (PostgreSQL delivers identical payloads sent in one transaction once.)"""
        return self._connection.execute("SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p", self._name, payloads)

    async def check(self) -> None:
        """Raise if the connection is gone (a listener notices nothing by itself)."""
        await self._connection.fetchval("SELECT 1")
