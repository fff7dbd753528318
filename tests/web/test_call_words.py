"""The call's words travel with it: the comment written on the card is in the journal's row, the client's history,
the CSV export and the webhook payload; an unknown number shows once, marked new, not again as a client's name."""

from __future__ import annotations

import csv
import io
import re
from contextlib import aclosing

import httpx

from callbridge.automation import Rules
from callbridge.flows import set_rules
from callbridge.store import directory

from ..security.conftest import make_install, sign_in


async def test_a_comment_shows_wherever_its_call_does(services, server):
    install = await make_install(services, server)
    async with services.db.transaction() as session:
        (maria,) = [e for e in await directory.list_employees(session) if e.pbx_login == "maria"]
        maria.extension = "201"
    await set_rules(services, install.integration_id, Rules(leads_for_missed_unknown=True))
    async with httpx.AsyncClient(base_url=server) as pbx:
        for callid, phone, events in (
            ("known", "79101234567", [{"event": "INCOMING"}, {"event": "ACCEPTED"},
                                      {"event": "COMPLETED", "status": "Success", "duration": "30"}]),
            ("stranger", "79167770011", [{"event": "INCOMING"}, {"event": "COMPLETED", "status": "Missed"}]),
        ):  # fmt: skip
            for event in events:
                await pbx.post(f"/hooks/planfix/{install.integration_id}", data={
                    "cmd": "event", "type": "in", "callid": callid, "phone": phone, "ext": "201",
                    "planfix_token": install.token} | event)  # fmt: skip
    user, _ = await sign_in(server, "maria")
    async with aclosing(user):
        journal = (await user.get("/calls")).text
        known = re.search(r'data-call="(\d+)"[^>]*>(?:(?!</tr>).)*Иванов', journal, re.S)
        call_id = int(known.group(1))
        csrf = re.search(r'name="csrf" content="([^"]+)"', journal).group(1)
        saved = await user.post(f"/calls/{call_id}/comment", data={"csrf": csrf, "comment": "Хочет счёт на 5 лицензий"})
        assert saved.status_code == 303
        journal = (await user.get("/calls")).text
        client_id = re.search(r'href="/clients/(\d+)">Иванов', journal).group(1)
        history = (await user.get(f"/clients/{client_id}")).text
        exported = (await user.get("/calls.csv")).content.decode("utf-8-sig")
    assert "Хочет счёт на 5 лицензий" in journal and "Хочет счёт на 5 лицензий" in history
    rows = list(csv.reader(io.StringIO(exported)))
    assert rows[0][-2] == "Комментарий к звонку"
    assert ["Хочет счёт на 5 лицензий", str(call_id)] in [r[-2:] for r in rows[1:]]
    # the stranger's row: the number once, and its automatic lead marked new instead of its name again
    row = r'<tr class="call[^"]*"[^>]*>(?:(?!</tr>).)*7[\s\xa0]916[\s\xa0]777(?:(?!</tr>).)*</tr>'
    stranger = re.search(row, journal, re.S)
    assert stranger and "новый номер" in stranger.group(0)
    assert stranger.group(0).count("777-00-11") == 1
    async with httpx.AsyncClient(base_url=server, headers={"Authorization": f"Bearer {install.api_key}"}) as api:
        assert (await api.get(f"/api/calls/{call_id}")).json()["comment"] == "Хочет счёт на 5 лицензий"
