"""What every command shares: the consoles, the common options, running work against the database."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console

from ..config import Settings

if TYPE_CHECKING:
    from ..services import Services

console = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

T = TypeVar("T")
DatabaseUrl = Annotated[
    str | None, typer.Option("--database-url", envvar="CALLBRIDGE_DATABASE_URL", help="SQLAlchemy URL")
]
AsJson = Annotated[bool, typer.Option("--json", help="print JSON for scripts")]


def cli_settings(database_url: str | None) -> Settings:
    """The settings from the environment and .env, or the CLI's error naming the one that is wrong."""
    try:
        return Settings(database_url=database_url) if database_url else Settings()
    except ValidationError as exc:
        wrong = (f"CALLBRIDGE_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors())
        raise fail("; ".join(wrong)) from None


def run(database_url: str | None, work: Callable[[Services], Awaitable[T]], settings: Settings | None = None) -> T:
    """Run one piece of async work against a migrated database (with `settings`, if given, for the rest)."""

    from ..app import build_services  # the server's parts, imported by the commands that use them

    async def main() -> T:
        services = build_services(settings or cli_settings(database_url))
        try:
            await services.db.migrate()
            return await work(services)
        finally:
            await services.close()

    return asyncio.run(main())


def fail(message: str) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}")
    return typer.Exit(1)


def web_url(url: str) -> str:
    """A URL callbridge may POST to (webhooks, the lookup source), or the CLI's error."""
    if not url.startswith(("https://", "http://")):
        raise fail("the URL must start with https:// (or http://)")
    return url
