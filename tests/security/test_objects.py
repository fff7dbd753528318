"""Per-object rights in the workspace (web/access.py): an employee changes what is theirs; team leads and admins
change anything. Each cell of the matrix is a request a signed-in employee makes, as the attack was made: taking a
colleague's client (the PBX would route its calls to them), closing their deals and tasks, rewriting comments."""

from __future__ import annotations

import re
from contextlib import aclosing
from dataclasses import dataclass

import pytest

from callbridge.store import directory
from callbridge.store.tables import Task
from callbridge.web.auth import hash_password

from ..conftest import settings_for
from ..helpers import running_server
from .conftest import PASSWORD, make_install, sign_in


@dataclass
class Office:
    url: str
    ids: dict[str, int]


async def office(services, url: str, token: str, integration_id: int) -> Office:
    """Дарья and Андрей (employees), their clients, deals, tasks and an answered call each; a client of no one's."""
    import httpx

    ids: dict[str, int] = {}
    async with services.db.transaction() as session:
        for login, extension in (("daria", "201"), ("andy", "202")):
            person = await directory.add_employee(session, name=login, pbx_login=login, extension=extension)
            person.password_hash = hash_password(PASSWORD)
            ids[login] = person.id
            phones = [f"+7910555000{extension[-1]}"]
            name = f"client of {login}"
            client = await directory.add_client(session, name=name, phones=phones, responsible_id=person.id)
            ids[f"{login}.client"] = client.id
            ids[f"{login}.deal"] = (await directory.add_deal(session, client_id=client.id, title="deal")).id
            task = Task(title="call back", employee_id=person.id, client_id=client.id)
            session.add(task)
            await session.flush()
            ids[f"{login}.task"] = task.id
        nobody = await directory.add_client(session, name="no one's", phones=["+79105550009"])
        ids["nobody.client"] = nobody.id
    async with httpx.AsyncClient(base_url=url) as pbx:
        for login, extension, callid in (("daria", "201", "d-1"), ("andy", "202", "a-1")):
            base = {"type": "in", "callid": callid, "phone": f"7910555000{extension[-1]}", "ext": extension,
                    "planfix_token": token}  # fmt: skip
            for event in ({"event": "INCOMING"}, {"event": "ACCEPTED"}, {"event": "COMPLETED", "status": "Success",
                                                                          "duration": "20"}):  # fmt: skip
                sent = await pbx.post(f"/hooks/planfix/{integration_id}", data=base | {"cmd": "event"} | event)
                assert sent.is_success
    async with services.db.read() as session:
        from callbridge.store import calls

        rows, _ = await calls.list_calls(session, calls.CallFilter(), limit=10)
    for row in rows:
        ids[f"{'daria' if row.pbx_call_id == 'd-1' else 'andy'}.call"] = row.id
    return Office(url, ids)


def actions(ids: dict[str, int], owner: str, actor: str) -> dict[str, tuple[str, dict[str, str]]]:
    """What `actor` tries on `owner`'s things: (path, form)."""
    return {
        "take the client": (f"/clients/{ids[owner + '.client']}", {"responsible": str(ids[actor])}),
        "rename the client": (f"/clients/{ids[owner + '.client']}", {"name": "mine now",
                                                                     "responsible": str(ids[owner])}),  # fmt: skip
        "close the deal": (f"/deals/{ids[owner + '.deal']}/close", {}),
        "close the task": (f"/tasks/{ids[owner + '.task']}/done", {}),
        "rewrite the comment": (f"/calls/{ids[owner + '.call']}/comment", {"comment": f"{actor} was here"}),
    }


async def attempt(url: str, login: str, path: str, form: dict[str, str]) -> int:
    client, _ = await sign_in(url, login)
    async with aclosing(client):
        csrf = re.search(r'name="csrf" content="([^"]+)"', (await client.get("/calls")).text).group(1)
        return (await client.post(path, data={"csrf": csrf} | form)).status_code


@pytest.fixture
async def world(services, database_url, tmp_path):
    with running_server(settings_for(database_url, tmp_path, outbound_allow="")) as url:
        install = await make_install(services, url)
        yield await office(services, url, install.token, install.integration_id)


ACTIONS = ["take the client", "rename the client", "close the deal", "close the task", "rewrite the comment"]


@pytest.mark.parametrize("action", ACTIONS)
async def test_an_employee_cannot_touch_a_colleagues_things(world, services, action):
    path, form = actions(world.ids, owner="daria", actor="andy")[action]
    assert await attempt(world.url, "andy", path, form) == 403
    async with services.db.read() as session:
        client = await directory.get_client(session, world.ids["daria.client"])
        deal = await directory.get_deal(session, world.ids["daria.deal"])
        task = await directory.get_task(session, world.ids["daria.task"])
    assert client.responsible_id == world.ids["daria"] and client.name == "client of daria"
    assert deal.status == "active" and task.status == "open"


@pytest.mark.parametrize("action", ACTIONS)
async def test_an_employee_changes_their_own_things(world, action):
    path, form = actions(world.ids, owner="daria", actor="daria")[action]
    assert await attempt(world.url, "daria", path, form) in (200, 303)


@pytest.mark.parametrize("login", ["admin", "maria"])  # an admin, a manager (team lead)
async def test_leads_and_admins_change_anything(world, login):
    for path, form in actions(world.ids, owner="daria", actor="andy").values():
        assert await attempt(world.url, login, path, form) in (200, 303), path


async def test_a_client_of_no_one_can_be_taken_and_ones_own_handed_over(world, services):
    assert await attempt(world.url, "andy", f"/clients/{world.ids['nobody.client']}",
                         {"responsible": str(world.ids["andy"])}) == 303  # fmt: skip
    assert await attempt(world.url, "daria", f"/clients/{world.ids['daria.client']}",
                         {"responsible": str(world.ids["andy"])}) == 303  # fmt: skip
    async with services.db.read() as session:
        assert (await directory.get_client(session, world.ids["nobody.client"])).responsible_id == world.ids["andy"]
        assert (await directory.get_client(session, world.ids["daria.client"])).responsible_id == world.ids["andy"]


async def test_a_shared_crm_lets_everyone_change_everything(services, database_url, tmp_path):
    with running_server(settings_for(database_url, tmp_path, outbound_allow="", shared_crm=True)) as url:
        install = await make_install(services, url)
        world = await office(services, url, install.token, install.integration_id)
        for path, form in actions(world.ids, owner="daria", actor="andy").values():
            assert await attempt(url, "andy", path, form) in (200, 303), path
