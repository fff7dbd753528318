"""`callbridge webhook ...`: signed webhooks (Standard Webhooks) to the CRM a company already has."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from .. import webhooks
from ..api import webhooks as _delivering  # noqa: F401 - registers the outbox action `webhook test` uses
from ..api.schemas import WebhookCreated, WebhookOut
from ..services import Services
from ..store import webhooks as webhook_store
from .common import AsJson, DatabaseUrl, console, err, fail, run, web_url

webhook_app = typer.Typer(
    add_completion=False, help="Signed webhooks: call, task and client events POSTed to your CRM."
)


@webhook_app.command("add")
def webhook_add(
    url: Annotated[str, typer.Argument(help="where to POST the events (https://...)")],
    events: Annotated[str | None, typer.Option(help=f"comma-separated, of: {', '.join(webhooks.EVENT_TYPES)}; "
                                                    "none given: all")] = None,  # fmt: skip
    integration: Annotated[int | None, typer.Option(help="only this integration's calls")] = None,
    as_json: AsJson = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Add a receiver; prints its secret (verify the `webhook-signature` header with it)."""
    wanted = [e.strip() for e in events.split(",") if e.strip()] if events else None
    unknown = [e for e in wanted or [] if e not in webhooks.EVENT_TYPES]
    if unknown:
        raise fail(f"unknown event types {', '.join(unknown)}; known: {', '.join(webhooks.EVENT_TYPES)}")
    web_url(url)

    async def work(services: Services):
        if integration is not None and await services.integration(integration) is None:
            raise LookupError(f"integration {integration} does not exist")
        return WebhookCreated.model_validate(await webhooks.add(services, url, wanted, integration))

    try:
        created = run(database_url, work)
    except LookupError as exc:
        raise fail(str(exc)) from None
    if as_json:
        print(created.model_dump_json())
        return
    console.print(f"[green]webhook {created.id}[/green] → {created.url} ({', '.join(created.events)})")
    console.print(f"secret (verify signatures with it; shown now and on rotation only):\n{created.secret}")


@webhook_app.command("list")
def webhook_list(as_json: AsJson = False, database_url: DatabaseUrl = None) -> None:
    """The receivers, whether they are on, and since when they fail."""

    async def work(services: Services) -> list[WebhookOut]:
        async with services.db.read() as session:
            return [WebhookOut.model_validate(w) for w in await webhook_store.list_webhooks(session)]

    found = run(database_url, work)
    if as_json:
        print(json.dumps([w.model_dump(mode="json") for w in found], ensure_ascii=False))
        return
    table = Table("id", "url", "events", "on", "failing since")
    for w in found:
        state = "yes" if w.enabled else f"no: {w.disabled_reason or 'switched off'}"
        since = f"{w.failing_since:%Y-%m-%d %H:%M}" if w.failing_since else ""
        table.add_row(str(w.id), w.url, ", ".join(w.events), state, since)
    console.print(table)


@webhook_app.command("remove")
def webhook_remove(webhook_id: int, database_url: DatabaseUrl = None) -> None:
    """Remove a receiver and its deliveries."""
    if not run(database_url, lambda s: webhooks.remove(s, webhook_id)):
        raise fail(f"webhook {webhook_id} does not exist")
    console.print(f"webhook {webhook_id} removed")


@webhook_app.command("rotate")
def webhook_rotate(webhook_id: int, as_json: AsJson = False, database_url: DatabaseUrl = None) -> None:
    """A new secret; the old one still signs beside it for 24 hours, so the receiver can switch without a gap."""
    rotated = run(database_url, lambda s: webhooks.rotate(s, webhook_id))
    if rotated is None:
        raise fail(f"webhook {webhook_id} does not exist")
    created = WebhookCreated.model_validate(rotated)
    print(created.model_dump_json() if as_json else created.secret)


@webhook_app.command("test")
def webhook_test(webhook_id: int, database_url: DatabaseUrl = None) -> None:
    """Send a `webhook.test` event now and say how the receiver answered."""
    delivery = run(database_url, lambda s: webhooks.send_test(s, webhook_id))
    if delivery is None:
        raise fail(f"webhook {webhook_id} does not exist")
    if delivery.status != "done":
        err.print(f"[red]not delivered[/red]: {delivery.error}"
                  + (" (tried again later)" if delivery.status == "pending" else ""))  # fmt: skip
        raise typer.Exit(1)
    console.print(f"delivered: the receiver answered {delivery.response_code}")
