"""API keys are named, listed and revoked (CLI, API, settings page); a revocation holds at once; read-only keys."""

from __future__ import annotations

import re

import httpx

from .conftest import sign_in


async def test_a_revoked_key_is_refused_at_once_and_a_read_only_key_cannot_write(install):
    async with httpx.AsyncClient(base_url=install.url, headers={"Authorization": f"Bearer {install.api_key}"}) as api:
        created = (await api.post("/api/keys", json={"name": "reports", "read_only": True})).json()
        reader = {"Authorization": f"Bearer {created['key']}"}
        assert (await api.get("/api/calls", headers=reader)).status_code == 200
        write = await api.post("/api/clients", headers=reader, json={"name": "X", "phones": ["+79990001122"]})
        assert write.status_code == 403
        listed = {k["name"]: k for k in (await api.get("/api/keys")).json()}
        assert listed["reports"]["read_only"] and listed["reports"]["last_used_at"] is not None
        assert "key" not in listed["reports"] and "key_hash" not in listed["reports"]
        assert (await api.delete(f"/api/keys/{created['id']}")).status_code == 204
        # the very next request, in any worker: no cache to wait out
        assert (await api.get("/api/calls", headers=reader)).status_code == 401


async def test_admins_create_and_revoke_keys_in_settings(install):
    admin, _ = await sign_in(install.url, "admin")
    page = await admin.get("/settings")
    csrf = re.search(r'name="csrf" content="([^"]+)"', page.text).group(1)
    made = await admin.post("/settings/keys", data={"csrf": csrf, "name": "1C", "read_only": "on"})
    key = re.search(r"<code>(cb_[^<]+)</code>", made.text).group(1)
    assert key not in str(made.url)  # shown in the page, never in an address
    assert (await httpx.AsyncClient(base_url=install.url).get("/api/calls", headers={
        "Authorization": f"Bearer {key}"})).status_code == 200  # fmt: skip
    key_id = re.findall(r'action="/settings/keys/(\d+)/revoke"', made.text)[-1]
    await admin.post(f"/settings/keys/{key_id}/revoke", data={"csrf": csrf})
    assert (await httpx.AsyncClient(base_url=install.url).get("/api/calls", headers={
        "Authorization": f"Bearer {key}"})).status_code == 401  # fmt: skip
    await admin.aclose()


async def test_metrics_can_require_a_token(services, database_url, tmp_path):
    from ..conftest import settings_for
    from ..helpers import running_server

    with running_server(settings_for(database_url, tmp_path, metrics_token="scrape-me")) as url:
        async with httpx.AsyncClient(base_url=url) as http:
            assert (await http.get("/metrics")).status_code == 401
            assert (await http.get("/metrics", headers={"Authorization": "Bearer nope"})).status_code == 401
            scraped = await http.get("/metrics", headers={"Authorization": "Bearer scrape-me"})
    assert scraped.status_code == 200 and "callbridge" in scraped.text
