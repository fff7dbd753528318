"""The outbox over real HTTP: requests to a PBX are kept first, retried with backoff, given up with a reason
people can see and retry, delivered once whichever worker claims them, and spaced per PBX account."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import update
from starlette.responses import JSONResponse, Response

from callbridge import flows, outbox
from callbridge.app import build_services
from callbridge.domain.pbx import PbxError
from callbridge.store import directory, integrations
from callbridge.store import outbox as outbox_store
from callbridge.store.tables import OutboxRequest

from ..conftest import settings_for
from ..fake_pbx import FakePbx
from ..helpers import running_server, serve_app

LATER = timedelta(hours=2)  # a drain "later": every retry scheduled so far is due


class Flaky:
    """A PBX command that answers 503 the first `failures` times, then 200 with a call id."""

    def __init__(self, failures: int) -> None:
        self.failures, self.times = failures, []

    def __call__(self, _form: dict[str, str]) -> Response:
        self.times.append(time.monotonic())
        if len(self.times) <= self.failures:
            return JSONResponse({"error": "Service Unavailable"}, status_code=503)
        return JSONResponse({"uuid": f"call-{len(self.times)}"})


@pytest.fixture
def fake_pbx():
    pbx = FakePbx()
    with serve_app(pbx.app()) as url:
        pbx.url = f"{url}/api"
        yield pbx


async def connect(services, pbx: FakePbx, kind: str = "cloudpbx", token: str | None = None, **values) -> int:
    async with services.db.transaction() as session:
        settings = {"pbx_url": pbx.url, "pbx_token": token or pbx.token}
        row = await integrations.add_integration(session, kind=kind, name="PBX", settings=settings, **values)
        return row.id


async def employee(services, login: str = "andy") -> int:
    async with services.db.transaction() as session:
        return (await directory.add_employee(session, name=login.title(), pbx_login=login)).id


async def request_of(services, request_id: int) -> tuple[OutboxRequest, list[str]]:
    async with services.db.read() as session:
        request = await outbox_store.get(session, request_id)
        return request, [a.outcome for a in await outbox_store.attempts_of(session, request_id)]


def make_calls(pbx: FakePbx) -> list[dict[str, str]]:
    return [form for form in pbx.received if form.get("cmd") == "makeCall"]


async def test_a_pbx_that_comes_back_gets_the_request(services, fake_pbx):
    fake_pbx.replies["makeCall"] = Flaky(failures=2)
    await connect(services, fake_pbx)
    placed = await flows.click_to_call(services, employee_id=await employee(services), phone="89101234567")
    assert placed.retrying == "PBX answered 503: Service Unavailable" and placed.pbx_call_id is None
    assert await outbox.drain(services, datetime.now(UTC)) == 0  # the retry waits for its backoff
    assert await outbox.drain(services, datetime.now(UTC) + LATER) == 1
    assert await outbox.drain(services, datetime.now(UTC) + LATER) == 1
    request, outcomes = await request_of(services, placed.request_id)
    assert (request.status, request.result, request.error) == ("done", {"pbx_call_id": "call-3"}, None)
    assert outcomes == ["retry", "retry", "done"] and len(make_calls(fake_pbx)) == 3
    assert await outbox.drain(services, datetime.now(UTC) + LATER) == 0  # done is done


async def test_a_pbx_down_for_good_fails_the_request_and_says_why(services, fake_pbx, database_url, tmp_path):
    fake_pbx.replies["makeCall"] = Flaky(failures=100)
    await connect(services, fake_pbx)
    placed = await flows.click_to_call(services, employee_id=await employee(services), phone="89101234567")
    while await outbox.drain(services, datetime.now(UTC) + LATER):
        pass
    request, outcomes = await request_of(services, placed.request_id)
    assert outcomes == ["retry", "retry", "failed"] and request.status == "failed"
    assert request.error == "PBX answered 503: Service Unavailable"
    async with services.db.transaction() as session:
        key = await integrations.add_api_key(session, "tests")
    quiet = settings_for(database_url, tmp_path, outbox_poll_seconds=3600)  # only the API acts here
    with running_server(quiet) as server:
        async with httpx.AsyncClient(base_url=server, headers={"Authorization": f"Bearer {key}"}) as api:
            failed = (await api.get("/api/outbox", params={"status": "failed"})).json()
            assert [(r["id"], r["action"], r["attempts"]) for r in failed] == [(placed.request_id, "make_call", 3)]
            fake_pbx.replies["makeCall"] = JSONResponse({"uuid": "at-last"})
            retried = (await api.post(f"/api/outbox/{placed.request_id}/retry")).json()
            assert (retried["status"], retried["result"]) == ("done", {"pbx_call_id": "at-last"})
            again = await api.post(f"/api/outbox/{placed.request_id}/retry")
            assert again.status_code == 409 and again.json()["detail"] == "the request is done, not failed"
            assert (await api.post("/api/outbox/999999/retry")).status_code == 404


async def test_a_refusal_fails_at_once(services, fake_pbx):
    await connect(services, fake_pbx, token="stale")
    with pytest.raises(PbxError, match="PBX answered 401: Invalid token"):
        await flows.click_to_call(services, employee_id=await employee(services), phone="89101234567")
    async with services.db.read() as session:
        (request,) = await outbox_store.listing(session)
    assert (request.status, request.attempts) == ("failed", 1)
    assert await outbox.drain(services, datetime.now(UTC) + LATER) == 0 and len(make_calls(fake_pbx)) == 1


async def test_a_call_nobody_waits_for_any_more_is_not_placed(services, fake_pbx):
    fake_pbx.replies["makeCall"] = Flaky(failures=1)
    await connect(services, fake_pbx)
    placed = await flows.click_to_call(services, employee_id=await employee(services), phone="89101234567")
    async with services.db.transaction() as session:
        await session.execute(
            update(OutboxRequest).values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )  # the employee has long left their desk
    assert await outbox.drain(services, datetime.now(UTC) + LATER) == 1
    request, outcomes = await request_of(services, placed.request_id)
    assert request.status == "failed" and request.error == "too late: nobody waits for it any more"
    assert outcomes == ["retry", "failed"] and len(make_calls(fake_pbx)) == 1


async def test_setup_is_retried_by_the_server_after_a_restart(services, fake_pbx, database_url, tmp_path):
    """`integration enable` while the PBX is down; the server, started later, switches it on when it agrees."""
    fake_pbx.replies["setup"] = Flaky(failures=1)
    integration_id = await connect(services, fake_pbx, kind="planfix", enabled=False)
    with pytest.raises(outbox.StillTrying, match="PBX answered 503") as waiting:
        await flows.enable_integration(services, integration_id)
    assert not (await services.integration(integration_id)).enabled
    await services.close()  # the process that asked is gone
    async with (restarted := build_services(settings_for(database_url, tmp_path))).db.transaction() as session:
        await session.execute(update(OutboxRequest).values(next_attempt_at=datetime.now(UTC)))  # time passes
    settings = settings_for(database_url, tmp_path, outbox_poll_seconds=0.05)
    with running_server(settings):
        for _ in range(200):
            request, outcomes = await request_of(restarted, waiting.value.request.id)
            if request.status != "pending":
                break
            await asyncio.sleep(0.05)
    assert (request.status, outcomes) == ("done", ["retry", "done"])
    async with restarted.db.read() as session:
        assert (await integrations.get_integration(session, integration_id)).enabled
    setups = [form for form in fake_pbx.received if form["cmd"] == "setup"]
    assert len(setups) == 2 and setups[-1]["planfix_url"].endswith(f"/hooks/planfix/{integration_id}")
    await restarted.close()


async def test_switching_off_gives_up_a_pending_setup(services, fake_pbx):
    fake_pbx.replies["setup"] = Flaky(failures=1)
    integration_id = await connect(services, fake_pbx, kind="planfix", enabled=False)
    with pytest.raises(outbox.StillTrying):
        await flows.enable_integration(services, integration_id)
    await flows.set_enabled(services, integration_id, False)
    assert await outbox.drain(services, datetime.now(UTC) + LATER) == 0
    assert not (await services.integration(integration_id)).enabled
    async with services.db.read() as session:
        (request,) = await outbox_store.listing(session)
    assert (request.status, request.error) == ("failed", "the integration was switched off")


async def test_workers_sharing_the_database_deliver_each_request_once(services, fake_pbx, database_url, tmp_path):
    fake_pbx.replies["makeCall"] = Flaky(failures=0)
    integration_id = await connect(services, fake_pbx)
    async with services.db.transaction() as session:
        for n in range(12):
            payload = {"phone": f"+7910000{n:04d}", "user": {"login": "andy", "extension": None, "clid": None}}
            await outbox.enqueue(session, "make_call", integration_id, payload=payload)
    workers = [build_services(settings_for(database_url, tmp_path, workers=3)) for _ in range(3)]
    while sum(await asyncio.gather(*(outbox.drain(w, datetime.now(UTC)) for w in workers))):
        pass
    phones = sorted(form["phone"] for form in make_calls(fake_pbx))
    assert phones == [f"7910000{n:04d}" for n in range(12)]  # every one, none twice
    async with services.db.read() as session:
        assert {r.status for r in await outbox_store.listing(session)} == {"done"}
    for worker in workers:
        await worker.close()


async def test_requests_to_one_pbx_account_are_spaced(services, fake_pbx):
    fake_pbx.replies["makeCall"] = replies = Flaky(failures=0)
    integration_id = await connect(services, fake_pbx)
    async with services.db.transaction() as session:
        for n in range(6):
            payload = {"phone": f"+7910000{n:04d}", "user": {"login": "andy", "extension": None, "clid": None}}
            await outbox.enqueue(session, "make_call", integration_id, payload=payload)
    assert await outbox.drain(services, datetime.now(UTC)) == 6
    rate = services.dialects["cloudpbx"].rate_per_second
    # the first request also opens the connection, so it may arrive late: the spacing shows in the other five
    assert replies.times[-1] - replies.times[1] >= 4 / rate * 0.9


@given(st.integers(1, 40), st.floats(0.1, 100), st.floats(1, 7200))
def test_backoff_doubles_with_jitter_up_to_its_cap(attempts, first, cap):
    policy = outbox.Policy(attempts=50, first_retry=first, max_retry=cap)
    base = min(first * 2 ** (attempts - 1), cap)
    assert base * 0.5 <= policy.delay(attempts).total_seconds() <= base * 1.5
