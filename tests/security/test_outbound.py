"""A PBX with a valid token sends "recording" links to internal addresses: the outbound policy refuses them."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from callbridge import outbound

from ..conftest import settings_for
from ..fake_pbx import mp3
from ..helpers import running_server, serve_app
from .conftest import make_install


def internal_service(hits: list[str]):
    """Something listening on loopback that answers with audio bytes, and a redirect into it."""

    async def secret(request):
        hits.append(request.url.path)
        return Response(mp3(), media_type="audio/mpeg")

    async def bounce(request):
        hits.append(request.url.path)
        return RedirectResponse(request.query_params["to"], status_code=302)

    return Starlette(routes=[Route("/admin/dump.mp3", secret), Route("/bounce", bounce)])


async def recording_of(api: httpx.AsyncClient) -> dict:
    for _ in range(100):
        (call,) = (await api.get("/api/calls")).json()["items"]
        if call["recording_status"] in ("kept", "failed"):
            return call
        await asyncio.sleep(0.05)
    return call


async def send_link(services, database_url, tmp_path, link: str, **settings) -> tuple[dict, httpx.Response]:
    config = settings_for(database_url, tmp_path, keep_recordings=True, **({"outbound_allow": ""} | settings))
    with running_server(config) as url:
        install = await make_install(services, url)
        async with (
            httpx.AsyncClient(timeout=10) as http,
            httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {install.api_key}"}) as api,
        ):
            await http.post(f"{url}/hooks/planfix/{install.integration_id}", data={
                "cmd": "event", "type": "in", "event": "COMPLETED", "callid": "c-1", "phone": "79101234567",
                "ext": "101", "status": "Success", "duration": "30", "is_recorded": "1", "record_link": link,
                "is_temp": "1", "planfix_token": install.token})  # fmt: skip
            call = await recording_of(api)
            served = await api.get(f"/api/calls/{call['id']}/recording")
    return call, served


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::ffff:127.0.0.1]"])
async def test_a_link_to_an_internal_address_is_refused_by_default(services, database_url, tmp_path, host):
    hits: list[str] = []
    with serve_app(internal_service(hits)) as internal:
        port = internal.rsplit(":", 1)[1]
        call, served = await send_link(services, database_url, tmp_path, f"http://{host}:{port}/admin/dump.mp3")
    assert hits == []  # nothing was ever asked of the internal service
    assert call["recording_status"] == "failed" and "CALLBRIDGE_OUTBOUND_ALLOW" in call["recording_error"]
    assert port not in call["recording_error"] and "dump" not in call["recording_error"]
    assert served.status_code == 404


async def test_a_redirect_to_an_internal_address_is_refused():
    """The first hop is trusted (as a PBX's own host is), its redirect leads elsewhere inside: refused."""
    hits: list[str] = []
    with serve_app(internal_service(hits)) as internal:
        port = internal.rsplit(":", 1)[1]
        link = f"http://localhost:{port}/bounce?to=http://127.0.0.1:{port}/admin/dump.mp3"
        trusted = [("localhost", int(port))]
        transport = outbound.PolicyTransport(outbound.OutboundPolicy(), httpx.AsyncHTTPTransport(), trusted)
        async with httpx.AsyncClient(transport=transport, follow_redirects=True) as http:
            with pytest.raises(outbound.Refused, match="loopback"):
                await http.get(link)
    assert hits == ["/bounce"]  # only the first hop was fetched


async def test_the_allow_list_lets_an_admin_fetch_from_the_lan(services, database_url, tmp_path):
    hits: list[str] = []
    with serve_app(internal_service(hits)) as internal:
        call, served = await send_link(services, database_url, tmp_path, f"{internal}/admin/dump.mp3",
                                       outbound_allow="10.0.0.0/8, 127.0.0.0/8")  # fmt: skip
    assert call["recording_status"] == "kept" and hits == ["/admin/dump.mp3"]
    assert served.status_code == 200 and served.content == mp3()


async def test_the_integrations_own_pbx_address_is_trusted(services, database_url, tmp_path):
    """An on-premise PBX: its API address was set by an admin, and its recordings come from the same host and port
    (another port of that host is not trusted: tests/security/test_peer_answers.py)."""
    hits: list[str] = []
    with serve_app(internal_service(hits)) as pbx:
        config = settings_for(database_url, tmp_path, keep_recordings=True, outbound_allow="")
        with running_server(config) as url:
            install = await make_install(services, url)
            from callbridge.store import integrations

            async with services.db.transaction() as session:
                await integrations.update_integration(
                    session, install.integration_id, settings={"pbx_url": f"{pbx}/api", "pbx_token": "t"}
                )
            await asyncio.sleep(0.6)  # the integration cache
            async with (
                httpx.AsyncClient(timeout=10) as http,
                httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {install.api_key}"}) as api,
            ):
                await http.post(f"{url}/hooks/planfix/{install.integration_id}", data={
                    "cmd": "record", "callid": "c-2", "record_link": f"{pbx}/admin/dump.mp3", "is_temp": "1",
                    "planfix_token": install.token})  # fmt: skip
                await http.post(f"{url}/hooks/planfix/{install.integration_id}", data={
                    "cmd": "event", "type": "in", "event": "COMPLETED", "callid": "c-2", "phone": "79101234567",
                    "ext": "101", "status": "Success", "duration": "5", "planfix_token": install.token})  # fmt: skip
                call = await recording_of(api)
    assert call["recording_status"] == "kept", call


@pytest.mark.parametrize("link", ["file:///etc/passwd", "ftp://example.com/x.mp3", "gopher://127.0.0.1:6379/_x"])
async def test_only_http_and_https_are_fetched(link):
    transport = outbound.PolicyTransport(outbound.OutboundPolicy(), httpx.AsyncHTTPTransport())
    async with httpx.AsyncClient(transport=transport) as http:
        with pytest.raises((outbound.Refused, httpx.UnsupportedProtocol)):
            await http.get(link)


@pytest.mark.parametrize("address", ["169.254.169.254", "10.1.2.3", "192.168.0.1", "172.16.5.5", "100.64.0.1",
                                     "0.0.0.0", "::1", "fe80::1", "fd00::1", "224.0.0.1"])  # fmt: skip
async def test_private_link_local_and_metadata_addresses_are_refused(address):
    with pytest.raises(outbound.Refused):
        await outbound.OutboundPolicy().address(address, 80, frozenset())
    assert await outbound.OutboundPolicy("0.0.0.0/0, ::/0").address(address, 80, frozenset()) == address


async def test_a_webhook_to_an_internal_address_is_refused_and_not_retried(install):
    """An API key holder points a webhook at an internal service: nothing is asked of it."""
    hits: list[str] = []
    with serve_app(internal_service(hits)) as internal:
        async with httpx.AsyncClient(base_url=install.url, headers={"Authorization": f"Bearer {install.api_key}"},
                                     timeout=10) as api:  # fmt: skip
            hook = (await api.post("/api/webhooks", json={"url": f"{internal}/admin/hook"})).json()
            tested = (await api.post(f"/api/webhooks/{hook['id']}/test")).json()
    assert hits == [] and tested["status"] == "failed" and tested["attempts"] == 1
    assert "CALLBRIDGE_OUTBOUND_ALLOW" in tested["error"]
