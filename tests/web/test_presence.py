"""Who is on the line now (GET /api/presence, the page), and "Отошёл": while away an employee gets no card and a
PBX's lookup does not name them as the responsible manager."""

from __future__ import annotations

import asyncio
import re
from contextlib import aclosing

import httpx

from callbridge.store import directory
from callbridge.web.auth import hash_password

from ..security.conftest import PASSWORD, make_install, sign_in
from ..security.test_streams import Stream


async def test_each_employee_is_free_ringing_talking_or_away(services, server):
    install = await make_install(services, server)
    ids = {}
    async with services.db.transaction() as session:
        for login, extension in (("daria", "201"), ("andy", "202"), ("mike", "203")):
            person = await directory.add_employee(session, name=login.title(), pbx_login=login, extension=extension)
            person.password_hash = hash_password(PASSWORD)
            ids[login] = person.id
        mikes = {"name": "Клиент Майка", "phones": ["+79165550303"], "responsible_id": ids["mike"]}
        await directory.add_client(session, **mikes)
    hook = f"/hooks/planfix/{install.integration_id}"

    async def event(name: str, ext: str) -> None:
        fields = {"cmd": "event", "type": "in", "event": name, "callid": "p1", "phone": "79161112233", "ext": ext}
        sent = await pbx.post(hook, data=fields | {"planfix_token": install.token})
        assert sent.status_code == 200

    async with (
        httpx.AsyncClient(base_url=server) as pbx,
        httpx.AsyncClient(base_url=server, headers={"Authorization": f"Bearer {install.api_key}"}) as api,
    ):

        async def states() -> dict[int, dict]:
            return {p["employee_id"]: p for p in (await api.get("/api/presence")).json()}

        assert {states_[ids[n]]["state"] for states_ in [await states()] for n in ids} == {"free"}
        await event("INCOMING", "201")
        await event("INCOMING", "202")
        now = await states()
        assert (now[ids["daria"]]["state"], now[ids["andy"]]["state"]) == ("ringing", "ringing")
        await event("ACCEPTED", "202")
        now = await states()
        assert (now[ids["daria"]]["state"], now[ids["andy"]]["state"]) == ("free", "talking")
        assert now[ids["andy"]]["call_id"] and now[ids["andy"]]["since"]

        mike, _ = await sign_in(server, "mike")
        async with aclosing(mike):
            csrf = re.search(r'name="csrf" content="([^"]+)"', (await mike.get("/calls")).text).group(1)
            assert (await mike.post("/me/away", data={"csrf": csrf, "away": "1"})).json() == {"away": True}
            assert (await states())[ids["mike"]]["state"] == "away"
            looked_up = (await pbx.post(hook, data={"cmd": "contact", "phone": "79165550303",
                                                    "planfix_token": install.token})).json()  # fmt: skip
            assert looked_up["contact_name"] == "Клиент Майка" and looked_up.get("responsible") != 203
            stream = await Stream(mike, "/live/stream").started()
            ring = {"cmd": "event", "type": "in", "event": "INCOMING", "phone": "79165550303", "ext": "203",
                    "planfix_token": install.token}  # fmt: skip
            await pbx.post(hook, data=ring | {"callid": "p2"})
            await asyncio.sleep(1)
            assert not any("CardShown" in frame for frame in stream.frames)  # away: no card
            stream.close()
            assert (await mike.post("/me/away", data={"csrf": csrf, "away": "0"})).json() == {"away": False}
            stream = await Stream(mike, "/live/stream").started()
            await pbx.post(hook, data=ring | {"callid": "p3"})
            for _ in range(30):
                if any("CardShown" in frame for frame in stream.frames):
                    break
                await asyncio.sleep(0.1)
            assert any("CardShown" in frame for frame in stream.frames)  # back: cards again
            stream.close()
            page = (await mike.get("/presence")).text
        assert "разговаривает" in page and "звонит телефон" in page
