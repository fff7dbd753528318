"""The database and the recordings are their owner's alone: read as another user (`nobody`), every token, PBX
password, webhook secret, password hash and recording was there to take."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import httpx

from callbridge.config import sqlite_url

from ..fake_pbx import mp3
from ..helpers import serve_process

CALLBRIDGE = str(Path(sys.executable).with_name("callbridge"))


def others_may_read(path: Path) -> bool:
    return bool(path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO))


def test_what_serve_makes_is_owner_only(tmp_path):
    database = tmp_path / "callbridge.db"
    with serve_process(sqlite_url(database), tmp_path, recordings_dir=str(tmp_path / "recordings")) as (url, _):
        demo = subprocess.run([CALLBRIDGE, "demo", "--database-url", sqlite_url(database)], cwd=tmp_path, timeout=120)
        assert demo.returncode == 0 and httpx.get(f"{url}/healthz").status_code == 200
        files = [database, Path(f"{database}-wal"), Path(f"{database}-shm"), tmp_path / ".callbridge-secret"]
        for path in files:
            assert path.exists() and not others_may_read(path), (path, oct(path.stat().st_mode))


def test_serve_refuses_files_others_can_read(tmp_path):
    database = tmp_path / "callbridge.db"
    subprocess.run([CALLBRIDGE, "migrate", "--database-url", sqlite_url(database)], check=True, cwd=tmp_path)
    assert not others_may_read(database)
    recordings = tmp_path / "recordings"
    recordings.mkdir()
    (recordings / "1.mp3").write_bytes(mp3())
    for shared, mode, fix in ((database, 0o644, "chmod 600 "), (recordings, 0o755, "chmod 700 ")):
        shared.chmod(mode)
        refused = subprocess.run([CALLBRIDGE, "serve", "--port", "1", "--database-url", sqlite_url(database)],
                                 capture_output=True, text=True, cwd=tmp_path, timeout=60)  # fmt: skip
        assert refused.returncode == 1 and fix in refused.stderr and shared.name + "`" in refused.stderr, refused.stderr
        assert "Traceback" not in refused.stderr
        shared.chmod(0o700 if shared.is_dir() else 0o600)


async def test_a_database_made_by_any_process_is_owner_only(tmp_path):
    """Not only the CLI's: the store makes the SQLite file itself, before SQLite would make it as the umask says."""
    from callbridge.store.db import Database

    database = tmp_path / "elsewhere.db"
    db = Database(sqlite_url(database))
    await db.migrate()
    async with db.transaction() as session:
        from callbridge.store import integrations

        await integrations.add_integration(session, kind="planfix", name="x", settings={})
    assert not others_may_read(database) and not others_may_read(Path(f"{database}-wal"))
    await db.close()
