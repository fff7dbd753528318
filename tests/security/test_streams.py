"""Live streams: capped per holder and per process, ended when their credential ends, and never carrying a
recording's source link. (4,200 streams of one read-only key made lookups answer 503; a stream opened before a
revocation went on receiving every call.)"""

from __future__ import annotations

import asyncio
import json
from contextlib import aclosing

import httpx

from callbridge.store import directory
from callbridge.web.auth import hash_password

from ..conftest import settings_for
from ..helpers import running_server
from .conftest import PASSWORD, make_install, sign_in

QUICK = {"live_recheck_seconds": 0.3, "outbound_allow": ""}


class Stream:
    """One open SSE stream read in the background: its frames, and whether the server ended it."""

    def __init__(self, client: httpx.AsyncClient, path: str, **headers: str) -> None:
        self.frames: list[str] = []
        self.opened = asyncio.Event()
        self.status = 0
        self.task = asyncio.create_task(self._read(client, path, headers))

    async def _read(self, client, path, headers) -> None:
        try:
            async with client.stream("GET", path, headers=headers, timeout=60) as response:
                self.status = response.status_code
                self.opened.set()
                async for line in response.aiter_lines():
                    self.frames.append(line)
        except httpx.RemoteProtocolError:  # cut rather than ended (a server that stops): ended all the same
            self.frames.append("(cut)")

    async def started(self) -> Stream:
        await asyncio.wait_for(self.opened.wait(), 10)
        return self

    async def ended(self, within: float = 10) -> bool:
        try:
            await asyncio.wait_for(asyncio.shield(self.task), within)
        except TimeoutError:
            return False
        return True

    def close(self) -> None:
        self.task.cancel()


def key_header(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


async def test_a_key_holds_a_few_streams_and_the_oldest_closes(services, database_url, tmp_path):
    with running_server(settings_for(database_url, tmp_path, live_streams_per_key=3, **QUICK)) as url:
        install = await make_install(services, url)
        async with httpx.AsyncClient(base_url=url) as http:
            streams = [await Stream(http, "/api/live", **key_header(install.api_key)).started() for _ in range(3)]
            assert not await streams[0].ended(within=0.5)
            fourth = await Stream(http, "/api/live", **key_header(install.api_key)).started()
            assert await streams[0].ended() and fourth.status == 200
            assert not await streams[1].ended(within=0.5)
            for stream in [*streams, fourth]:
                stream.close()


async def test_streams_never_take_the_pbxs_connections(services, database_url, tmp_path):
    """A process holds at most a quarter of its connections as streams: past that a new one is 503, and a PBX's
    lookup and /healthz are still answered."""
    settings = settings_for(database_url, tmp_path, max_connections=40, live_streams_per_key=100, **QUICK)
    with running_server(settings) as url:
        install = await make_install(services, url)
        async with httpx.AsyncClient(base_url=url, limits=httpx.Limits(max_connections=100)) as http:
            streams = [await Stream(http, "/api/live", **key_header(install.api_key)).started() for _ in range(10)]
            refused = await http.get("/api/live", headers=key_header(install.api_key))
            assert refused.status_code == 503 and refused.headers["retry-after"]
            assert (await http.get("/healthz")).status_code == 200
            lookup = await http.post(f"/hooks/planfix/{install.integration_id}", data={
                "cmd": "contact", "phone": "79101234567", "planfix_token": install.token})  # fmt: skip
            assert lookup.json()["contact_name"] == "Иванов"
            for stream in streams:
                stream.close()


async def test_a_revoked_key_ends_its_stream(install, services, database_url, tmp_path):
    with running_server(settings_for(database_url, tmp_path, **QUICK)) as url:
        async with httpx.AsyncClient(base_url=url, headers=key_header(install.api_key)) as api:
            other = (await api.post("/api/keys", json={"name": "watcher", "read_only": True})).json()
            stream = await Stream(api, "/api/live", **key_header(other["key"])).started()
            assert not await stream.ended(within=1)
            assert (await api.delete(f"/api/keys/{other['id']}")).status_code == 204
            assert await stream.ended(within=5)


async def test_an_ended_session_ends_its_stream(services, database_url, tmp_path):
    """Logout everywhere, a new password, a new role, a deactivation: each ends the card stream at once."""
    with running_server(settings_for(database_url, tmp_path, **QUICK)) as url:
        install = await make_install(services, url)
        changes = [{"password_hash": hash_password("new")}, {"role": "admin"}, {"active": False}]
        for change in [None, *changes]:
            async with services.db.transaction() as session:
                again = {"active": True, "role": "manager", "password_hash": hash_password(PASSWORD)}
                await directory.update_employee(session, install.manager_id, **again)
            user, _ = await sign_in(url, "maria")
            async with aclosing(user):
                stream = await Stream(user, "/live/stream").started()
                assert stream.status == 200 and not await stream.ended(within=0.8)
                if change is None:  # the session ended from another device
                    async with services.db.transaction() as session:
                        await directory.end_sessions(session, install.manager_id)
                else:
                    async with services.db.transaction() as session:
                        await directory.update_employee(session, install.manager_id, **change)
                assert await stream.ended(within=5), change


async def test_a_stream_lives_a_bounded_time(services, database_url, tmp_path):
    with running_server(settings_for(database_url, tmp_path, live_stream_seconds=1, **QUICK)) as url:
        install = await make_install(services, url)
        async with httpx.AsyncClient(base_url=url) as http:
            stream = await Stream(http, "/api/live", **key_header(install.api_key)).started()
            assert await stream.ended(within=5)
    assert "retry: 3000" in stream.frames  # EventSource connects again after 3 s


async def test_no_live_message_carries_a_recording_link(install):
    link = "https://pbx.example/rec/abc.mp3?X-Amz-Signature=presigned"
    async with httpx.AsyncClient(base_url=install.url) as http:
        stream = await Stream(http, "/api/live", **key_header(install.api_key)).started()
        hook = f"/hooks/planfix/{install.integration_id}"
        base = {"type": "in", "callid": "r-1", "phone": "79101234567", "ext": "maria", "planfix_token": install.token}
        await http.post(hook, data=base | {"cmd": "event", "event": "INCOMING"})
        await http.post(hook, data=base | {"cmd": "event", "event": "COMPLETED", "status": "Success", "duration": "9",
                                           "is_recorded": "1", "record_link": link})  # fmt: skip
        for _ in range(50):
            if any('"CallEnded"' in frame for frame in stream.frames):
                break
            await asyncio.sleep(0.1)
        stream.close()
    messages = [json.loads(f[6:]) for f in stream.frames if f.startswith("data: ")]
    assert "RecordingReady" in [m["type"] for m in messages]
    assert "abc.mp3" not in "\n".join(stream.frames) and all("url" not in m for m in messages)


async def test_serve_stops_at_once_with_streams_open(services, database_url, tmp_path):
    """`serve` did not stop on Ctrl+C while any tab was open (over 45 s): now within 5 s, SIGINT or SIGTERM."""
    import signal
    import time

    from ..helpers import serve_process

    for stop in (signal.SIGINT, signal.SIGTERM):
        with serve_process(database_url, tmp_path) as (url, process):
            install = await make_install(services, url)
            async with httpx.AsyncClient(base_url=url) as http:
                streams = [await Stream(http, "/api/live", **key_header(install.api_key)).started() for _ in range(5)]
                began = time.monotonic()
                process.send_signal(stop)
                await asyncio.to_thread(process.wait, 30)
                took = time.monotonic() - began
                assert all([await stream.ended(within=5) for stream in streams])
        assert took < 5, (stop, took)
        async with services.db.transaction() as session:  # the next round's install
            from callbridge.store.tables import Base

            for table in reversed(Base.metadata.sorted_tables):
                await session.execute(table.delete())
