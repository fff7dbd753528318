"""A careful web app's answers: no stored XSS through the rules, CSP and friends, Secure cookies over HTTPS."""

from __future__ import annotations

from html.parser import HTMLParser

import httpx

from .conftest import sign_in

PAYLOAD = '"><img src=x onerror=alert(1)> " onmouseover="fetch(\'/settings/employees/2\')'


class Attributes(HTMLParser):
    """Every attribute name of every element, as a browser would parse them."""

    def __init__(self) -> None:
        super().__init__()
        self.names: set[str] = set()
        self.tags: set[str] = set()

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        self.names.update(name for name, _ in attrs)


async def test_a_rule_written_through_the_api_cannot_inject_markup_into_settings(install):
    async with httpx.AsyncClient(base_url=install.url, headers={"Authorization": f"Bearer {install.api_key}"}) as api:
        stored = await api.put(f"/api/integrations/{install.integration_id}/automation",
                               json={"owners_by_virtual_number": {PAYLOAD: install.manager_id}})  # fmt: skip
        assert stored.status_code == 200, stored.text
    admin, _ = await sign_in(install.url, "admin")
    page = await admin.get("/settings")
    assert page.status_code == 200
    parsed = Attributes()
    parsed.feed(page.text)
    assert not {name for name in parsed.names if name.startswith("on")}, parsed.names
    assert "img" not in parsed.tags
    assert "onmouseover" in page.text  # the text is there, as text: escaped, not dropped
    await admin.aclose()


async def test_pages_carry_a_strict_csp_and_the_usual_headers(install):
    async with httpx.AsyncClient(base_url=install.url) as http:
        for path in ("/login", f"/hooks/planfix/{install.integration_id}", "/api/calls", "/static/app.js"):
            response = await http.get(path)
            csp = response.headers["content-security-policy"]
            assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
            assert response.headers["x-content-type-options"] == "nosniff"
            assert response.headers["referrer-policy"] == "same-origin"
            assert "strict-transport-security" not in response.headers  # plain HTTP: HSTS would mean nothing
        login = await http.get("/login")
        assert "<script>" not in login.text and " style=" not in login.text


async def test_behind_a_trusted_proxy_cookies_are_secure_and_hsts_is_sent(services, database_url, tmp_path):
    from ..conftest import settings_for
    from ..helpers import running_server

    settings = settings_for(database_url, tmp_path, trusted_proxies="127.0.0.1")
    with running_server(settings) as url:
        async with httpx.AsyncClient(base_url=url) as http:
            proxied = await http.get("/login", headers={"x-forwarded-proto": "https"})
            plain = await http.get("/login")
    assert "strict-transport-security" in proxied.headers
    assert "; secure" in proxied.headers["set-cookie"].lower()
    assert "; secure" not in plain.headers["set-cookie"].lower()


async def test_the_api_docs_need_no_network_but_ours(install):
    async with httpx.AsyncClient(base_url=install.url) as http:
        for page, asset in (("/docs", "swagger-ui-bundle.js"), ("/redoc", "redoc.standalone.js")):
            html = await http.get(page)
            assert html.status_code == 200 and f"/static/api-docs/{asset}" in html.text
            assert "cdn." not in html.text and "fonts.googleapis" not in html.text  # nothing from elsewhere
            policy = html.headers["content-security-policy"]
            assert "script-src 'self' 'unsafe-inline'" in policy and "http" not in policy
            script = await http.get(f"/static/api-docs/{asset}")
            assert script.status_code == 200 and len(script.content) > 100_000
        assert "'unsafe-inline'" not in (await http.get("/login")).headers["content-security-policy"]
