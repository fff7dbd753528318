"""A PBX built for the Planfix telephony API talking to a real callbridge server."""

from __future__ import annotations

import asyncio
import json
import random
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qsl

import httpx
import pytest
from sqlalchemy import update
from starlette.responses import JSONResponse, PlainTextResponse
from typer.testing import CliRunner

from callbridge import flows
from callbridge.automation import Rules
from callbridge.cli import app as cli_app
from callbridge.store import directory, integrations
from callbridge.store.tables import CallRow
from callbridge.web.auth import hash_password

from ...conftest import settings_for
from ...fake_pbx import mp3
from ...helpers import running_server

SAMPLES = Path(__file__).parent / "samples"


def sample(name: str) -> dict[str, str]:
    return dict(parse_qsl(sample_text(name)))


def sample_text(name: str) -> str:
    return (SAMPLES / name).read_text()


async def setup_world(services, base_url: str, pbx_url: str = "https://pbx.example/planfix_api.php"):
    async with services.db.transaction() as session:
        people = {}
        for ext, name in (("101", "Дария"), ("102", "Андрей"), ("103", "Михаил")):
            people[ext] = (await directory.add_employee(session, name=name, extension=ext)).id
        await directory.add_client(session, name="Иванов Иван Иванович", phones=["+79101234567"],
                                   responsible_id=people["103"])  # fmt: skip
        row = await integrations.add_integration(
            session, kind="planfix", name="АТС", settings={"pbx_url": pbx_url, "pbx_token": "202cb962ac59"}
        )
        key = await integrations.add_api_key(session, "tests")
    http = httpx.AsyncClient(timeout=10)
    api = httpx.AsyncClient(base_url=base_url, headers={"Authorization": f"Bearer {key}"}, timeout=10)
    hook = f"{base_url}/hooks/planfix/{row.id}"

    async def post(name: str, **change) -> httpx.Response:
        return await http.post(hook, data=sample(name) | {"planfix_token": row.token} | change)

    return people, api, post


@pytest.fixture
async def world(services, server):
    people, api, post = await setup_world(services, server)
    yield people, api, post
    await api.aclose()


async def only_call(api) -> dict:
    (call,) = (await api.get("/api/calls")).json()["items"]
    return call


def legs(call) -> dict[str, str]:
    return {leg["employee_key"]: leg["state"] for leg in call["legs"]}


async def test_whole_group_rings_and_one_answers(world):
    people, api, post = world
    for ext in ("101", "102", "103"):
        assert (await post("event_in_incoming.form", ext=ext)).status_code == 200
    assert (await post("event_in_accepted.form", ext="102")).status_code == 200
    for ext in ("101", "103"):
        assert (await post("event_in_completed_cancelled.form", ext=ext)).status_code == 200
    assert (await post("event_in_completed_success.form", ext="102")).status_code == 200
    call = await only_call(api)
    assert call["result"] == "answered" and call["employee_id"] == people["102"]
    assert legs(call) == {"101": "cancelled", "102": "answered", "103": "cancelled"}
    assert call["virtual_number"] == "+74950000000" and call["recording_status"] == "pending"


async def test_hunting_through_the_group_one_by_one(world):
    people, api, post = world
    await post("event_in_incoming.form", ext="101")
    await post("event_in_completed_cancelled.form", ext="101")
    await post("event_in_incoming.form", ext="102")
    await post("event_in_completed_cancelled.form", ext="102")
    await post("event_in_incoming.form", ext="103")
    assert legs(await only_call(api)) == {"101": "cancelled", "102": "cancelled", "103": "ringing"}
    await post("event_in_accepted.form", ext="103")
    await post("event_in_completed_success.form", ext="103")
    call = await only_call(api)
    assert call["result"] == "answered" and call["employee_id"] == people["103"]
    assert legs(call) == {"101": "cancelled", "102": "cancelled", "103": "answered"}


async def test_missed_group_call(world):
    people, api, post = world
    for ext in ("101", "102"):
        await post("event_in_incoming.form", ext=ext)
    for ext in ("101", "102"):
        await post("event_in_completed_missed.form", ext=ext)
    call = await only_call(api)
    assert call["result"] == "missed" and legs(call) == {"101": "missed", "102": "missed"}


async def test_replayed_and_shuffled_scenario_ends_the_same(world):
    _, api, post = world
    steps = [("event_in_incoming.form", "101"), ("event_in_incoming.form", "102"), ("event_in_accepted.form", "102"),
             ("event_in_completed_cancelled.form", "101"), ("event_in_completed_success.form", "102")]  # fmt: skip
    for name, ext in steps:
        await post(name, ext=ext)
    first = await only_call(api)
    replay = steps * 3
    random.Random(3).shuffle(replay)
    for name, ext in replay:
        assert (await post(name, ext=ext)).status_code == 200
    assert await only_call(api) == first


@pytest.mark.parametrize(
    "sample_name, result, pbx_status",
    [
        ("event_in_completed_misspelled.form", "unavailable", None),  # NotAvaliable, as real PBXs spell it
        ("event_in_completed_lowercase.form", "no_answer", None),
        ("event_in_completed_unknown_word.form", "answered", "Answered"),  # a length: it was talked
        ("event_in_completed_missed.form", "missed", None),
    ],
)
async def test_a_status_outside_the_spec_still_ends_the_call(world, sample_name, result, pbx_status):
    _, api, post = world
    assert (await post("event_in_incoming.form")).status_code == 200
    assert (await post(sample_name)).status_code == 200
    call = await only_call(api)
    assert call["state"] == "ended" and call["result"] == result
    assert call["fields"].get("pbx_status") == pbx_status
    assert (await post(sample_name)).status_code == 200  # the PBX's retry changes nothing
    assert (await only_call(api))["result"] == result and (await api.get("/api/calls")).json()["total"] == 1


async def test_an_unknown_word_with_no_length_is_missed_and_an_unknown_event_is_kept(world):
    _, api, post = world
    await post("event_in_incoming.form")
    assert (await post("event_in_incoming.form", event="HOLD")).status_code == 200  # not in the spec: kept
    assert (await post("event_in_completed_unknown_word.form", duration="0", status="Gone")).status_code == 200
    call = await only_call(api)
    assert call["result"] == "missed" and call["fields"]["pbx_status"] == "Gone"
    assert call["fields"]["pbx_event"] == "HOLD"


async def test_spec_example_keeps_analytics_fields(world):
    _, api, post = world
    await post("event_out_outgoing.form")
    await post("event_out_completed.form")
    call = await only_call(api)
    assert call["direction"] == "out" and call["result"] == "answered"
    assert call["fields"] == {"utm_source": "site.io", "utm_medium": "banner"}
    assert call["recording_url"] == "https://link/file.mp3" and call["recording_status"] is None  # not kept: off


async def test_contact_answers_with_the_managers_extension(world):
    _, _, post = world
    assert (await post("contact.form")).json() == {"contact_name": "Иванов Иван Иванович", "responsible": 103}
    assert (await post("contact.form", phone="+7 999 000-00-00")).json() == {}


async def test_ping_answers_our_pbx_settings(world):
    _, _, post = world
    response = await post("ping.form")
    assert response.status_code == 200
    assert response.json() == {"pbxToken": "202cb962ac59", "pbxUrl": "https://pbx.example/planfix_api.php"}


async def test_errors_are_the_specs(world, server):
    _, api, post = world
    bad = await post("event_in_incoming.form", event="")
    assert bad.status_code == 400 and bad.json() == {"error": "Invalid parameters"}
    wrong = await post("ping.form", planfix_token="nope")
    assert wrong.status_code == 401 and wrong.json() == {"error": "Invalid token"}
    async with httpx.AsyncClient() as http:  # a cloudpbx URL never accepts a planfix integration's requests
        crossed = await http.post(f"{server}/hooks/cloudpbx/1", data=sample("ping.form"))
        assert crossed.status_code == 401
    assert (await api.get("/api/calls")).json()["total"] == 0


async def test_a_temporary_recording_is_downloaded_and_kept(world, fake_pbx):
    _, api, post = world
    fake_pbx.files["temp.mp3"] = (mp3(3), "audio/mpeg", True)  # the link works once
    await post("event_in_incoming.form")
    await post("event_in_accepted.form")
    await post("event_in_completed_success.form")
    assert (await only_call(api))["recording_status"] == "pending"
    await post("record_temp.form", record_link=f"{fake_pbx.url}/records/temp.mp3")
    call = await wait_for_recording(api)
    assert call["recording_status"] == "kept" and call["recording_error"] is None
    assert fake_pbx.downloads == ["temp.mp3"] and "temp.mp3" not in fake_pbx.files  # the PBX forgot it
    whole = await api.get(f"/api/calls/{call['id']}/recording")
    assert whole.status_code == 200 and whole.content == mp3(3) and whole.headers["content-type"] == "audio/mpeg"
    part = await api.get(f"/api/calls/{call['id']}/recording", headers={"Range": "bytes=10-19"})
    assert part.status_code == 206 and part.content == mp3(3)[10:20]


async def test_a_dead_temporary_link_is_a_visible_failure(world, fake_pbx):
    _, api, post = world
    await post("event_in_completed_success.form")
    await post("record_temp.form", record_link=f"{fake_pbx.url}/records/expired.mp3")
    call = await wait_for_recording(api)
    assert call["recording_status"] == "failed" and call["recording_error"] == "the PBX answered 404"
    assert (await api.get(f"/api/calls/{call['id']}/recording")).status_code == 404


async def test_a_link_that_is_not_audio_is_refused(world, fake_pbx):
    _, api, post = world
    fake_pbx.files["page.mp3"] = (b"<html>login first</html>", "audio/mpeg", False)
    await post("record_temp.form", record_link=f"{fake_pbx.url}/records/page.mp3")
    call = await wait_for_recording(api)
    assert call["recording_status"] == "failed" and "not" in call["recording_error"]


async def test_a_permanent_link_is_retried_until_the_file_is_there(services, database_url, tmp_path, fake_pbx):
    settings = settings_for(database_url, tmp_path, keep_recordings=True)
    with running_server(settings) as base:
        _, api, post = await setup_world(services, base)
        await post("event_out_completed.form", record_link=f"{fake_pbx.url}/records/late.mp3")
        for _ in range(100):
            if len(fake_pbx.downloads) >= 2:
                break
            await asyncio.sleep(0.05)
        queued = await only_call(api)
        assert queued["recording_status"] == "queued" and queued["recording_error"] == "the PBX answered 404"
        fake_pbx.files["late.mp3"] = (mp3(), "audio/mpeg", False)
        assert (await wait_for_recording(api))["recording_status"] == "kept"
        await api.aclose()


async def wait_for_recording(api) -> dict:
    for _ in range(100):
        call = await only_call(api)
        if call["recording_status"] in ("kept", "failed"):
            return call
        await asyncio.sleep(0.05)
    raise AssertionError(f"recording still {call['recording_status']}")


async def test_a_recording_announced_on_every_call_but_never_linked_turns_missing(world, services, fake_pbx):
    _, api, post = world
    await post("event_in_incoming.form")
    await post("event_in_completed_misspelled.form")  # is_recorded=1, as such PBXs send on every call
    call = await only_call(api)
    assert call["recording_status"] == "pending"
    async with services.db.transaction() as session:  # a day and a little more later
        late = datetime.now(UTC) - timedelta(hours=services.settings.recording_wait_hours, minutes=1)
        await session.execute(update(CallRow).where(CallRow.id == call["id"]).values(ended_at=late))
    assert (await only_call(api))["recording_status"] == "missing"
    assert (await api.get(f"/api/calls/{call['id']}")).json()["recording_status"] == "missing"
    fake_pbx.files["late.mp3"] = (mp3(2), "audio/mpeg", True)
    await post("record_temp.form", callid="G1", record_link=f"{fake_pbx.url}/records/late.mp3")  # came after all
    assert (await wait_for_recording(api))["recording_status"] == "kept"


async def test_the_call_is_in_the_clients_history_with_its_recording(world, services, fake_pbx):
    """Seed 001, option 3: the call's recording in the client's contact record and in its last deal's history."""
    people, api, post = world
    async with services.db.transaction() as session:
        (client,) = (await directory.list_clients(session, phone="+79101234567"))[0]
        deal = await directory.add_deal(session, client_id=client.id, title="Поставка", amount=120_000)
        admin = await directory.add_employee(session, name="Админ", pbx_login="admin", role="admin")
        await directory.update_employee(session, admin.id, password_hash=hash_password("pw"))
    (integration,) = await integrations_of(services)
    await flows.set_rules(services, integration.id, Rules(record_interactions=True, add_to_last_deal=True))
    fake_pbx.files["talk.mp3"] = (mp3(4), "audio/mpeg", True)
    for name in ("event_in_incoming.form", "event_in_accepted.form", "event_in_completed_success.form"):
        await post(name, ext="103")
    await post("record_temp.form", callid="G1", record_link=f"{fake_pbx.url}/records/talk.mp3")
    call = await wait_for_recording(api)
    assert call["recording_status"] == "kept" and call["deal_id"] == deal.id

    history = (await api.get(f"/api/clients/{client.id}/history")).json()
    (record,) = history["contact_records"]
    assert record | {"at": None} == {"call_id": call["id"], "at": None, "direction": "in",
                                     "employee_id": people["103"], "result": "answered", "talk_seconds": 60,
                                     "deal_id": deal.id, "recording": f"/api/calls/{call['id']}/recording",
                                     "recording_status": "kept"}  # fmt: skip
    (in_deal,) = history["deals"]
    assert in_deal["id"] == deal.id and in_deal["amount"] == 120_000
    assert [c["call_id"] for c in in_deal["calls"]] == [call["id"]] and in_deal["calls"][0]["recording"]
    assert (await api.get(record["recording"])).content == mp3(4)
    assert (await api.get("/api/clients/999999/history")).status_code == 404

    async with httpx.AsyncClient(base_url=str(api.base_url), timeout=10) as browser:
        csrf = re.search(r'name="csrf" value="([^"]+)"', (await browser.get("/login")).text).group(1)
        await browser.post("/login", data={"csrf": csrf, "login": "admin", "password": "pw"})
        page = (await browser.get(f"/clients/{client.id}")).text
        players = re.findall(r'<button type="button" class="play" data-src="/calls/(\d+)/recording"', page)
        assert players == [str(call["id"])] * 2  # in the deal's history and in the contact record
        assert (await browser.get(f"/calls/{call['id']}/recording")).content == mp3(4)


# ---- us -> PBX ----------------------------------------------------------------------------------


def test_integration_add_sends_setup_and_shows_a_refusal(tmp_path, fake_pbx):
    db = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
    runner = CliRunner()
    args = ["integration", "add", "planfix", "--name", "АТС", "--pbx-url", f"{fake_pbx.url}/api",
            "--pbx-token", "pbx-secret", "--json", "--database-url", db]  # fmt: skip
    ok = runner.invoke(cli_app, args)
    assert ok.exit_code == 0, ok.output
    view = json.loads(ok.stdout)
    assert view["enabled"] and view["error"] is None
    assert fake_pbx.received == [{"cmd": "setup", "token": "pbx-secret", "planfix_token": view["token"],
                                  "planfix_url": view["inbound_url"]}]  # fmt: skip

    fake_pbx.replies["setup"] = PlainTextResponse("Лицензия АТС не позволяет интеграцию", status_code=403)
    refused = runner.invoke(cli_app, args)
    assert refused.exit_code == 1
    assert not json.loads(refused.stdout)["enabled"]
    assert "PBX answered 403: Лицензия АТС не позволяет интеграцию" in refused.stderr
    assert f"integration enable {json.loads(refused.stdout)['id']}" in refused.stderr

    del fake_pbx.replies["setup"]
    again = runner.invoke(
        cli_app, ["integration", "enable", str(json.loads(refused.stdout)["id"]), "--database-url", db]
    )
    assert again.exit_code == 0 and "enabled" in again.stdout


def test_a_pbx_without_setup_is_switched_on_by_hand(tmp_path, fake_pbx):
    """Such a PBX answers `setup` as it answers everything but makeCall; the admin switches it on anyway."""
    fake_pbx.replies["setup"] = JSONResponse(json.loads(sample_text("setup_refused.json")), status_code=400)
    db = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
    runner = CliRunner()
    args = ["integration", "add", "planfix", "--name", "АТС", "--pbx-url", f"{fake_pbx.url}/api",
            "--pbx-token", "pbx-secret", "--database-url", db]  # fmt: skip
    refused = runner.invoke(cli_app, args)
    assert refused.exit_code == 1 and "PBX answered 400: Invalid parameters" in refused.stderr
    assert "integration enable 1 --without-setup" in refused.stderr and "URL:" in refused.stdout
    assert runner.invoke(cli_app, ["integration", "enable", "1", "--database-url", db]).exit_code == 1  # refused again
    by_hand = runner.invoke(cli_app, ["integration", "enable", "1", "--without-setup", "--database-url", db])
    assert by_hand.exit_code == 0 and "enabled" in by_hand.stdout
    no_setup = runner.invoke(cli_app, [*args, "--no-setup", "--json"])
    assert no_setup.exit_code == 0, no_setup.output
    assert json.loads(no_setup.stdout)["enabled"] and json.loads(no_setup.stdout)["error"] is None
    assert [r["cmd"] for r in fake_pbx.received] == ["setup", "setup"]  # --no-setup asked nothing
    missing = runner.invoke(cli_app, ["integration", "enable", "99", "--without-setup", "--database-url", db])
    assert missing.exit_code == 1 and "integration 99 does not exist" in missing.stderr

    listed = json.loads(runner.invoke(cli_app, ["integration", "list", "--json", "--database-url", db]).stdout)
    assert [i["enabled"] for i in listed] == [True, True]
    with running_server(settings_for(db, tmp_path)) as base:
        with httpx.Client(base_url=base) as pbx:  # the PBX, our URL and token entered by hand
            for view in listed:
                hook = f"{base}/hooks/planfix/{view['id']}"
                assert view["inbound_url"].endswith(f"/hooks/planfix/{view['id']}")
                ping = pbx.post(hook, data=sample("ping.form") | {"planfix_token": view["token"]})
                assert ping.status_code == 200, ping.text


async def test_the_settings_page_switches_on_a_pbx_without_setup(services, server, fake_pbx):
    fake_pbx.replies["setup"] = JSONResponse({"error": "Invalid parameters"}, status_code=400)
    async with services.db.transaction() as session:
        admin = await directory.add_employee(session, name="Админ", pbx_login="admin", role="admin")
        await directory.update_employee(session, admin.id, password_hash=hash_password("pw"))
    async with httpx.AsyncClient(base_url=server, timeout=10, headers={"Accept-Language": "ru"}) as browser:
        csrf = re.search(r'name="csrf" value="([^"]+)"', (await browser.get("/login")).text).group(1)
        await browser.post("/login", data={"csrf": csrf, "login": "admin", "password": "pw"})
        csrf = re.search(r'name="csrf" content="([^"]+)"', (await browser.get("/settings")).text).group(1)
        added = await browser.post("/settings/integrations", follow_redirects=True, data={
            "csrf": csrf, "kind": "planfix", "name": "Астериск", "pbx_url": f"{fake_pbx.url}/api",
            "pbx_token": "pbx-secret"})  # fmt: skip
        assert "PBX answered 400: Invalid parameters" in added.text  # the PBX's words
        assert "Включить без setup" in added.text and "введите адрес и ключ" in added.text
        (row,) = [i for i in await integrations_of(services) if i.name == "Астериск"]
        assert not row.enabled
        switched = await browser.post(f"/settings/integrations/{row.id}/enable-without-setup", data={"csrf": csrf},
                                      follow_redirects=True)  # fmt: skip
        assert switched.status_code == 200
    (row,) = [i for i in await integrations_of(services) if i.name == "Астериск"]
    assert row.enabled
    async with httpx.AsyncClient() as pbx:
        ping = await pbx.post(f"{server}/hooks/planfix/{row.id}",
                              data=sample("ping.form") | {"planfix_token": row.token})  # fmt: skip
        assert ping.status_code == 200


async def integrations_of(services):
    async with services.db.read() as session:
        return await integrations.list_integrations(session)


async def test_click_to_call_sends_the_extension(services, server, fake_pbx):
    _, api, _ = await setup_world(services, server, pbx_url=f"{fake_pbx.url}/api")
    fake_pbx.token = "202cb962ac59"
    people = {e["extension"]: e["id"] for e in (await api.get("/api/employees")).json()}
    response = await api.post("/api/calls", json={"employee_id": people["101"], "phone": "8 910 123-45-67"})
    assert response.status_code == 202, response.text
    assert fake_pbx.received == [{"cmd": "makeCall", "from": "101", "to": "79101234567", "token": "202cb962ac59"}]
    await api.aclose()
