"""Fair numbers: a missed group call is missed by everyone it rang (it counted only against the last of them: 118
calls, 97 % missed, against Андрей, and 1 against Дарья), and once for the company."""

from __future__ import annotations

from contextlib import aclosing
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx

from callbridge.store import analytics, directory

from ..security.conftest import make_install, sign_in


async def test_a_group_call_counts_for_each_employee_it_rang(services, server):
    install = await make_install(services, server)
    async with services.db.transaction() as session:
        daria = await directory.add_employee(session, name="Дарья", pbx_login="daria", extension="201")
        andy = await directory.add_employee(session, name="Андрей", pbx_login="andy", extension="202")
    calls = {
        "missed by both": [("INCOMING", "201", {}), ("INCOMING", "202", {}),
                           ("COMPLETED", "", {"status": "Missed"})],
        "answered by Андрей": [("INCOMING", "201", {}), ("INCOMING", "202", {}), ("ACCEPTED", "202", {}),
                               ("COMPLETED", "202", {"status": "Success", "duration": "60"})],
        "Дарья's own": [("INCOMING", "201", {}), ("ACCEPTED", "201", {}),
                        ("COMPLETED", "201", {"status": "Success", "duration": "30"})],
    }  # fmt: skip
    async with httpx.AsyncClient(base_url=server) as pbx:
        for n, events in enumerate(calls.values()):
            for event, ext, extra in events:
                sent = await pbx.post(f"/hooks/planfix/{install.integration_id}", data={
                    "cmd": "event", "type": "in", "event": event, "callid": f"g-{n}", "phone": f"7916000000{n}",
                    "ext": ext, "planfix_token": install.token} | extra)  # fmt: skip
                assert sent.status_code == 200
    now = datetime.now(UTC)
    async with services.db.read() as session:
        figures = await analytics.figures(session, now - timedelta(days=1), now + timedelta(days=1), ZoneInfo("UTC"))
    them = figures.per_employee
    assert (them[daria.id].calls, them[daria.id].answered, them[daria.id].missed) == (3, 1, 1)
    assert (them[andy.id].calls, them[andy.id].answered, them[andy.id].missed) == (2, 1, 1)
    assert (figures.total.calls, figures.total.answered, figures.total.missed) == (3, 2, 1)
    user, _ = await sign_in(server, "maria")
    async with aclosing(user):
        page = (await user.get("/analytics", params={"period": "today", "sort": "missed"})).text
    assert "Звонили ему" in page and "Пропустил" in page
