"""The workspace in a real browser (Debian's Chromium driven by Playwright): a call comes in, its card
appears, answering elsewhere hides it, the journal shows the call and its recording plays."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from starlette.responses import JSONResponse

from callbridge import demo, demo_history
from callbridge.store import directory, integrations

from ..conftest import settings_for
from ..fake_pbx import FakePbx
from ..helpers import running_server, serve_app

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SCREENSHOTS = os.environ.get("CALLBRIDGE_SCREENSHOTS")  # a folder: also save the main pages as pictures
ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--autoplay-policy=no-user-gesture-required"]  # fmt: skip
KNOWN = "79101234567"  # the demo's "Рога и копыта", responsible: andy

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")


@pytest.fixture
async def browser():
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        await browser.close()


@pytest.fixture
async def workspace(services, database_url, tmp_path):
    """A server with the demo data, recordings kept, and a fake PBX for recordings and click-to-call."""
    await demo.load(services, history_days=0)
    pbx = FakePbx(token="demo", replies={"accounts": JSONResponse([{"name": "andy", "realName": "Петров Андрей"}])})
    with (
        serve_app(pbx.app()) as pbx_url,
        running_server(settings_for(database_url, tmp_path, keep_recordings=True, live_recheck_seconds=0.5)) as base,
    ):
        async with services.db.transaction() as session:
            (row,) = await integrations.list_integrations(session)
            row.settings = {"pbx_url": f"{pbx_url}/api", "pbx_token": "demo"}
        pbx.files["call.wav"] = (demo_history.tone(1.0, seed=0), "audio/x-wav", False)
        async with httpx.AsyncClient(timeout=10) as http:

            async def post(**params) -> None:
                response = await http.post(f"{base}/hooks/cloudpbx/{row.id}", data=params | {"crm_token": row.token})
                assert response.status_code == 200, response.text

            yield {"base": base, "post": post, "pbx": pbx, "pbx_url": pbx_url, "services": services}


async def sign_in(browser, base: str, login: str, height: int = 860):
    page = await browser.new_page(viewport={"width": 1360, "height": height})
    await page.goto(f"{base}/calls")
    assert "/login" in page.url
    await page.fill("input[name=login]", login)
    await page.fill("input[name=password]", "demo")
    await page.click("form.login button")
    await page.wait_for_url(f"{base}/calls")
    return page


async def snap(page, name: str) -> None:
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(Path(SCREENSHOTS) / f"{name}.png"))


async def test_a_call_from_card_to_recording(browser, workspace):
    base, post = workspace["base"], workspace["post"]
    andy = await sign_in(browser, base, "andy")
    mike = await sign_in(browser, base, "mike")
    await asyncio.sleep(0.3)  # both pages have opened their live stream

    posted = time.perf_counter()
    for user in ("andy", "mike"):
        await post(cmd="event", type="INCOMING", callid="w1", phone=KNOWN, user=user, diversion="74951234567")
    card = await andy.wait_for_selector(".card", timeout=3000)
    print(f"call card on screen {1000 * (time.perf_counter() - posted):.0f} ms after the PBX request")
    text = await card.inner_text()
    assert "Менеджер ЗАО Рога и копыта" in text and "Поставка копыт" in text and "Петров Андрей" in text
    await mike.wait_for_selector(".card", timeout=3000)
    await snap(andy, "call-card")

    await post(cmd="event", type="ACCEPTED", callid="w1", phone=KNOWN, user="mike")  # mike answers
    await andy.wait_for_selector(".card", state="detached", timeout=3000)  # gone for everyone else at once
    talking = await mike.wait_for_selector(".card.talking", timeout=3000)  # the speaker keeps it
    assert "Менеджер ЗАО Рога и копыта" in await talking.inner_text() and "Поставка копыт" in await talking.inner_text()
    assert "Линия: +7 495 123-45-67" in await talking.inner_text()  # which of the company's numbers was called
    for _ in range(40):  # the talk timer runs
        if await mike.inner_text(".card time.timer") not in ("0:00", ""):
            break
        await asyncio.sleep(0.1)
    assert re.fullmatch(r"0:0[1-9]", await mike.inner_text(".card time.timer"))
    await mike.fill(".card textarea", "Просит счёт на 20 копыт")
    await snap(mike, "call-card-talking")

    await post(cmd="event", type="COMPLETED", callid="w1", phone=KNOWN, user="mike")
    ended = await mike.wait_for_selector(".card.ended", timeout=3000)  # over: a while left to finish the comment
    assert "Звонок завершён" in await ended.inner_text()
    assert await mike.input_value(".card textarea") == "Просит счёт на 20 копыт"  # what was typed survives
    await mike.click(".card form.comment button")
    assert "Сохранено" in await (await mike.wait_for_selector("#toast.show", timeout=3000)).inner_text()
    await post(cmd="history", type="in", status="Success", phone=KNOWN, user="mike", duration="60", callid="w1",
               link=f"{workspace['pbx_url']}/records/call.wav")  # fmt: skip
    for _ in range(50):
        await andy.goto(f"{base}/calls")
        if await andy.query_selector("tr.call button.play"):
            break
        await asyncio.sleep(0.1)
    row = await andy.wait_for_selector("tr.call")
    assert "Отвечен" in await row.inner_text() and "Семенов Михаил" in await row.inner_text()
    await andy.click("tr.call td a")
    assert await andy.input_value("form.comment textarea") == "Просит счёт на 20 копыт"
    await andy.goto(f"{base}/calls")
    assert await andy.query_selector("tr.call audio") is None  # a play button; the player is made when pressed
    await andy.click("tr.call button.play")
    await andy.wait_for_selector("tr.call audio")
    duration = await andy.evaluate(
        "new Promise(done => { const a = document.querySelector('tr.call audio'); "
        "a.readyState ? done(a.duration) : a.addEventListener('loadedmetadata', () => done(a.duration)); })"
    )
    assert duration == pytest.approx(1.0, abs=0.05)
    await snap(andy, "journal")


async def test_an_unknown_number_offers_to_create_a_client(browser, workspace):
    page = await sign_in(browser, workspace["base"], "andy")
    await asyncio.sleep(0.3)
    await workspace["post"](cmd="event", type="INCOMING", callid="w2", phone="79995550000", user="andy")
    card = await page.wait_for_selector(".card", timeout=3000)
    assert "Неизвестный номер" in await card.inner_text()
    await page.fill(".card form.new-client input[name=name]", "ООО Новый клиент")
    await page.click(".card form.new-client button")  # made in place: the card stays and shows the client
    await page.wait_for_selector(".card h3 a", timeout=3000)
    assert "ООО Новый клиент" in await page.inner_text(".card h3") and page.url.endswith("/calls")
    await page.click(".card h3 a")
    await page.wait_for_url(lambda url: "/clients/" in url)
    assert "ООО Новый клиент" in await page.inner_text("h1")
    assert "+7 999 555-00-00" in await page.inner_text("main")
    # a second unknown number, whose client the rules made meanwhile: the card links to it, what was typed stays
    await page.click(".card .dismiss")
    await workspace["post"](cmd="event", type="INCOMING", callid="w3", phone="79995550001", user="andy")
    await page.wait_for_selector(".card form.new-client", timeout=3000)
    async with workspace["services"].db.transaction() as session:  # the rules' lead, as they would make it
        await directory.add_client(session, name="Лид +7 999 555-00-01", phones=["+79995550001"])
    await page.fill(".card form.new-client input[name=name]", "Мой новый")
    await page.click(".card form.new-client button")
    await page.wait_for_selector(".card h3 a", timeout=3000)
    assert "Лид +7 999 555-00-01" in await page.inner_text(".card h3")
    assert "уже есть клиент" in await page.inner_text("#toast")


async def test_click_to_call_from_the_journal(browser, workspace):
    await workspace["post"](cmd="history", type="in", status="Success", phone=KNOWN, user="andy", duration="5",
                            callid="w3")  # fmt: skip
    page = await sign_in(browser, workspace["base"], "andy")
    await page.click("a.dial")
    toast = await page.wait_for_selector("#toast.show", timeout=3000)
    assert "Сначала зазвонит ваш телефон" in await toast.inner_text()
    assert workspace["pbx"].received[-1] == {"cmd": "makeCall", "user": "andy", "phone": KNOWN, "token": "demo"}


async def test_language_pages_and_roles(browser, workspace):
    await workspace["post"](cmd="history", type="in", status="Missed", phone=KNOWN, user="andy", duration="0",
                            callid="w4")  # fmt: skip
    employee = await sign_in(browser, workspace["base"], "andy")
    assert await employee.inner_text("header nav") == "Звонки\nКлиенты\nПропущенные\nЗадачи\nКто на линии\nАналитика"
    response = await employee.goto(f"{workspace['base']}/settings")
    assert response.status == 403
    await employee.goto(f"{workspace['base']}/calls")
    await employee.click("header a.lang")
    assert "Calls" in await employee.inner_text("header nav")

    admin = await sign_in(browser, workspace["base"], "admin")
    for path, expect in [("/clients", "Рога и копыта"), ("/tasks?who=all", "Задачи"),
                         ("/analytics", "Доля пропущенных"), ("/settings", "/hooks/cloudpbx/")]:  # fmt: skip
        await admin.goto(workspace["base"] + path)
        assert expect in await admin.inner_text("main"), path
        await snap(admin, path.strip("/").split("?")[0])
    await admin.goto(workspace["base"] + "/settings")
    await admin.click("text=Проверить связь с АТС")
    assert await admin.inner_text("p.note") == "Связь с АТС есть"
    await admin.goto(workspace["base"] + "/calls")
    await admin.click("tr.call td a")  # the call's page
    await admin.click("text=Повторить запросы")
    assert "без изменений 1" in await admin.inner_text("p.note")  # replaying changed nothing
    await admin.goto(workspace["base"] + "/clients")
    await admin.click("text=Менеджер ЗАО Рога и копыта")
    assert "Поставка копыт" in await admin.inner_text("main")
    await snap(admin, "client")


async def test_the_api_docs_work_on_a_closed_network(browser, workspace):
    """Every request but ours is refused, as on a network without the Internet: Swagger UI still shows the API."""
    page = await browser.new_page()
    outside: list[str] = []

    async def only_ours(route):
        if route.request.url.startswith(workspace["base"]):
            await route.continue_()
        else:
            outside.append(route.request.url)
            await route.abort()

    await page.route("**/*", only_ours)
    await page.goto(f"{workspace['base']}/docs")
    await page.wait_for_selector(".opblock-summary-path", timeout=10_000)  # the operations are listed
    assert "callbridge" in await page.inner_text(".info .title", timeout=5000) and outside == []


async def test_english_chosen_on_the_sign_in_page_stays_after_signing_in(browser, workspace):
    base = workspace["base"]
    page = await browser.new_page()
    await page.goto(f"{base}/login")
    await page.click("text=English")
    assert "Sign in" in await page.inner_text("main")
    await page.fill("input[name=login]", "andy")
    await page.fill("input[name=password]", "demo")
    await page.click("form.login button")
    await page.wait_for_url(f"{base}/calls")
    assert await page.inner_text("header nav") == "Calls\nClients\nMissed\nTasks\nWho is on the line\nAnalytics"


async def test_an_admin_adds_a_webhook_and_tests_it(browser, workspace):
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    got: list[bytes] = []

    async def receive(request):
        got.append(await request.body())
        return Response(status_code=204)

    with serve_app(Starlette(routes=[Route("/hook", receive, methods=["POST"])])) as receiver:
        admin = await sign_in(browser, workspace["base"], "admin")
        await admin.goto(workspace["base"] + "/settings")
        await admin.click("text=Добавить вебхук")
        await admin.fill("input[name=url]", f"{receiver}/hook")
        await admin.uncheck("input[value='call.ringing']")
        await admin.click("form[action='/settings/webhooks'] button")
        notice = await admin.inner_text("p.notice")
        assert "скопируйте его сейчас" in notice and "whsec_" in notice
        row = await admin.inner_text("table.webhooks tbody tr")
        assert f"{receiver}/hook" in row and "call.ringing" not in row and "call.ended" in row
        await admin.click("text=Отправить тестовое")
        assert await admin.inner_text("p.note") == "Тестовое событие доставлено"
        assert len(got) == 1 and b'"type": "webhook.test"' in got[0]
        await admin.reload()
        assert "whsec_" not in await admin.inner_text("main")  # the secret was shown once
        await snap(admin, "webhooks")


async def test_every_page_fits_a_phone(browser, workspace):
    await workspace["post"](cmd="history", type="in", status="Missed", phone=KNOWN, user="andy", duration="0",
                            callid="ph1")  # fmt: skip
    page = await browser.new_page(viewport={"width": 390, "height": 844})
    await page.goto(f"{workspace['base']}/login")
    await page.fill("input[name=login]", "admin")
    await page.fill("input[name=password]", "demo")
    await page.click("form.login button")
    await page.wait_for_url(f"{workspace['base']}/calls")
    call = await page.get_attribute("tr.call td a", "href")
    await page.goto(f"{workspace['base']}/clients")
    client = await page.get_attribute("main table a[href^='/clients/']", "href")
    pages = ("/calls", call, "/clients", client, "/tasks?who=all", "/missed", "/presence", "/analytics", "/settings")
    for path in pages:
        await page.goto(workspace["base"] + path)
        width = await page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, (path, width)  # no sideways scrolling: wide tables scroll inside themselves
        assert await page.is_visible("header nav a[href='/settings']") and await page.is_visible("header form button")
        if path == call:  # a PBX request's parameters are read across the screen, not down a column of letters
            box = await page.locator("table.requests td:has(code)").first.bounding_box()
            assert box["width"] > 300, box
            assert "применён" in await page.inner_text("table.requests")  # its status in words
    await snap(page, "settings-phone")  # the last page of the loop, the widest


async def test_click_to_call_that_fails_says_so_in_words_with_the_detail_a_click_away(browser, workspace, services):
    async with services.db.transaction() as session:
        (row,) = await integrations.list_integrations(session)
        row.settings = {"pbx_url": "http://127.0.0.1:9/api", "pbx_token": "demo"}  # nothing listens there
    await asyncio.sleep(0.6)  # the server's integration cache
    await workspace["post"](cmd="history", type="in", status="Success", phone=KNOWN, user="andy", duration="5",
                            callid="w5")  # fmt: skip
    page = await sign_in(browser, workspace["base"], "andy")
    await page.click("a.dial")
    toast = await page.wait_for_selector("#toast.show", timeout=5000)
    said = await toast.inner_text()
    assert "АТС пока не приняла звонок" in said and "ConnectError" not in said
    await toast.click()
    assert "ConnectError" in await toast.inner_text()  # the technical detail, one click away
    # the PBX never takes it: the employee who clicked is told, on the page they went on to meanwhile
    await page.goto(f"{workspace['base']}/clients")
    for _ in range(400):
        if "так и не состоялся" in await page.inner_text("#toast"):
            break
        await asyncio.sleep(0.1)
    said = await page.inner_text("#toast")
    assert "так и не состоялся" in said and "+7 910 123-45-67" in said


async def test_an_employee_at_an_admins_page_and_a_missing_call_get_pages_in_words(browser, workspace):
    page = await sign_in(browser, workspace["base"], "andy")
    response = await page.goto(f"{workspace['base']}/settings")
    assert response.status == 403 and await page.inner_text("h1") == "Эта страница только для администраторов"
    response = await page.goto(f"{workspace['base']}/calls/999999")
    assert response.status == 404 and "Такой страницы нет" in await page.inner_text("h1")
    assert await page.is_visible("header nav")  # still the workspace, with its menu
    await page.click("header a.lang")
    await page.goto(f"{workspace['base']}/calls/999999")
    assert "There is no such page" in await page.inner_text("h1")
    async with httpx.AsyncClient() as http:  # the API's errors stay JSON
        api = await http.get(f"{workspace['base']}/api/calls/999999")
        assert api.status_code == 401 and api.headers["content-type"].startswith("application/json")


async def test_the_rules_are_set_in_words_with_employees_picked_by_name(browser, workspace, services):
    admin = await sign_in(browser, workspace["base"], "admin")
    await admin.goto(workspace["base"] + "/settings")
    await admin.click("text=Автоматизация")
    rules = await admin.inner_text("section.integration form[action$='/rules']")
    assert "Задача на пропущенный звонок" in rules and "missed_call_tasks" not in rules
    assert "Кому задача о пропущенном" in rules and "ответственному за клиента" in rules
    await admin.check("input[name=missed_call_tasks]")
    await admin.select_option("select[name=senior_manager_id]", label="Иванова Дария")
    await admin.select_option("select[name=listed_employee_ids]", label=["Петров Андрей", "Семенов Михаил"])
    await admin.select_option("select[name=missed_call_owner]", value="last_rung")
    await admin.click("section.integration form[action$='/rules'] button")
    assert await admin.inner_text("p.note") == "Сохранено"
    async with services.db.read() as session:
        (row,) = await integrations.list_integrations(session)
        people = {e.name: e.id for e in await directory.list_employees(session)}
    assert row.automation["missed_call_tasks"] and row.automation["missed_call_owner"] == "last_rung"
    assert row.automation["senior_manager_id"] == people["Иванова Дария"]
    assert sorted(row.automation["listed_employee_ids"]) == sorted([people["Петров Андрей"], people["Семенов Михаил"]])
    roles = await admin.inner_text("select[name=role]")
    assert "администратор" in roles and "admin" not in roles

    # owners per virtual number are rows: one added, then a second, then the first removed
    rows = "section.integration form[action$='/rules']"
    await admin.click("text=Автоматизация")
    await admin.fill(f"{rows} .owner-row >> nth=0 >> input", "8 (495) 120-00-00")
    await admin.select_option(f"{rows} .owner-row >> nth=0 >> select", label="Семенов Михаил")
    await admin.click(f"{rows} button:text('Сохранить')")
    await admin.click("text=Автоматизация")
    await admin.fill(f"{rows} .owner-row >> nth=1 >> input", "+7 812 300-00-00")
    await admin.select_option(f"{rows} .owner-row >> nth=1 >> select", label="Иванова Дария")
    await admin.fill(f"{rows} .owner-row >> nth=0 >> input", "")
    await admin.click(f"{rows} button:text('Сохранить')")
    async with services.db.read() as session:
        (row,) = await integrations.list_integrations(session)
    assert row.automation["owners_by_virtual_number"] == {"+78123000000": people["Иванова Дария"]}

    # a wrong value is said beside its field, in words, and nothing is saved
    await admin.click("text=Автоматизация")
    await admin.fill(f"{rows} .owner-row >> nth=1 >> input", "не номер")
    await admin.select_option(f"{rows} .owner-row >> nth=1 >> select", label="Петров Андрей")
    await admin.click(f"{rows} button:text('Сохранить')")
    said = await admin.inner_text(f"{rows} small.error")
    assert said == "Номер «не номер» не похож на телефон, или к нему не выбран сотрудник"
    await admin.fill(f"{rows} input[name=missed_call_due_minutes]", "20000")  # over a week: past what it takes
    await admin.click(f"{rows} button:text('Сохранить')")
    assert (await admin.inner_text(f"{rows} small.error")).startswith("Неверное значение:")
    await snap(admin, "settings-rules")
    async with services.db.read() as session:
        (row,) = await integrations.list_integrations(session)
    assert row.automation["owners_by_virtual_number"] == {"+78123000000": people["Иванова Дария"]}

    # so is a wrong setting of a new PBX, beside that setting
    await admin.click("text=Подключить АТС")
    planfix = "details.dialect:has(input[value=planfix])"
    await admin.click(f"{planfix} summary")
    await admin.fill(f"{planfix} input[name=pbx_url]", "pbx.example/api")
    await admin.fill(f"{planfix} input[name=pbx_token]", "secret")
    await admin.click(f"{planfix} button")
    beside = await admin.inner_text(f"{planfix} input[name=pbx_url] + small.error")
    assert beside.startswith("Неверное значение:")
    async with services.db.read() as session:
        assert len(await integrations.list_integrations(session)) == 1  # nothing added


async def test_a_journal_people_scan_all_day(browser, workspace, services):
    post = workspace["post"]
    async with services.db.transaction() as session:  # a name a spreadsheet would run as a formula
        await directory.add_client(session, name='=HYPERLINK("http://evil.example","open")', phones=["+79105550001"])
    page = await sign_in(browser, workspace["base"], "andy")
    assert await page.inner_text("tr.empty") == "Ничего нет"
    assert await page.inner_text("h1 small") == "0 звонков"

    # a missed call appears at the top while the journal is open, marked as owed a call back
    def minutes_ago(minutes: int) -> str:
        return (datetime.now(UTC) - timedelta(minutes=minutes)).strftime("%Y%m%dT%H%M%SZ")

    await post(cmd="history", type="in", status="Missed", phone="79105550001", user="andy", duration="0",
               callid="j1", start=minutes_ago(10))  # fmt: skip
    owed = await page.wait_for_selector("tr.call .badge.owed", timeout=5000)
    assert await owed.inner_text() == "не перезвонили"
    assert await page.inner_text("h1 small") == "1 звонок"  # the count follows the rows
    shown = await page.inner_text("tr.call time")
    assert len(shown) == 16 and shown[2] == shown[5] == "." and shown[13] == ":"  # 01.12.2026 10:35
    await post(cmd="history", type="out", status="Success", phone="79105550001", user="andy", duration="30",
               callid="j2", start=minutes_ago(5))  # fmt: skip
    await page.wait_for_selector("tr.call >> nth=1", timeout=5000)
    await page.wait_for_selector(".badge.owed", state="detached", timeout=5000)  # called back
    assert await page.inner_text("h1 small") == "2 звонка"

    # paging both ways with the page count, the filters kept
    for n in range(55):
        await post(cmd="history", type="in", status="Success", phone=f"7910000{n:04d}", user="andy", duration="9",
                   callid=f"p{n}")  # fmt: skip
    await page.goto(f"{workspace['base']}/calls?direction=in")
    assert "Страница 1 из 2" in await page.inner_text("p.pages")
    await page.click("p.pages >> text=Вперёд →")
    assert "direction=in" in page.url and "Страница 2 из 2" in await page.inner_text("p.pages")
    assert await page.is_visible("p.pages >> text=« В начало")

    # the filtered journal as CSV, for a spreadsheet
    exported = await page.request.get(f"{workspace['base']}/calls.csv?direction=in&phone=79105550001")
    text = (await exported.body()).decode("utf-8")
    assert text.startswith("\ufeffКогда,Направление,Телефон,Клиент")
    (row,) = text.splitlines()[1:]
    assert ",Входящий,+79105550001,\"'=HYPERLINK(\"\"http://evil.example\"\",\"\"open\"\")\",Петров Андрей," in row
    await snap(page, "journal-pages")



async def test_tasks_say_when_they_are_due_and_which_are_overdue(browser, workspace, services):
    from callbridge import flows
    from callbridge.automation import Rules

    async with services.db.read() as session:
        (row,) = await integrations.list_integrations(session)
    await flows.set_rules(services, row.id, Rules(missed_call_tasks=True, missed_call_due_minutes=30))
    started = (datetime.now(UTC) - timedelta(hours=2)).strftime("%Y%m%dT%H%M%SZ")
    await workspace["post"](cmd="history", type="in", status="Missed", phone=KNOWN, user="andy", duration="0",
                            callid="t1", start=started)  # fmt: skip
    page = await sign_in(browser, workspace["base"], "andy")
    await page.goto(f"{workspace['base']}/tasks")
    assert [await a.inner_text() for a in await page.query_selector_all("p.filters a")] == [
        "Мои", "Все", "Открытые", "Выполненные"]  # fmt: skip
    late = await page.wait_for_selector("table.tasks tr.overdue")
    assert "Пропущенный звонок" in await late.inner_text() and "просрочена" in await late.inner_text()
    await snap(page, "tasks")
    await page.click("tr.overdue button:text('Выполнить')")
    await page.wait_for_selector("tr.overdue", state="detached")
    await page.click("text=Выполненные")
    assert "Пропущенный звонок" in await page.inner_text("table.tasks")
    assert not await page.query_selector("table.tasks button")  # a done task has no button to press again


async def test_analytics_worth_opening(browser, workspace, services):
    from callbridge import flows

    async with services.db.read() as session:
        (row,) = await integrations.list_integrations(session)

    def ago(days: int, hour: int) -> datetime:
        return (datetime.now(UTC) - timedelta(days=days)).replace(hour=hour, minute=5, second=0, microsecond=0)

    # three calls on two days, one missed and never called back; the PBX's own analytics fields on each
    dialect = services.dialects["cloudpbx"]
    for key, status, day, source in (("a1", "Success", 3, "yandex"), ("a2", "Missed", 3, "google"),
                                     ("a3", "Success", 1, "yandex")):  # fmt: skip
        params = {"cmd": "history", "type": "in", "status": status, "phone": f"7910555000{key[-1]}", "user": "andy",
                  "duration": "75" if status == "Success" else "0", "callid": key,
                  "start": ago(day, 7).strftime("%Y%m%dT%H%M%SZ")}  # fmt: skip
        command = await dialect.replay(services, row, params, key, ago(day, 7))
        command.events[0].fields["utm_source"] = source  # as Planfix's data_utm_source arrives
        await flows.ingest(services, row.id, params, command)
    page = await sign_in(browser, workspace["base"], "admin")
    await page.goto(f"{workspace['base']}/analytics?period=7")
    figures = await page.inner_text(".figures")
    assert "3\nВсего" in figures and "33%\nДоля пропущенных" in figures and "1:15\nСредний разговор" in figures
    assert len(await page.query_selector_all("svg.chart >> nth=0 >> g")) == 7  # every day of the period, zeros too
    assert "Отвечены" in await page.inner_text(".legend") and "Пропущены" in await page.inner_text(".legend")
    assert await page.inner_text("table.breakdown") == "Значение\tЗвонки\tОтвечено\nyandex\t2\t100%\ngoogle\t1\t0%"
    await snap(page, "analytics")
    await page.click(".figures a")  # the missed call nobody called back, in the journal
    assert "owed=1" in page.url and len(await page.query_selector_all("tr.call")) == 1
    await page.goto(f"{workspace['base']}/analytics?period=7&sort=name")
    assert "▲" in await page.inner_text("table.sortable thead")


async def test_what_went_wrong_is_said_in_the_user_s_words(browser, workspace, services):
    await workspace["post"](cmd="history", type="in", status="Success", phone=KNOWN, user="andy", duration="30",
                            callid="e1", link=f"{workspace['pbx_url']}/records/gone.wav")  # fmt: skip
    page = await sign_in(browser, workspace["base"], "andy")
    for _ in range(100):
        await page.goto(f"{workspace['base']}/calls")
        await page.click("tr.call td a")
        if "ошибкой 404" in await page.inner_text("dl.facts"):
            break
        await asyncio.sleep(0.1)
    said = await page.query_selector("dl.facts .said")
    assert "АТС ответила ошибкой 404" in await said.inner_text()
    assert await said.get_attribute("title") == "the PBX answered 404"  # the technical detail, one hover away
    call = page.url
    await page.goto(f"{workspace['base']}/lang/en")
    await page.goto(call)
    assert "The PBX answered with error 404" in await page.inner_text("dl.facts")


async def test_an_employee_s_numbers_are_checked_beside_each_field(browser, workspace, services):
    admin = await sign_in(browser, workspace["base"], "admin")
    await admin.goto(workspace["base"] + "/settings")
    andy = "tr:has(td:text('Петров Андрей'))"
    await admin.fill(f"{andy} input[name=extension]", "103")  # Семенов Михаил's
    await admin.click(f"{andy} button")
    assert await admin.inner_text(f"{andy} small.error") == "Уже занято: так указано у сотрудника Семенов Михаил"
    await admin.fill(f"{andy} input[name=pbx_login]", "x" * 101)
    await admin.click(f"{andy} button")
    assert await admin.inner_text(f"{andy} small.error") == "Слишком длинно: не больше 100 знаков"
    async with services.db.read() as session:
        saved = {e.name: (e.extension, e.pbx_login) for e in await directory.list_employees(session)}
    assert saved["Петров Андрей"] == ("102", "andy")  # nothing of it was saved
    await admin.fill(f"{andy} input[name=extension]", "112")
    await admin.click(f"{andy} button")
    assert await admin.inner_text("p.note") == "Сохранено"


# Chromium (headless, or headed with Playwright's one window per page) never hides a page behind another: the tab
# switch is the one part stood in for, through the Page Visibility API the page reads. The notifications the page
# asks the browser for are recorded, and still shown.
BEHIND_ANOTHER_TAB = """
let behind = false;
Object.defineProperty(document, "hidden", { get: () => behind });
Object.defineProperty(document, "visibilityState", { get: () => (behind ? "hidden" : "visible") });
window.switchTab = (away) => { behind = away; document.dispatchEvent(new Event("visibilitychange")); };
window.shownNotifications = [];
window.Notification = class extends window.Notification {
  constructor(title, options) {
    super(title, options);
    window.shownNotifications.push({ title, body: options && options.body, tag: options && options.tag });
  }
};
"""


async def signed_in_tab(context, base: str, login: str):
    page = await context.new_page()
    await page.goto(f"{base}/calls")
    if "/login" in page.url:
        await page.fill("input[name=login]", login)
        await page.fill("input[name=password]", "demo")
        await page.click("form.login button")
        await page.wait_for_url(f"{base}/calls")
    return page


async def test_a_call_finds_you_behind_another_tab_and_its_card_stays_with_the_call(browser, workspace, services):
    """A call rang in a background tab and told nobody; a reload mid-call lost the card, its timer and comment."""
    base, post = workspace["base"], workspace["post"]
    context = await browser.new_context(viewport={"width": 1360, "height": 860})
    await context.grant_permissions(["notifications"], origin=base)
    await context.add_init_script(BEHIND_ANOTHER_TAB)
    andy = await signed_in_tab(context, base, "andy")
    assert await andy.is_hidden("#notice")  # notifications allowed: nothing to ask
    await andy.evaluate("window.switchTab(true)")  # the CRM in another tab, in front

    await post(cmd="event", type="INCOMING", callid="bg1", phone=KNOWN, user="andy")
    await andy.wait_for_selector(".card", state="attached", timeout=3000)
    assert (await andy.title()).startswith("☎ Менеджер ЗАО Рога и копыта")
    shown = await andy.evaluate("window.shownNotifications")
    assert [n["title"] for n in shown] == ["Звонок: Менеджер ЗАО Рога и копыта"]
    assert "+7 910 123-45-67" in shown[0]["body"]
    assert await andy.get_attribute('link[rel="icon"]', "href") == "/static/ringing.svg"
    assert "ringing" in await andy.get_attribute("header .sound", "class")  # the tone plays
    await post(cmd="event", type="ACCEPTED", callid="bg1", phone=KNOWN, user="mike")  # answered elsewhere
    await andy.wait_for_selector(".card", state="detached", timeout=3000)
    assert await andy.title() == "Звонки · callbridge"
    assert "ringing" not in await andy.get_attribute("header .sound", "class")
    await andy.evaluate("window.switchTab(false)")

    # a call Андрей takes: a reload, a second tab, the client opened from the card keep the card and the comment
    await post(cmd="event", type="INCOMING", callid="bg2", phone=KNOWN, user="andy")
    await post(cmd="event", type="ACCEPTED", callid="bg2", phone=KNOWN, user="andy")
    await andy.wait_for_selector(".card.talking", timeout=3000)
    await andy.fill(".card textarea", "Перезвонить в пятницу")
    await andy.reload()
    await andy.wait_for_selector(".card.talking", timeout=3000)
    assert await andy.input_value(".card textarea") == "Перезвонить в пятницу"
    await asyncio.sleep(1.2)
    assert await andy.inner_text(".card time.timer") != "0:00"  # counted from the answer, not from the reload
    second = await signed_in_tab(context, base, "andy")
    await second.wait_for_selector(".card.talking", timeout=3000)
    assert len(await second.query_selector_all(".card")) == 1
    await andy.fill(".card textarea", "Перезвонить в пятницу, после обеда")
    await andy.dispatch_event(".card textarea", "input")
    for _ in range(30):
        if await second.input_value(".card textarea") == "Перезвонить в пятницу, после обеда":
            break
        await asyncio.sleep(0.1)
    assert await second.input_value(".card textarea") == "Перезвонить в пятницу, после обеда"
    await andy.click(".card h3 a")  # the client's page, from the card
    await andy.wait_for_selector(".card.talking", timeout=3000)
    await snap(andy, "card-kept-on-the-client-page")

    # the session ends elsewhere: the page says so and offers to sign in again, back to the same page
    async with services.db.transaction() as session:
        (me,) = [e for e in await directory.list_employees(session) if e.pbx_login == "andy"]
        await directory.end_sessions(session, me.id)
    ended = await second.wait_for_selector("#notice a", timeout=5000)
    assert "Сеанс завершён" in await second.inner_text("#notice")
    assert await ended.get_attribute("href") == "/login?next=%2Fcalls"
    await context.close()


async def test_notifications_are_asked_for_with_a_reason(browser, workspace):
    page = await sign_in(browser, workspace["base"], "daria")
    notice = await page.wait_for_selector("#notice", timeout=3000)
    assert "Разрешите уведомления" in await notice.inner_text() and await page.is_visible("#notice button")
    await page.click("header .sound")  # the sound is switched off, and stays so
    await page.reload()
    assert "без звука" in await page.inner_text("header .sound")


async def test_a_journal_fits_twenty_calls_on_a_screen(browser, workspace, services):
    """About 11 calls fitted a 1360x900 screen, each row with a "0:00 / 0:00" player."""
    for n in range(25):
        await workspace["post"](cmd="history", type="in", status="Success" if n % 3 else "Missed", user="andy",
                                phone=f"7910555{n:04d}", duration="40", callid=f"fit{n}",
                                link=f"{workspace['pbx_url']}/records/call.wav")  # fmt: skip
    page = await sign_in(browser, workspace["base"], "andy", height=900)
    for _ in range(50):
        if len(await page.query_selector_all("tr.call button.play")) >= 20:
            break
        await asyncio.sleep(0.2)
        await page.reload()
    seen = await page.evaluate(
        "[...document.querySelectorAll('tr.call')].filter(r => r.getBoundingClientRect().bottom <= innerHeight).length"
    )
    await snap(page, "journal-screen")
    assert seen >= 20, seen


async def test_the_page_says_when_it_is_cut_off_and_who_is_on_the_line_follows_calls(browser, workspace):
    """An open tab went dead without saying so; the presence page follows the calls as they come, in English too."""
    context = await browser.new_context(viewport={"width": 390, "height": 844})
    daria = await signed_in_tab(context, workspace["base"], "daria")
    await daria.goto(f"{workspace['base']}/lang/en")
    await daria.goto(f"{workspace['base']}/presence")
    await asyncio.sleep(0.5)  # its live stream is open
    await workspace["post"](cmd="event", type="INCOMING", callid="pr1", phone=KNOWN, user="andy")
    row = "table.presence tr:has-text('Петров Андрей')"
    for _ in range(50):
        if "phone ringing" in await daria.inner_text(row):
            break
        await asyncio.sleep(0.1)
    assert "phone ringing" in await daria.inner_text(row)
    await workspace["post"](cmd="event", type="ACCEPTED", callid="pr1", phone=KNOWN, user="andy")
    for _ in range(50):
        if "talking" in await daria.inner_text(row):
            break
        await asyncio.sleep(0.1)
    assert "talking" in await daria.inner_text(row)
    await snap(daria, "presence-phone")

    # the network goes while the stream is cut (here: eight newer tabs of hers elsewhere take its place): the page
    # says so, and connects again by itself once it can
    await context.set_offline(True)
    elsewhere = [await browser.new_context() for _ in range(2)]  # a browser holds six connections to one host
    for other in elsewhere:
        for _ in range(4):
            await signed_in_tab(other, workspace["base"], "daria")
    notice = await daria.wait_for_selector("#notice:has-text('No connection')", timeout=10_000)
    assert await notice.is_visible()
    for other in elsewhere:
        await other.close()
    await context.set_offline(False)
    await daria.wait_for_selector("#notice", state="hidden", timeout=15_000)
    await context.close()
