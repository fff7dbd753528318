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


async def test_a_read_only_key_learns_no_pbx_credential(install, services):
    """`GET /api/integrations` gave every token and the UIS and helpdesk URLs with their secrets: a read-only key
    could then forge calls. Every GET the API has is read with a read-only key; no token or secret is in any."""
    from callbridge.store import integrations

    async with services.db.transaction() as session:
        uis = await integrations.add_integration(session, kind="uis", name="UIS", settings={})
        desk = await integrations.add_integration(session, kind="helpdesk", name="Desk", settings={})
    secrets = [install.token, uis.token, desk.token]
    async with httpx.AsyncClient(base_url=install.url, headers={"Authorization": f"Bearer {install.api_key}"}) as api:
        # a call, so the call and journal answers have something in them
        lost = {"notification_name": "lost_call", "call_session_id": "1", "contact_phone_number": "79101234567"}
        await httpx.AsyncClient(base_url=install.url).post(f"/hooks/uis/{uis.id}/{uis.token}", json=lost)
        made = (await api.post("/api/keys", json={"name": "r", "read_only": True})).json()
        reader = {"Authorization": f"Bearer {made['key']}"}
        paths = [p for p, ops in (await api.get("/openapi.json")).json()["paths"].items() if "get" in ops]
        (call,) = (await api.get("/api/calls")).json()["items"]
        seen = []
        for path in paths:
            path = path.replace("{call_id}", str(call["id"])).replace("{integration_id}", str(uis.id))
            if "{" in path or path == "/api/live":  # the live stream never ends: tests/security/test_streams.py
                continue
            answer = await api.get(path, headers=reader)
            seen.append((path, answer.status_code))
            for secret in secrets:
                assert secret not in answer.text, path
        assert ("/api/integrations", 200) in seen and (f"/api/calls/{call['id']}", 200) in seen
        listed = {i["id"]: i for i in (await api.get("/api/integrations", headers=reader)).json()}
        assert "token" not in listed[uis.id] and listed[uis.id]["inbound_url"].endswith(f"/hooks/uis/{uis.id}/***")
        # the reveal is a write: a read-only key is refused, a full key gets the token
        assert (await api.post(f"/api/integrations/{uis.id}/reveal", headers=reader)).status_code == 403
        shown = (await api.post(f"/api/integrations/{uis.id}/reveal")).json()
        assert shown["token"] == uis.token and shown["inbound_url"].endswith(f"/hooks/uis/{uis.id}/{uis.token}")


async def test_a_token_rotates_with_a_grace_period_and_the_history_stays(install, services):
    hook = f"/hooks/planfix/{install.integration_id}"
    event = {"cmd": "event", "type": "in", "event": "INCOMING", "phone": "79101234567", "ext": "101"}
    async with (
        httpx.AsyncClient(base_url=install.url, headers={"Authorization": f"Bearer {install.api_key}"}) as api,
        httpx.AsyncClient(base_url=install.url) as pbx,
    ):
        assert (await pbx.post(hook, data=event | {"callid": "a", "planfix_token": install.token})).status_code == 200
        rotated = (await api.post(f"/api/integrations/{install.integration_id}/rotate", json={"grace_hours": 1})).json()
        assert rotated["token"] != install.token and rotated["previous_token_valid_until"]
        # both tokens work while the PBX is told; calls made before the rotation are still there
        assert (await pbx.post(hook, data=event | {"callid": "b", "planfix_token": install.token})).status_code == 200
        assert (
            await pbx.post(hook, data=event | {"callid": "c", "planfix_token": rotated["token"]})
        ).status_code == 200
        # no grace: the token before this rotation stops at once
        again = (await api.post(f"/api/integrations/{install.integration_id}/rotate", json={"grace_hours": 0})).json()
        refused = await pbx.post(hook, data=event | {"callid": "d", "planfix_token": rotated["token"]})
        assert refused.status_code == 401
        assert (await pbx.post(hook, data=event | {"callid": "e", "planfix_token": again["token"]})).status_code == 200
        calls = (await api.get("/api/calls")).json()["items"]
    assert sorted(c["pbx_call_id"] for c in calls) == ["a", "b", "c", "e"]


async def test_admins_reveal_and_rotate_a_token_on_the_settings_page(install):
    admin, _ = await sign_in(install.url, "admin")
    page = await admin.get("/settings")
    assert install.token not in page.text  # masked until asked for
    csrf = re.search(r'name="csrf" content="([^"]+)"', page.text).group(1)
    shown = await admin.post(f"/settings/integrations/{install.integration_id}/reveal", data={"csrf": csrf})
    assert install.token in shown.text
    rotated = await admin.post(f"/settings/integrations/{install.integration_id}/rotate",
                               data={"csrf": csrf, "grace_hours": "2"})  # fmt: skip
    assert install.token not in rotated.text and "2" in rotated.text
    new = re.search(r'data-copy="([A-Za-z0-9_-]{32})"', rotated.text).group(1)
    async with httpx.AsyncClient(base_url=install.url) as pbx:
        for token in (install.token, new):  # the old one within its two hours, and the new one
            answer = await pbx.post(f"/hooks/planfix/{install.integration_id}", data={
                "cmd": "contact", "phone": "79101234567", "planfix_token": token})  # fmt: skip
            assert answer.status_code == 200
    await admin.aclose()
