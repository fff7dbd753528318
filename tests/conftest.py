"""Fixtures: every database test runs on SQLite and, where a server answers, on PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from callbridge.app import build_services
from callbridge.config import Settings, sqlite_url
from callbridge.store.tables import Base

from .fake_pbx import FakePbx
from .helpers import running_server, serve_app

PG_ADMIN_URL = os.environ.get("CALLBRIDGE_TEST_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres")


async def _pg_database() -> str:
    """A fresh PostgreSQL database for this run; skips the PostgreSQL half when no server answers."""
    name = f"callbridge_test_{uuid.uuid4().hex[:10]}"
    engine = create_async_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as connection:
            await asyncio.wait_for(connection.execute(text(f'CREATE DATABASE "{name}"')), 10)
    except Exception as exc:  # no server, refused, no rights: the SQLite half still runs
        pytest.skip(f"PostgreSQL server not reachable at {PG_ADMIN_URL} ({exc.__class__.__name__}): skipping its half")
    finally:
        await engine.dispose()
    return PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name


async def _drop_pg(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    engine = create_async_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    async with engine.connect() as connection:
        await connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    await engine.dispose()


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
async def database_url(request, tmp_path_factory):
    """A migrated database URL, one per backend for the whole run."""
    if request.param == "sqlite":
        url = sqlite_url(tmp_path_factory.mktemp("db") / "callbridge.db")
    else:
        url = await _pg_database()
    services = build_services(Settings(database_url=url))
    await services.db.migrate()
    await services.close()
    yield url
    if request.param == "postgresql":
        await _drop_pg(url)


@pytest.fixture
def postgres(database_url):
    """The PostgreSQL database, for what only PostgreSQL does (several workers share it; SQLite has one process)."""
    if not database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL only: a database server several workers share, and which can drop their connections")
    return database_url


def settings_for(database_url: str, tmp_path, **overrides) -> Settings:
    """Settings for a test: quick background jobs, recordings in the test's folder, only temporary ones kept."""
    values = dict(
        database_url=database_url,
        integration_cache_seconds=0.5,
        recording_poll_seconds=0.1,
        recording_retry_seconds=0.2,
        recordings_dir=str(tmp_path / "recordings"),
        keep_recordings=False,  # the spec samples' links (https://link/file.mp3) lead nowhere
        # the fake PBXs and their recordings listen on loopback, allowed as an admin allows a PBX on the LAN
        # (tests/security holds the policy's own tests, with nothing allowed)
        outbound_allow="127.0.0.1",
        secret_key_file=str(tmp_path / ".callbridge-secret"),
        # a lookup's deadline with room for a loaded CI machine (a cold PostgreSQL connection once missed 300 ms);
        # the deadline tests hold the store or the source far longer than this
        lookup_deadline_ms=1500,
    )
    return Settings(**(values | overrides))


@pytest.fixture
def fake_pbx():
    """A fake PBX on loopback that serves recordings and answers API calls (modules with other needs make their own)."""
    pbx = FakePbx()
    with serve_app(pbx.app()) as url:
        pbx.url = url
        yield pbx


@pytest.fixture(scope="session")
def s3_server():
    """A real S3-compatible server on loopback (moto's), for the recordings' shared storage."""
    from moto.server import ThreadedMotoServer

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@dataclass
class Bucket:
    url: str  # what CALLBRIDGE_RECORDINGS_URL says
    env: dict[str, str]  # the usual AWS settings, for a server process
    client: Any  # boto3's, to look inside

    def keys(self) -> list[str]:
        bucket = self.url.split("/")[2]
        return [o["Key"] for o in self.client.list_objects_v2(Bucket=bucket).get("Contents", [])]


@pytest.fixture
def s3(s3_server, monkeypatch):
    """A fresh bucket on the S3 server, its credentials in this process's environment."""
    import boto3

    env = {"AWS_ENDPOINT_URL_S3": s3_server, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
           "AWS_REGION": "us-east-1"}  # fmt: skip
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    client = boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1", aws_access_key_id="test",
                          aws_secret_access_key="test")  # fmt: skip
    bucket = f"recordings-{uuid.uuid4().hex[:8]}"
    client.create_bucket(Bucket=bucket)
    return Bucket(f"s3://{bucket}/calls", env, client)


@pytest.fixture
async def services(database_url, tmp_path):
    """Fresh services (and caches) on an emptied database."""
    services = build_services(settings_for(database_url, tmp_path))
    async with services.db.transaction() as session:
        for table in reversed(Base.metadata.sorted_tables):
            await session.execute(table.delete())
    yield services
    await services.close()


@pytest.fixture
async def server(services):
    """A real callbridge HTTP server on loopback, on the same database as `services`."""
    with running_server(services.settings) as base_url:
        yield base_url
