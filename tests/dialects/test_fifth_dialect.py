"""A fifth dialect is one folder plus its tests: registered from the tests alone, it is driven through the CLI,
the settings page and simulate without an edit anywhere else."""

from __future__ import annotations

import asyncio
import json
import re

import httpx
import pytest
from pydantic import BaseModel, Field, HttpUrl, SecretStr

from callbridge.cli import integration as cli_module
from callbridge.config import Settings, sqlite_url
from callbridge.dialects import DIALECTS, hooks
from callbridge.dialects.planfix import wire as planfix_wire
from callbridge.domain.phones import wire_digits
from callbridge.store import directory, integrations
from callbridge.store.tables import CallRow
from callbridge.web.auth import hash_password

from ..helpers import running_server
from ..test_cli import cli, query


class TinySettings(BaseModel):
    """A small PBX with words of its own for its settings."""

    switchboard_url: HttpUrl = Field(description="the switchboard's address")
    switchboard_key: SecretStr = Field(description="the switchboard's key")


def render(step, *, call: str, phone: str, outgoing: bool, token: str) -> list[dict]:
    """Tiny PBXs speak Planfix's words, with a token field of their own."""
    event = {"ring": {"event": "INCOMING"}, "answer": {"event": "ACCEPTED"},
             "leg_over": {"event": "COMPLETED", "status": "Cancelled"},
             "end": {"event": "COMPLETED", "status": "Success" if step.result == "answered" else "Missed",
                     "duration": "7"}}[step.what]  # fmt: skip
    base = {"cmd": "event", "type": "in", "callid": call, "phone": wire_digits(phone), "tiny_token": token}
    return [{"data": base | event | {"ext": person.extension or person.key}} for person in step.who]


HOOK = hooks.TokenHook(kind="tinypbx", token_field="tiny_token", parse=planfix_wire.parse,
                       lookup_reply=planfix_wire.contact_reply)  # fmt: skip
TINY = hooks.dialect(HOOK, title="Tiny PBX", settings=TinySettings, fake=render)


@pytest.fixture
def tiny(monkeypatch):
    monkeypatch.setitem(DIALECTS, "tinypbx", TINY)
    cli_module.settings_options(cli_module.integration_add)
    yield TINY
    monkeypatch.delitem(DIALECTS, "tinypbx")
    cli_module.settings_options(cli_module.integration_add)


def test_the_cli_the_settings_page_and_simulate_know_a_dialect_registered_from_outside(tiny, tmp_path, monkeypatch):
    db = sqlite_url(tmp_path / "tiny.db")
    assert cli(db, "demo").exit_code == 0
    assert "--switchboard-url" in cli(db, "integration", "add", "--help").stdout
    added = cli(db, "integration", "add", "tinypbx", "--name", "Tiny", "--switchboard-url", "https://tiny.invalid/",
                "--switchboard-key", "k", "--json")  # fmt: skip
    assert added.exit_code == 0, added.output
    view = json.loads(added.stdout)
    assert view["inbound_url"].endswith(f"/hooks/tinypbx/{view['id']}")
    refused = cli(db, "integration", "add", "tinypbx", "--name", "Tiny", "--pbx-url", "https://x.invalid/")
    assert refused.exit_code == 1 and "tinypbx does not take --pbx-url" in refused.stderr

    async def admin_password():
        from callbridge.app import build_services

        services = build_services(Settings(database_url=db))
        async with services.db.transaction() as session:
            admin = await directory.employee_for_login(session, "admin")
            await directory.update_employee(session, admin.id, password_hash=hash_password("pw"))
        await services.close()

    asyncio.run(admin_password())
    settings = Settings(database_url=db, recordings_dir=str(tmp_path), secret_key_file=str(tmp_path / "key"))
    with running_server(settings) as base:
        with httpx.Client(base_url=base) as browser:
            csrf = re.search(r'name="csrf" value="([^"]+)"', browser.get("/login").text).group(1)
            browser.post("/login", data={"csrf": csrf, "login": "admin", "password": "pw"})
            page = browser.get("/settings").text
            assert "Tiny PBX" in page and "the switchboard&#39;s address" in page and 'name="switchboard_key"' in page
            csrf = re.search(r'name="csrf" content="([^"]+)"', page).group(1)
            browser.post("/settings/integrations", data={"csrf": csrf, "kind": "tinypbx", "name": "Tiny 2",
                         "switchboard_url": "https://tiny2.invalid/", "switchboard_key": "k2"})  # fmt: skip
        monkeypatch.setenv("CALLBRIDGE_PUBLIC_URL", base)
        played = cli(db, "simulate", "missed", "--integration", str(view["id"]), "--pause", "0", "--ring", "0")
        assert played.exit_code == 0, played.output
    kinds = query(db, lambda s: integrations.list_integrations(s, kind="tinypbx"))
    assert sorted(i.name for i in kinds) == ["Tiny", "Tiny 2"]
    assert kinds[1].settings["switchboard_key"] == "k2"
    calls = query(db, lambda s: _results(s))
    assert [c for c in calls if c[0] == "tinypbx"] == [("tinypbx", "missed")]  # beside the demo's own calls


async def _results(session):
    from sqlalchemy import select

    from callbridge.store.tables import Integration

    rows = await session.execute(select(Integration.kind, CallRow.result).join(Integration))
    return [tuple(r) for r in rows]
