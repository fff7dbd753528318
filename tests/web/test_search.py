"""Search as people type: any case in any alphabet, on both databases ("ромашка" found nothing on SQLite), and any
part of a number in any writing, in clients and the journal."""

from __future__ import annotations

from contextlib import aclosing

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from callbridge.domain.phones import number_parts
from callbridge.store import directory

from ..security.conftest import make_install, sign_in

NUMBER = "+79165550102"


@pytest.fixture
async def office(services, server):
    install = await make_install(services, server)
    async with services.db.transaction() as session:
        await directory.add_client(session, name="ООО Ромашка", phones=[NUMBER])
        await directory.add_client(session, name="Лютик", phones=["+79031112233"])
    async with httpx.AsyncClient(base_url=server) as pbx:
        for event, extra in (("INCOMING", {}), ("COMPLETED", {"status": "NoAnswer", "duration": "0"})):
            sent = await pbx.post(f"/hooks/planfix/{install.integration_id}", data={
                "cmd": "event", "type": "in", "event": event, "callid": "s-1", "phone": NUMBER[1:], "ext": "101",
                "planfix_token": install.token} | extra)  # fmt: skip
            assert sent.status_code == 200, sent.text
    return server


@pytest.mark.parametrize("typed", ["ромашка", "РОМАШКА", "Ромашка", "ооо ром", "555-01-02", "5550102", "8 916 555",
                                   "+7 916 555-01-02", "(916) 555"])  # fmt: skip
async def test_clients_are_found_as_people_type(office, typed):
    user, _ = await sign_in(office, "maria")
    async with aclosing(user):
        page = (await user.get("/clients", params={"q": typed})).text
    assert "ООО Ромашка" in page and "Лютик" not in page


@pytest.mark.parametrize("typed", ["555-01-02", "5550102", "8 916 555", "+7 916 555-01-02", "79165550102"])
async def test_the_journal_finds_a_part_of_a_number(office, typed):
    user, _ = await sign_in(office, "maria")
    async with aclosing(user):
        found = (await user.get("/calls", params={"phone": typed})).text
        other = (await user.get("/calls", params={"phone": "903 111"})).text
    assert 'data-call="' in found and "+7 916 555-01-02" in found and 'data-call="' not in other


@given(national=st.from_regex(r"9[0-9]{9}", fullmatch=True), data=st.data())
def test_any_part_of_a_number_in_any_writing_finds_it(national, data):
    e164 = f"+7{national}"
    start = data.draw(st.integers(0, len(national) - 3))
    end = data.draw(st.integers(start + 3, len(national)))
    part = national[start:end]
    separators = data.draw(st.lists(st.sampled_from(["", " ", "-", "(", ")", "."]), min_size=len(part),
                                    max_size=len(part)))  # fmt: skip
    written = "".join(s + d for s, d in zip(separators, part, strict=True))
    for typed in (written, "8" + written if start == 0 else written):
        assert any(p in e164 for p in number_parts(typed)), (typed, number_parts(typed))


async def test_every_list_says_its_total_and_pages_and_a_client_shows_all_its_tasks(services, server):
    """5,000 imported clients showed as 50 rows with no total or pager; a client page said "no tasks" while the
    client had 6 open ones (it looked at the company's newest 100)."""
    from callbridge.store.tables import Task

    await make_install(services, server)
    async with services.db.transaction() as session:
        await directory.add_clients_bulk(session, [(f"Клиент {n:03}", [f"+7916000{n:04}"], None) for n in range(120)])
        mine = await directory.add_client(session, name="Тот самый", phones=["+79169999999"])
        session.add_all([Task(title=f"своя {n}", client_id=mine.id) for n in range(6)])
        session.add_all([Task(title=f"чужая {n}", client_id=None) for n in range(150)])
    user, _ = await sign_in(server, "maria")
    async with aclosing(user):
        first = (await user.get("/clients")).text
        last = (await user.get("/clients", params={"page": 2})).text
        tasks = (await user.get("/tasks", params={"who": "all"})).text
        client = (await user.get(f"/clients/{mine.id}")).text
    assert "122 клиента" in first and "Страница 1 из 3" in first and "Клиент 000" in first
    assert "Страница 3 из 3" in last and "Клиент 119" in last and "Клиент 000" not in last
    assert "156 задач" in tasks and "Страница 1 из 4" in tasks
    assert all(f"своя {n}" in client for n in range(6))
