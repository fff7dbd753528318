"""schemathesis against /openapi.json of a real server: whatever the generated request, never a 5xx."""

from __future__ import annotations

import asyncio

import schemathesis
from hypothesis import HealthCheck, given, settings

from callbridge import demo
from callbridge.app import build_services
from callbridge.config import Settings, sqlite_url
from callbridge.store import integrations

from ..fake_pbx import FakePbx
from ..helpers import running_server, serve_app


async def _prepare(url: str, pbx_url: str) -> str:
    services = build_services(Settings(database_url=url))
    await services.db.migrate()
    await demo.load(services, history_days=0)
    async with services.db.transaction() as session:
        key = await integrations.add_api_key(session, "fuzz")
        (pbx,) = await integrations.list_integrations(session)
        pbx.settings = {"pbx_url": pbx_url, "pbx_token": "demo"}  # a PBX that answers: any 5xx would be ours
    await services.close()
    return key


def test_no_generated_request_gets_a_server_error(tmp_path):
    url = sqlite_url(tmp_path / "fuzz.db")
    with (
        serve_app(FakePbx(token="demo").app()) as pbx,
        running_server(Settings(database_url=url, recordings_dir=str(tmp_path))) as base,
    ):
        key = asyncio.run(_prepare(url, f"{pbx}/api"))
        schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
        checked = []
        for result in schema.get_all_operations():
            operation = result.ok()
            if operation.path == "/api/live":
                continue  # a stream that never ends by design

            @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
            @given(case=operation.as_strategy())
            def call(case):
                for headers in ({"Authorization": f"Bearer {key}"}, {}):
                    response = case.call(base_url=base, headers=headers)
                    assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.text}"

            call()
            checked.append(f"{operation.method.upper()} {operation.path}")
    assert len(checked) >= 12, checked
