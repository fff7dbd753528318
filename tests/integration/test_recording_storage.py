"""Recordings kept in an S3-compatible object store (a real one on loopback): downloaded from the PBX's link and
uploaded by a helpdesk channel, streamed back whole and by range, a 404 when the object is gone."""

from __future__ import annotations

import asyncio

import httpx
from typer.testing import CliRunner

from callbridge.cli import app as cli_app
from callbridge.dialects.helpdesk.routes import channel_path
from callbridge.store import integrations

from ..conftest import settings_for
from ..dialects.planfix.test_http import setup_world, wait_for_recording
from ..fake_pbx import mp3
from ..helpers import running_server


async def test_a_downloaded_recording_is_kept_in_the_bucket_and_plays_by_range(services, database_url, tmp_path,
                                                                               s3, fake_pbx):  # fmt: skip
    settings = settings_for(database_url, tmp_path, recordings_url=s3.url)
    fake_pbx.files["temp.mp3"] = (mp3(3), "audio/mpeg", True)
    with running_server(settings) as base:
        _, api, post = await setup_world(services, base)
        await post("event_in_completed_success.form")
        await post("record_temp.form", record_link=f"{fake_pbx.url}/records/temp.mp3")
        call = await wait_for_recording(api)
        assert call["recording_status"] == "kept", call["recording_error"]
        assert s3.keys() == [f"calls/{call['id']}.mp3"]
        assert not (tmp_path / "recordings").exists()  # nothing of it on this node's disk
        whole = await api.get(f"/api/calls/{call['id']}/recording")
        assert whole.status_code == 200 and whole.content == mp3(3)
        assert whole.headers["content-type"] == "audio/mpeg" and whole.headers["accept-ranges"] == "bytes"
        part = await api.get(f"/api/calls/{call['id']}/recording", headers={"Range": "bytes=10-19"})
        assert part.status_code == 206 and part.content == mp3(3)[10:20]
        assert part.headers["content-range"] == f"bytes 10-19/{len(mp3(3))}"
        beyond = await api.get(f"/api/calls/{call['id']}/recording", headers={"Range": "bytes=99999999-"})
        assert beyond.status_code == 416
        s3.client.delete_object(Bucket=s3.url.split("/")[2], Key=f"calls/{call['id']}.mp3")
        gone = await api.get(f"/api/calls/{call['id']}/recording")
        assert gone.status_code == 404 and gone.json() == {"detail": "no recording kept for this call (kept)"}
        await api.aclose()


async def test_an_uploaded_recording_goes_to_the_bucket(services, database_url, tmp_path, s3):
    settings = settings_for(database_url, tmp_path, recordings_url=s3.url)
    async with services.db.transaction() as session:
        row = await integrations.add_integration(session, kind="helpdesk", name="Линия", settings={})
        key = await integrations.add_api_key(session, "tests")
    with running_server(settings) as base:
        async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {key}"}) as http:
            fields = {"action": "update_call", "pbx_call_id": "s3", "call_status": "answered"}
            parts = [(k, (None, v)) for k, v in fields.items()] + [("audio_record", ("a.mp3", mp3(2), "audio/mpeg"))]
            done = await http.post(channel_path(row.id, row.token), files=parts)
            assert done.status_code == 200, done.text
            call_id = done.json()["data"]["call_id"]
            assert s3.keys() == [f"calls/{call_id}.mp3"]
            served = await http.get(f"/api/calls/{call_id}/recording")
            assert served.status_code == 200 and served.content == mp3(2)


def test_serve_refuses_a_recordings_url_that_is_not_s3(tmp_path, monkeypatch):
    monkeypatch.setenv("CALLBRIDGE_RECORDINGS_URL", "https://bucket.example/x")
    result = CliRunner().invoke(cli_app, ["serve", "--database-url", f"sqlite+aiosqlite:///{tmp_path}/x.db"])
    assert result.exit_code == 1 and "s3://bucket/prefix" in result.stderr


async def test_a_bucket_that_refuses_the_file_is_tried_again(services, database_url, tmp_path, s3, fake_pbx):
    missing = s3.url.replace("recordings-", "not-yet-")
    settings = settings_for(database_url, tmp_path, recordings_url=missing, keep_recordings=True)
    fake_pbx.files["late.mp3"] = (mp3(), "audio/mpeg", False)
    with running_server(settings) as base:
        _, api, post = await setup_world(services, base)
        await post("event_out_completed.form", record_link=f"{fake_pbx.url}/records/late.mp3")
        for _ in range(100):
            call = (await api.get("/api/calls")).json()["items"][0]
            if call["recording_error"]:
                break
            await asyncio.sleep(0.05)
        assert call["recording_status"] == "queued" and "could not store the recording" in call["recording_error"]
        s3.client.create_bucket(Bucket=missing.split("/")[2])
        assert (await wait_for_recording(api))["recording_status"] == "kept"
        await api.aclose()
