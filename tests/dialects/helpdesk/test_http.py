"""The HelpDeskEddy telephony channel end to end: create_call / update_call over real HTTP."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import parse_qsl

import httpx
import pytest
from sqlalchemy import select

from callbridge.dialects.helpdesk import wire
from callbridge.dialects.helpdesk.routes import channel_path
from callbridge.store import directory, integrations
from callbridge.store.tables import Task

from ...conftest import settings_for
from ...fake_pbx import mp3
from ...helpers import live_listener, running_server

SAMPLES = Path(__file__).parent / "samples"


def sample(name: str) -> dict[str, str]:
    return dict(parse_qsl((SAMPLES / name).read_text()))


class Channel:
    def __init__(self, http: httpx.AsyncClient, url: str) -> None:
        self.http, self.url = http, url

    async def send(self, fields: dict | list, *, multipart: bool = True, files=None, slash: bool = False):
        """Multipart as curl --form sends it, or form-urlencoded; lists of pairs for arrays."""
        url = self.url + ("/" if slash else "")
        if multipart:
            pairs = fields.items() if isinstance(fields, dict) else fields
            parts = [(k, (None, str(v))) for k, v in pairs] + list((files or {}).items())
            return await self.http.post(url, files=parts)
        return await self.http.post(url, data=fields)


@pytest.fixture
async def world(services, server):
    async with services.db.transaction() as session:
        andy = await directory.add_employee(session, name="Андрей", pbx_login="andy", extension="101")
        mike = await directory.add_employee(session, name="Михаил", pbx_login="mike", extension="102")
        sales = await directory.add_group(session, name="Продажи", employee_ids=[andy.id, mike.id])
        row = await integrations.add_integration(
            session, kind="helpdesk", name="Линия", settings={"department": "Поддержка"},
            automation={"ticket_per_call": True, "ticket_department": "Поддержка"},
        )  # fmt: skip
        key = await integrations.add_api_key(session, "tests")
    async with httpx.AsyncClient(timeout=10) as http:
        api = httpx.AsyncClient(base_url=server, headers={"Authorization": f"Bearer {key}"}, timeout=10)
        yield {"channel": Channel(http, server + channel_path(row.id, row.token)), "api": api, "andy": andy.id,
               "mike": mike.id, "sales": sales.id, "server": server, "http": http, "row": row}  # fmt: skip
        await api.aclose()


async def tickets(services) -> list[Task]:
    async with services.db.read() as session:
        return list(await session.scalars(select(Task).where(Task.kind == "ticket").order_by(Task.id)))


async def post_json(world, name: str, **change) -> httpx.Response:
    body = json.loads((SAMPLES / name).read_text()) | change
    return await world["http"].post(world["channel"].url + "/", json=body)


async def test_json_bodies_as_client_libraries_send_them(world, services):
    async with services.db.transaction() as session:
        await directory.update_employee(session, world["andy"], pbx_login="101")
    created = await post_json(world, "create_call_json.json")
    assert created.status_code == 200, created.text
    data = created.json()["data"]
    assert data["pbx_call_id"] == "c-1" and data["call_status"] == "ringing"
    call = (await world["api"].get(f"/api/calls/{data['call_id']}")).json()
    assert call["direction"] == "in" and call["phone"] == "+79101234567" and call["state"] == "ringing"
    assert [leg["employee_id"] for leg in call["legs"]] == [world["andy"]]
    answered = await post_json(world, "update_call_json.json")
    assert answered.status_code == 200 and answered.json()["data"]["call_status"] == "answered"
    call = (await world["api"].get(f"/api/calls/{data['call_id']}")).json()
    assert call["result"] == "answered" and call["employee_id"] == world["andy"]
    assert call["fields"]["comment"] == "клиент доволен"
    assert (await post_json(world, "create_call_json.json")).json()["data"]["call_id"] == data["call_id"]  # a retry


async def test_a_status_we_do_not_know_ends_the_call_and_is_kept(world):
    created = await post_json(world, "create_call_json.json", pbx_user_ids=[])
    ended = await post_json(world, "update_call_unknown_status.json")
    assert ended.status_code == 200, ended.text
    call = (await world["api"].get(f"/api/calls/{created.json()['data']['call_id']}")).json()
    assert call["state"] == "ended" and call["result"] == "missed" and call["fields"]["pbx_call_status"] == "no-answer"


@pytest.mark.parametrize(
    "body, problem",
    [
        (b'{"action": "create_call", "phone": "1"}', "direction is missing"),
        (b'{"action": "update_call", "call_status": "missed", "call_id": "1", "pbx_call_id": "a"}', "got both"),
        (b'[1, 2]', "the JSON body must be an object"),
        (b'{"action": "create_call",', "the JSON body is not valid"),
    ],
)
async def test_bad_json_gets_a_400_naming_the_problem(world, body, problem):
    headers = {"content-type": "application/json"}
    response = await world["http"].post(world["channel"].url, content=body, headers=headers)
    assert response.status_code == 400 and problem in response.json()["error"]


async def test_spec_create_and_update(world, services):
    created = await world["channel"].send(sample("create_call.form"))
    assert created.status_code == 200, created.text
    data = created.json()["data"]
    (ticket,) = await tickets(services)
    assert data == {"call_id": data["call_id"], "pbx_call_id": None, "user_id": 0, "pbx_user_id": None,
                    "call_status": "ringing", "audio_record": None, "ticket_id": ticket.id}  # fmt: skip
    assert ticket.department == "Поддержка" and ticket.title == "Исходящий звонок: 777777777"
    call = (await world["api"].get(f"/api/calls/{data['call_id']}")).json()
    assert call["direction"] == "out" and call["state"] == "ringing" and call["fields"]["comment"] == "start"

    update = sample("update_call.form") | {"call_id": str(data["call_id"]), "user_id": str(world["andy"])}
    updated = await world["channel"].send(update)
    assert updated.status_code == 200, updated.text
    assert updated.json()["data"]["call_status"] == "canceled" and updated.json()["data"]["ticket_id"] == ticket.id
    call = (await world["api"].get(f"/api/calls/{data['call_id']}")).json()
    assert call["state"] == "ended" and call["result"] == "no_answer" and call["fields"]["comment"] == "start"
    assert len(await tickets(services)) == 1


async def test_urlencoded_and_trailing_slash_are_accepted(world):
    response = await world["channel"].send(sample("create_call.form") | {"pbx_call_id": "x1"}, multipart=False,
                                           slash=True)  # fmt: skip
    assert response.status_code == 200 and response.json()["data"]["pbx_call_id"] == "x1"


async def test_fields_in_the_query_string_are_read_under_the_body_s(world):
    """A script that puts the action and ids in the URL and the rest in the body: nothing of it is lost, and the
    body's value wins where both name a field."""
    fields = sample("create_call.form") | {"pbx_call_id": "from-body"}
    action = fields.pop("action")
    url = f"{world['channel'].url}?action={action}&pbx_call_id=from-query&comment=q&"
    response = await world["http"].post(url, data=fields)
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert data["pbx_call_id"] == "from-body" and data["call_status"] == "ringing"
    call = (await world["api"].get(f"/api/calls/{data['call_id']}")).json()
    assert call["fields"]["comment"] == "start"  # the body's


async def test_a_single_employee_becomes_the_assignee(world, services):
    fields = [("action", "create_call"), ("direction", "incoming"), ("phone", "+79101234567"),
              ("pbx_call_id", "a1"), ("user_ids[]", world["andy"])]  # fmt: skip
    data = (await world["channel"].send(fields)).json()["data"]
    assert data["user_id"] == world["andy"] and data["pbx_user_id"] == "andy"
    assert (await tickets(services))[0].employee_id == world["andy"]


async def test_a_group_rings_every_member_and_one_answers(world):
    fields = [("action", "create_call"), ("direction", "incoming"), ("phone", "+79101234567"),
              ("pbx_call_id", "g1"), ("group_ids[]", world["sales"])]  # fmt: skip
    data = (await world["channel"].send(fields)).json()["data"]
    assert data["user_id"] == 0
    answer = {"action": "update_call", "pbx_call_id": "g1", "call_status": "in-progress", "user_id": world["mike"]}
    assert (await world["channel"].send(answer)).json()["data"]["user_id"] == world["mike"]
    call = (await world["api"].get(f"/api/calls/{data['call_id']}")).json()
    assert call["state"] == "talking"
    assert {leg["employee_id"]: leg["state"] for leg in call["legs"]} == {world["andy"]: "cancelled",
                                                                         world["mike"]: "answered"}  # fmt: skip
    done = await world["channel"].send({"action": "update_call", "pbx_call_id": "g1", "call_status": "answered"})
    assert done.status_code == 200
    assert (await world["api"].get(f"/api/calls/{data['call_id']}")).json()["result"] == "answered"


async def test_pbx_user_ids_map_by_login(world):
    fields = [("action", "create_call"), ("direction", "incoming"), ("phone", "+79101234567"),
              ("pbx_call_id", "p1"), ("pbx_user_ids[]", "mike")]  # fmt: skip
    assert (await world["channel"].send(fields)).json()["data"]["user_id"] == world["mike"]


@pytest.mark.parametrize(
    "fields, message",
    [
        ([("action", "create_call"), ("direction", "incoming"), ("phone", "1"), ("user_ids[]", "1"),
          ("group_ids[]", "1")],
         "give only one of user_ids[], group_ids[], pbx_user_ids[]: got user_ids[], group_ids[]"),
        ([("action", "update_call"), ("call_id", "1"), ("pbx_call_id", "x"), ("call_status", "missed")],
         "give only one of call_id, pbx_call_id: got both"),
        ([("action", "update_call"), ("pbx_call_id", "x"), ("call_status", "missed"), ("user_id", "1"),
          ("pbx_user_id", "andy")], "give only one of user_id, pbx_user_id: got both"),
        ([("action", "update_call"), ("call_status", "missed")], "call_id or pbx_call_id is missing"),
        ([("action", "update_call"), ("pbx_call_id", "x")], "call_status is missing"),
        ([("action", "create_call"), ("phone", "1")], "direction is missing"),
        ([("action", "create_call"), ("direction", "incoming")], "phone is missing"),
        ([("action", "create_call"), ("direction", "incoming"), ("phone", "1"), ("pbx_user_ids", "a"),
          ("user_ids", "1")], "give only one of user_ids[], group_ids[], pbx_user_ids[]"),
        ([("action", "delete_call")], "action must be create_call or update_call"),
        ([("action", "create_call"), ("direction", "incoming"), ("phone", "1"), ("user_ids[]", "abc")],
         "user_ids[] must be a number"),
        ([("action", "create_call"), ("direction", "incoming"), ("phone", "1"), ("group_ids[]", "999")],
         "group_ids[] names groups that do not exist: 999"),
        ([("action", "create_call"), ("direction", "incoming"), ("phone", "1"), ("user_ids[]", "999")],
         "user_ids[] names employees that do not exist: 999"),
    ],
)  # fmt: skip
async def test_bad_requests_get_400_naming_the_problem(world, fields, message):
    response = await world["channel"].send(fields)
    assert response.status_code == 400 and message in response.json()["error"]


async def test_unknown_channel_or_call_is_404(world):
    bad = world["channel"].url.rsplit("-", 1)[0] + "-wrongsecret"
    response = await world["http"].post(bad, data=sample("create_call.form"))
    assert response.status_code == 404 and response.json() == {"error": "unknown channel key"}
    for path in ("/api/v2/telephony/calls/@nonsense", "/api/v2/telephony/calls/@999-x"):
        assert (await world["http"].post(world["server"] + path, data={})).status_code == 404
    missing = await world["channel"].send({"action": "update_call", "call_id": "999999", "call_status": "missed"})
    assert missing.status_code == 404 and missing.json() == {"error": "no call 999999 in this channel"}


async def test_a_repeated_create_is_the_same_call_and_ticket(world, services):
    first = (await world["channel"].send(sample("create_call.form"))).json()["data"]
    again = (await world["channel"].send(sample("create_call.form"))).json()["data"]
    assert again == first and len(await tickets(services)) == 1


async def test_an_uploaded_recording_is_kept_and_served(world):
    created = (await world["channel"].send(sample("create_call.form") | {"pbx_call_id": "r1"})).json()["data"]
    update = {"action": "update_call", "pbx_call_id": "r1", "call_status": "answered"}
    done = await world["channel"].send(update, files={"audio_record": ("call.mp3", mp3(2), "audio/mpeg")})
    assert done.status_code == 200, done.text
    assert done.json()["data"]["audio_record"] == f"/api/calls/{created['call_id']}/recording"
    served = await world["api"].get(f"/api/calls/{created['call_id']}/recording")
    assert served.status_code == 200 and served.content == mp3(2)
    call = (await world["api"].get(f"/api/calls/{created['call_id']}")).json()
    assert call["recording_status"] == "kept" and call["result"] == "answered"


async def test_an_upload_that_is_not_audio_is_refused(world):
    update = {"action": "update_call", "pbx_call_id": "r2", "call_status": "answered"}
    response = await world["channel"].send(
        update, files={"audio_record": ("call.mp3", b"MZ\x90\x00 a program", "audio/mpeg")}
    )
    assert response.status_code == 400 and response.json() == {
        "error": "audio_record must be an mp3, mp4, wav or ogg file"
    }
    assert (await world["api"].get("/api/calls")).json()["total"] == 0  # nothing applied


async def test_an_upload_over_the_limit_is_refused(services, database_url, tmp_path):
    settings = settings_for(database_url, tmp_path, recording_max_bytes=1000)
    with running_server(settings) as base:
        async with services.db.transaction() as session:
            row = await integrations.add_integration(session, kind="helpdesk", name="Линия", settings={})
        async with httpx.AsyncClient() as http:
            channel = Channel(http, base + channel_path(row.id, row.token))
            update = {"action": "update_call", "pbx_call_id": "r3", "call_status": "answered"}
            response = await channel.send(update, files={"audio_record": ("call.mp3", mp3(5), "audio/mpeg")})
    assert response.status_code == 400 and response.json() == {"error": "audio_record is larger than 1000 bytes"}


def test_events_for_each_status():
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    create = wire.parse({"action": ["create_call"], "direction": ["incoming"], "phone": ["+79101234567"],
                         "call_status": ["in-progress"]}, region="RU")  # fmt: skip
    kinds = [e.kind.value for e in wire.events(create, call_key="k", employees=["id:1", "id:2"], at=now)]
    assert kinds == ["ring", "ring", "answer"]
    final = wire.parse({"action": ["create_call"], "direction": ["incoming"], "phone": ["1"],
                        "call_status": ["missed"]}, region="RU")  # fmt: skip
    (end,) = wire.events(final, call_key="k", employees=[], at=now)
    assert end.kind.value == "end" and end.result.value == "missed"


async def test_a_call_for_no_one_in_particular_shows_its_card_to_everyone(world, services):
    import asyncio

    async with services.db.transaction() as session:
        key = await integrations.add_api_key(session, "live")
    seen: list[dict] = []
    url = f"{world['server']}/api/live?employee_id={world['andy']}"
    listener = await live_listener(world["http"], url, key, seen)
    await world["channel"].send(sample("create_call.form") | {"pbx_call_id": "e1"})
    await world["channel"].send({"action": "update_call", "pbx_call_id": "e1", "call_status": "missed"})
    for _ in range(50):
        if any(m["type"] == "CallEnded" for m in seen):
            break
        await asyncio.sleep(0.05)
    listener.cancel()
    shown = [m for m in seen if m["type"] == "CardShown"]
    assert len(shown) == 1 and shown[0]["employee"] is None and shown[0]["recipients"] is None
    assert [m["result"] for m in seen if m["type"] == "CallEnded"] == ["missed"]  # the card goes away


async def test_only_the_audio_file_may_be_large(world, services):
    """The recording allowance (200 MB) covered the whole request: 40 MB of form or of unknown fields were read into
    memory and journaled verbatim (the database 80 MB larger, the call's API answer 40 MB)."""
    channel, create = world["channel"], sample("create_call.form") | {"pbx_call_id": "big"}
    as_form = await channel.http.post(channel.url, data=create | {"junk": "x" * 3_000_000})
    assert as_form.status_code == 413  # not multipart: the default body limit
    as_json = await channel.http.post(channel.url, json=create | {"junk": "x" * 3_000_000})
    assert as_json.status_code == 413
    huge_field = await channel.send(create | {"junk": "x" * 3_000_000})
    assert huge_field.status_code == 400  # a multipart field that is not a file: 64 kB at most
    audio = {"audio_record": ("a.mp3", mp3(3), "audio/mpeg")}
    kept = await channel.send(create | {"notes": "y" * 50_000}, files=audio)
    assert kept.status_code == 200, kept.text
    call = (await world["api"].get(f"/api/calls/{kept.json()['data']['call_id']}")).json()
    (entry,) = [r for r in call["events"] if "notes" in r["params"]]
    notes = entry["params"]["notes"]
    assert notes.endswith("[48000 more characters not kept]") and len(notes) < 2100
    assert call["recording_status"] == "kept"
