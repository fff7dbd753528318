"""`callbridge lookup-source ...`: the company's own system, asked who is calling when callbridge does not know."""

from __future__ import annotations

from typing import Annotated

import typer

from .. import lookup_source
from ..api.schemas import LookupSourceOut, LookupSourceSet
from .common import AsJson, DatabaseUrl, console, fail, run, web_url

lookup_source_app = typer.Typer(
    add_completion=False, help="Ask your CRM who is calling when callbridge does not know the number."
)


@lookup_source_app.command("set")
def lookup_source_set(
    url: Annotated[str, typer.Argument(help="where to POST {phone, call_id, integration_id}")],
    cache_seconds: Annotated[int, typer.Option(min=0, max=7 * 24 * 3600, help="how long an answer is kept")] = 300,
    as_json: AsJson = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Set the lookup source; prints the secret its requests are signed with (Standard Webhooks)."""
    web_url(url)
    source = LookupSourceSet.model_validate(run(database_url, lambda s: lookup_source.configure(s, url, cache_seconds)))
    if as_json:
        print(source.model_dump_json())
        return
    console.print(f"lookup source: {source.url} (answers kept {source.cache_seconds} s)")
    console.print(f"our requests are signed with (verify with it; shown now only):\n{source.secret}")


@lookup_source_app.command("show")
def lookup_source_show(as_json: AsJson = False, database_url: DatabaseUrl = None) -> None:
    """The lookup source, if one is set."""
    source = run(database_url, lambda s: s.lookup_source())
    if source is None:
        raise fail("no lookup source is set")
    shown = LookupSourceOut.model_validate(source)
    print(shown.model_dump_json()) if as_json else console.print(f"{shown.url} (answers kept {shown.cache_seconds} s)")


@lookup_source_app.command("clear")
def lookup_source_clear(database_url: DatabaseUrl = None) -> None:
    """Ask nobody about unknown numbers any more."""
    if not run(database_url, lookup_source.clear):
        raise fail("no lookup source is set")
    console.print("lookup source cleared")
