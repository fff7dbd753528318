"""`callbridge apikey ...`: keys for the JSON API, shown once, listed and revoked."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from ..api.schemas import ApiKeyOut
from ..services import Services
from ..store import integrations
from .common import AsJson, DatabaseUrl, console, fail, run

apikey_app = typer.Typer(add_completion=False, help="Keys for the JSON API (Authorization: Bearer KEY).")


@apikey_app.command("create")
def apikey_create(
    name: Annotated[str, typer.Option(help="who uses the key")] = "api",
    read_only: Annotated[bool, typer.Option("--read-only", help="the key may only read (GET)")] = False,
    as_json: AsJson = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Create a JSON API key; it is shown once (only its hash is kept)."""

    async def work(services: Services) -> tuple[int, str]:
        async with services.db.transaction() as session:
            key = await integrations.add_api_key(session, name, read_only=read_only)
            return (await integrations.api_key(session, key)).id, key

    key_id, key = run(database_url, work)
    print(json.dumps({"id": key_id, "name": name, "read_only": read_only, "key": key}) if as_json else key)


@apikey_app.command("list")
def apikey_list(as_json: AsJson = False, database_url: DatabaseUrl = None) -> None:
    """The API keys: name, whether read-only, created, last used (to the minute), revoked."""

    async def work(services: Services):
        async with services.db.read() as session:
            return await integrations.list_api_keys(session)

    keys = run(database_url, work)
    rows = [ApiKeyOut.model_validate(k).model_dump(mode="json") for k in keys]  # as `GET /api/keys` shows them
    if as_json:
        print(json.dumps(rows))
        return
    table = Table("id", "name", "access", "created", "last used", "revoked")
    for row in rows:
        access = "read" if row["read_only"] else "read, write"
        used, revoked = (row["last_used_at"] or "never")[:16], (row["revoked_at"] or "")[:16]
        table.add_row(str(row["id"]), row["name"], access, row["created_at"][:16], used, revoked)
    console.print(table)


@apikey_app.command("revoke")
def apikey_revoke(key_id: Annotated[int, typer.Argument(help="the key's id (apikey list)")],
                  database_url: DatabaseUrl = None) -> None:  # fmt: skip
    """Revoke an API key: every worker refuses it from the next request on."""

    async def work(services: Services) -> bool:
        async with services.db.transaction() as session:
            return await integrations.revoke_api_key(session, key_id)

    if not run(database_url, work):
        raise fail(f"no API key {key_id}, or it is revoked already")
    console.print(f"API key {key_id} revoked")
