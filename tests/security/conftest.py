"""What the attacks need: a server with nothing allowed outbound, employees who can sign in, a PBX integration."""

from __future__ import annotations

import re
from dataclasses import dataclass

import httpx
import pytest

from callbridge.store import directory, integrations
from callbridge.web.auth import hash_password

from ..conftest import settings_for
from ..helpers import running_server

PASSWORD = "correct horse battery staple"


@dataclass
class Install:
    url: str
    admin_id: int
    manager_id: int
    integration_id: int
    token: str
    api_key: str


async def make_install(services, url: str) -> Install:
    async with services.db.transaction() as session:
        admin = await directory.add_employee(session, name="Админ", pbx_login="admin", role="admin")
        manager = await directory.add_employee(session, name="Мария", pbx_login="maria", role="manager")
        for employee in (admin, manager):
            employee.password_hash = hash_password(PASSWORD)
        await directory.add_client(session, name="Иванов", phones=["+79101234567"], responsible_id=manager.id)
        row = await integrations.add_integration(
            session, kind="planfix", name="АТС", settings={"pbx_url": "https://pbx.invalid/api", "pbx_token": "t"}
        )
        key = await integrations.add_api_key(session, "tests")
    return Install(url, admin.id, manager.id, row.id, row.token, key)


@pytest.fixture
async def install(services, database_url, tmp_path):
    """A server as installed: nothing allowed outbound, its own session key in its own folder."""
    settings = settings_for(database_url, tmp_path, outbound_allow="", secret_key_file=str(tmp_path / "key"))
    with running_server(settings) as url:
        yield await make_install(services, url)


async def sign_in(url: str, login: str, password: str = PASSWORD, **form) -> tuple[httpx.AsyncClient, httpx.Response]:
    """A browser's sign-in: the login page's CSRF token, then the form."""
    client = httpx.AsyncClient(base_url=url, timeout=10)
    page = await client.get("/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    response = await client.post("/login", data={"csrf": csrf, "login": login, "password": password} | form)
    return client, response


def csrf_of(page: str) -> str:
    return re.search(r'name="csrf" content="([^"]+)"', page).group(1)
