"""The workspace's pages against what a link or a stranger's query string carries: format strings, calendar edges,
thousand-year ranges, deep JSON, foreign Referers, a proxy setting that would believe anyone."""

from __future__ import annotations

import asyncio
import json
from contextlib import aclosing

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from callbridge.config import Settings
from callbridge.web.i18n import translate

from .conftest import csrf_of, sign_in


async def test_a_settings_link_cannot_make_a_format_string(install):
    """`/settings?message={value:>999999999}` made a 1 GB page; `{nope}` a 503. The URL's message is never shown."""
    admin, _ = await sign_in(install.url, "admin")
    async with aclosing(admin):
        for message in ("{value:>999999999}", "{nope}", "Your password expired: sign in at evil.example"):
            page = await admin.get("/settings", params={"message": message, "field": "x", "value": "1"})
            assert page.status_code == 200 and len(page.content) < 1_000_000
            assert "evil.example" not in page.text and "{nope}" not in page.text


async def test_a_settings_message_the_server_sets_is_shown_once(install):
    admin, _ = await sign_in(install.url, "admin")
    async with aclosing(admin):
        csrf = csrf_of((await admin.get("/settings")).text)
        saved = await admin.post("/settings/webhooks", data={"csrf": csrf, "url": "ftp://nowhere"})
        assert saved.status_code == 303 and saved.headers["location"] == "/settings"
        first, second = (await admin.get("/settings")).text, (await admin.get("/settings")).text
    said = translate("webhook_url_invalid", "ru")
    assert said in first and said not in second


@pytest.mark.parametrize("query", [
    {"since": "0001-01-01", "until": "9999-12-31", "period": "custom"},
    {"since": "9999-12-31", "period": "custom"},
    {"since": "1000-01-01", "until": "2026-12-07", "period": "custom"},
])  # fmt: skip
async def test_analytics_refuse_a_range_too_long_in_words(install, query):
    """A 1,000-year range held /healthz for 17 s and answered 103 MB."""
    user, _ = await sign_in(install.url, "maria")
    async with aclosing(user):
        page = await user.get("/analytics", params=query)
    assert page.status_code == 400 and len(page.content) < 100_000
    assert "366" in page.text or "1970" in page.text


async def test_a_long_enough_range_is_answered(install):
    user, _ = await sign_in(install.url, "maria")
    async with aclosing(user):
        page = await user.get("/analytics", params={"period": "custom", "since": "2026-01-01", "until": "2026-12-31"})
    assert page.status_code == 200


PAGES = ["/calls", "/calls.csv", "/clients", "/tasks", "/analytics", "/deals"]
QUERY_NAMES = ["since", "until", "period", "employee", "direction", "result", "phone", "owed", "page", "before",
               "after", "sort", "field", "q", "status", "cursor"]  # fmt: skip
ODD = st.sampled_from(["0001-01-01", "9999-12-31", "0000-00-00", "2026-02-30", "-1", "1e999", "999999999999999999999",
                       "%00", "\x00", "ромашка", "{x}", "custom", "2026-12-07T10:00"])  # fmt: skip
ODD = ODD | st.text(max_size=30)


async def test_no_query_string_on_any_page_gets_a_5xx(install):
    """Dates at the calendar's edge gave 500 on the journal and analytics: every page, every parameter."""
    user, _ = await sign_in(install.url, "maria")
    cookies = dict(user.cookies)
    await user.aclose()
    http = httpx.Client(base_url=install.url, cookies=cookies, timeout=20)

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(page=st.sampled_from(PAGES), query=st.dictionaries(st.sampled_from(QUERY_NAMES), ODD, max_size=5))
    def visit(page, query):
        response = http.get(page, params=query)
        assert response.status_code < 500, (page, query, response.status_code)

    await asyncio.to_thread(visit)
    http.close()


async def test_deep_json_on_dial_is_a_400(install):
    user, _ = await sign_in(install.url, "maria")
    async with aclosing(user):
        csrf = csrf_of((await user.get("/calls")).text)
        deep = "[" * 100_000 + "]" * 100_000
        for body in (deep, '{"phone": ' + deep + "}", json.dumps([1, 2])):
            answer = await user.post("/dial", content=body, headers={"x-csrf-token": csrf})
            assert answer.status_code == 400, body[:20]


@pytest.mark.parametrize("referer", ["https://evil.example/phish", "//evil.example/x", "http://evil.example"])
async def test_a_redirect_back_never_leaves_the_site(install, referer):
    user, _ = await sign_in(install.url, "maria")
    async with aclosing(user):
        answer = await user.get("/lang/en", headers={"referer": referer})
        assert answer.status_code == 303 and "evil" not in answer.headers["location"]
        home = await user.get("/lang/ru", headers={"referer": f"{install.url}/clients?q=1"})
        assert home.headers["location"] == "/clients?q=1"


def test_a_wildcard_of_trusted_proxies_is_refused():
    """`*` believed an X-Forwarded-For any client writes: a new address for every failed sign-in."""
    with pytest.raises(ValueError, match="list the proxies"):
        Settings(trusted_proxies="*")
    assert Settings(trusted_proxies="127.0.0.1, 10.0.0.5").trusted_proxies
