"""Two `callbridge serve` processes, started from folders of their own as two machines would be, on one
PostgreSQL and one S3-compatible store: each serves everything the other took."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import httpx
import pytest

from callbridge.dialects.helpdesk.routes import channel_path
from callbridge.store import directory, integrations
from callbridge.web.auth import hash_password

from ..fake_pbx import FakePbx, mp3
from ..helpers import serve_app, serve_process
from ..security.conftest import PASSWORD, sign_in
from .test_workers import cards_on, incoming

pytestmark = pytest.mark.usefixtures("postgres")  # nodes share a database server


def shared_settings(s3, **settings: str) -> dict[str, str]:
    """What the nodes of one service share: a session key and a recordings bucket (and the tests' quick caches)."""
    return {"secret_key": secrets.token_urlsafe(32), "recordings_url": s3.url, "outbound_allow": "127.0.0.1",
            "integration_cache_seconds": "0.5"} | settings  # fmt: skip


@contextmanager
def two_nodes(database_url: str, tmp_path, s3, **settings: str) -> Iterator[tuple[str, str]]:
    """Nodes A and B: one session key and one recordings bucket, everything else their own."""
    shared = shared_settings(s3, **settings)
    with ExitStack() as nodes:
        urls = []
        for name in ("a", "b"):
            folder = tmp_path / name
            folder.mkdir()
            url, _ = nodes.enter_context(serve_process(database_url, folder, **shared))  # AWS_*: from os.environ
            urls.append(url)
        yield urls[0], urls[1]


async def prepare(services) -> dict:
    async with services.db.transaction() as session:
        andy = await directory.add_employee(session, name="Андрей", pbx_login="andy", role="admin")
        andy.password_hash = hash_password(PASSWORD)
        pbx = await integrations.add_integration(session, kind="cloudpbx", name="PBX", settings={})
        line = await integrations.add_integration(session, kind="helpdesk", name="Линия", settings={})
        key = await integrations.add_api_key(session, "tests")
    return {"andy": andy.id, "hook": f"/hooks/cloudpbx/{pbx.id}", "token": pbx.token, "key": key,
            "channel": channel_path(line.id, line.token)}  # fmt: skip


async def test_two_nodes_serve_what_the_other_took(services, database_url, tmp_path, s3):
    world = await prepare(services)
    hook, token, key = world["hook"], world["token"], world["key"]
    auth = {"Authorization": f"Bearer {key}"}
    with two_nodes(database_url, tmp_path, s3) as (a, b):
        async with httpx.AsyncClient(timeout=10) as http:
            # a call whose events alternate between the nodes is one complete call on either
            for node, event in ((a, "INCOMING"), (b, "ACCEPTED"), (a, "COMPLETED")):
                form = incoming("two", token) | {"type": event, "status": "Success", "duration": "30"}
                assert (await http.post(f"{node}{hook}", data=form)).status_code == 200
            for node in (a, b):
                (call,) = (await http.get(f"{node}/api/calls", headers=auth)).json()["items"]
                assert (call["pbx_call_id"], call["result"], call["state"]) == ("two", "answered", "ended")

            # a card for an event taken by A reaches a browser on B
            seen = await cards_on(http, [b], key, lambda: http.post(f"{a}{hook}", data=incoming("card", token)))
            assert [m["employee"] for m in seen[0] if m["type"] == "CardShown"] == ["andy"]

            # a recording kept by A plays from B, by range too
            fields = {"action": "update_call", "pbx_call_id": "rec", "call_status": "answered"}
            parts = [(k, (None, v)) for k, v in fields.items()] + [("audio_record", ("r.mp3", mp3(2), "audio/mpeg"))]
            kept = await http.post(f"{a}{world['channel']}", files=parts)
            assert kept.status_code == 200, kept.text
            played = await http.get(f"{b}/api/calls/{kept.json()['data']['call_id']}/recording",
                                    headers=auth | {"Range": "bytes=0-9"})  # fmt: skip
            assert played.status_code == 206 and played.content == mp3(2)[:10]

            # a workspace session made on A is valid on B
            browser, signed = await sign_in(a, "andy")
            assert signed.status_code == 303
            on_b = await browser.get(f"{b}/calls")
            assert on_b.status_code == 200 and "Андрей" in on_b.text
            await browser.aclose()

            # an API key revoked on A is refused on B at once
            made = await http.post(f"{a}/api/keys", json={"name": "to revoke"}, headers=auth)
            other = {"Authorization": f"Bearer {made.json()['key']}"}
            assert (await http.get(f"{b}/api/calls", headers=other)).status_code == 200
            assert (await http.delete(f"{a}/api/keys/{made.json()['id']}", headers=auth)).status_code == 204
            assert (await http.get(f"{b}/api/calls", headers=other)).status_code == 401


async def test_click_to_call_is_made_once_whichever_node_takes_it(services, database_url, tmp_path, s3):
    pbx = FakePbx()
    with serve_app(pbx.app()) as pbx_url:
        async with services.db.transaction() as session:
            andy = await directory.add_employee(session, name="Андрей", pbx_login="andy")
            settings = {"pbx_url": f"{pbx_url}/api", "pbx_token": pbx.token}
            await integrations.add_integration(session, kind="cloudpbx", name="PBX", settings=settings)
            key = await integrations.add_api_key(session, "tests")
        with two_nodes(database_url, tmp_path, s3, outbox_poll_seconds="0.05") as (a, b):
            async with httpx.AsyncClient(timeout=20, headers={"Authorization": f"Bearer {key}"}) as http:
                clicks = [http.post(f"{node}/api/calls", json={"employee_id": andy.id, "phone": f"+7910123450{n}"})
                          for n, node in enumerate([a, b] * 5)]  # fmt: skip
                answers = await asyncio.gather(*clicks)
    assert all(answer.status_code == 202 for answer in answers), [a.text for a in answers]
    dialled = sorted(form["phone"] for form in pbx.received if form.get("cmd") == "makeCall")
    assert dialled == [f"791012345{n:02d}" for n in range(10)]  # each once


async def test_a_stale_call_is_closed_once_by_the_two_sweepers(services, database_url, tmp_path, s3):
    world = await prepare(services)
    async with services.db.transaction() as session:
        row = await integrations.get_integration(session, int(world["hook"].rsplit("/", 1)[1]))
        row.automation = {"missed_call_tasks": True, "default_owner_id": world["andy"]}
    with two_nodes(database_url, tmp_path, s3, settle_seconds="1", sweep_interval_seconds="0.2") as (a, _b):
        async with httpx.AsyncClient(timeout=10, headers={"Authorization": f"Bearer {world['key']}"}) as http:
            ring = incoming("stale", world["token"]) | {"user": ""}  # rings no phone: settles as missed
            assert (await http.post(f"{a}{world['hook']}", data=ring)).status_code == 200
            for _ in range(100):
                (call,) = (await http.get(f"{a}/api/calls")).json()["items"]
                if call["state"] == "ended":
                    break
                await asyncio.sleep(0.1)
            await asyncio.sleep(1.0)  # both sweepers had their turns
            tasks = (await http.get(f"{a}/api/tasks")).json()
    assert call["result"] == "missed"
    assert len([t for t in tasks["items"] if t["kind"] == "missed_call"]) == 1
