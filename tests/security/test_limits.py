"""Caps on what one holder can open or make, so no one takes the service down by asking for more."""

from __future__ import annotations

from contextlib import aclosing

import httpx

from callbridge import webhooks
from callbridge.store import webhooks as webhook_store

from .conftest import csrf_of, sign_in


async def test_webhooks_are_capped_with_a_clear_error(install, services):
    """1,000 webhooks made one event's worst latency 1.6 s: the 51st is refused in the API, the page and the CLI."""
    async with services.db.transaction() as session:
        for n in range(webhooks.MAX_WEBHOOKS - 1):
            await webhook_store.add_webhook(session, url=f"https://crm.example/{n}", events=["call.missed"],
                                            secret=webhooks.new_secret())  # fmt: skip
    async with httpx.AsyncClient(base_url=install.url, headers={"Authorization": f"Bearer {install.api_key}"}) as api:
        assert (await api.post("/api/webhooks", json={"url": "https://crm.example/last"})).status_code == 201
        refused = await api.post("/api/webhooks", json={"url": "https://crm.example/one-more"})
        assert refused.status_code == 409 and "at most 50" in refused.json()["detail"]
    admin, _ = await sign_in(install.url, "admin")
    async with aclosing(admin):
        csrf = csrf_of((await admin.get("/settings")).text)
        await admin.post("/settings/webhooks", data={"csrf": csrf, "url": "https://crm.example/page"})
        page = (await admin.get("/settings", headers={"accept-language": "ru"})).text
    assert "Вебхуков уже 50" in page or "50 webhooks already" in page
    async with services.db.read() as session:
        assert await webhook_store.count_webhooks(session) == webhooks.MAX_WEBHOOKS
