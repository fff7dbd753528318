"""No missed call is forgotten: each employee's list of missed calls not yet returned, with who returned the others
and how soon; and the company's figures of missed calls recovered (returned, in time, how fast), on the analytics
page, in its CSV and at GET /api/analytics."""

from __future__ import annotations

import csv
import io
from contextlib import aclosing
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from callbridge.store import directory

from ..security.conftest import make_install, sign_in


@pytest.fixture
async def office(services, server):
    install = await make_install(services, server)
    async with services.db.transaction() as session:
        for login, extension in (("daria", "201"), ("andy", "202")):
            person = await directory.add_employee(session, name=login.title(), pbx_login=login, extension=extension)
            from callbridge.web.auth import hash_password

            person.password_hash = hash_password("correct horse battery staple")
    calls = [
        ("g1", "in", "79160000001", [("INCOMING", "201"), ("INCOMING", "202"), ("COMPLETED", "")],
         {"status": "Missed"}),
        ("d1", "in", "79160000002", [("INCOMING", "201"), ("COMPLETED", "")], {"status": "Missed"}),
        ("back", "out", "79160000001", [("OUTGOING", "202"), ("ACCEPTED", "202"), ("COMPLETED", "202")],
         {"status": "Success", "duration": "40"}),
    ]  # fmt: skip
    async with httpx.AsyncClient(base_url=server) as pbx:
        for callid, direction, phone, events, end in calls:
            for event, ext in events:
                sent = await pbx.post(f"/hooks/planfix/{install.integration_id}", data={
                    "cmd": "event", "type": direction, "event": event, "callid": callid, "phone": phone, "ext": ext,
                    "planfix_token": install.token} | (end if event == "COMPLETED" else {}))  # fmt: skip
                assert sent.status_code == 200, sent.text
    return server, install


async def test_my_missed_calls_list_what_i_owe_and_who_returned_the_rest(office):
    server, _ = office
    daria, _ = await sign_in(server, "daria")
    andy, _ = await sign_in(server, "andy")
    async with aclosing(daria), aclosing(andy):
        page = (await daria.get("/missed")).text
        owed_daria = (await daria.get("/missed/count")).json()["owed"]
        owed_andy = (await andy.get("/missed/count")).json()["owed"]
    owed, returned = page.split("Перезвонили за неделю")
    assert "+7 916 000-00-02" in owed and "Перезвонить" in owed and "+7 916 000-00-01" not in owed
    assert "+7 916 000-00-01" in returned and "перезвонил(а) Andy через 0:0" in returned
    assert (owed_daria, owed_andy) == (1, 0)


async def test_missed_calls_recovered_are_measured(office):
    server, install = office
    now = datetime.now(UTC)
    async with httpx.AsyncClient(base_url=server, headers={"Authorization": f"Bearer {install.api_key}"}) as api:
        hour = {"since": (now - timedelta(hours=1)).isoformat(), "until": (now + timedelta(hours=1)).isoformat()}
        found = (await api.get("/api/analytics", params=hour)).json()
        long_ago = {"since": "2020-01-01T00:00:00Z", "until": now.isoformat()}
        too_long = await api.get("/api/analytics", params=long_ago)
        ids = {e["pbx_login"]: e["id"] for e in (await api.get("/api/employees")).json()}
    callbacks = found["callbacks"]
    assert {k: callbacks[k] for k in ("missed", "returned", "returned_within_sla", "sla_minutes")} == {
        "missed": 2, "returned": 1, "returned_within_sla": 1, "sla_minutes": 30}  # fmt: skip
    assert callbacks["never_returned"] == 1 and callbacks["median_seconds_to_callback"] is not None
    people = {e["employee_id"]: e for e in callbacks["per_employee"]}
    assert (people[ids["daria"]]["missed"], people[ids["daria"]]["returned"]) == (2, 1)
    assert (people[ids["andy"]]["missed"], people[ids["andy"]]["returned"]) == (1, 1)
    assert too_long.status_code == 400
    user, _ = await sign_in(server, "maria")
    async with aclosing(user):
        page = (await user.get("/analytics", params={"period": "today"})).text
        exported = (await user.get("/analytics.csv", params={"period": "today"})).content.decode("utf-8-sig")
    assert "Пропущенные: перезвонили ли" in page and "Не перезвонили" in page
    rows = {row[0]: row for row in csv.reader(io.StringIO(exported))}
    assert rows["Daria"][1:4] == ["2", "0", "2"] and rows["Daria"][4] == "1"  # rang 2, answered 0, missed 2; 1 back
