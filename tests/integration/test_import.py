"""`callbridge import clients` of a file several batches long, on SQLite and PostgreSQL: every good row kept,
every clash reported by its line, whichever batch holds it."""

from __future__ import annotations

import asyncio

from typer.testing import CliRunner

from callbridge import importer
from callbridge.cli import app
from callbridge.store import directory

ROWS = importer.BATCH * 2 + 500  # three batches


def phone(i: int) -> str:
    return f"8 (916) {i // 10000:03d}-{i // 100 % 100:02d}-{i % 100:02d}"


async def test_a_file_of_several_batches_keeps_good_rows_and_reports_each_clash(services, tmp_path):
    async with services.db.transaction() as session:
        andy = await directory.add_employee(session, name="Андрей", pbx_login="andy", extension="101")
        await directory.add_client(session, name="Был раньше", phones=["+79160000007"])
    lines = ["name,phones,responsible"]
    for i in range(ROWS):
        lines.append(f"Клиент {i},{phone(i)}; +7 495 {i:07d},{'andy' if i % 2 else '101'}")
    late_twin = importer.BATCH + 10  # a later batch repeats a number of the first
    lines[late_twin + 1] = f"Двойник,{phone(3)},"
    lines[ROWS] = ",+7 999 000-00-00,"  # the last row: no name
    lines.append("Плохой номер,звоните,")
    (tmp_path / "clients.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")

    result = await asyncio.to_thread(CliRunner().invoke, app, ["import", "clients", str(tmp_path / "clients.csv"),
                                     "--database-url", services.settings.database_url])  # fmt: skip
    assert result.exit_code == 0, result.output
    # the row with +7 916 000-00-07 clashes with the client there before; the twin with row 3; no name; no number
    assert f"imported {ROWS - 3} clients, skipped 4" in result.stdout
    for line in (7 + 2, late_twin + 2, ROWS + 1, ROWS + 2):
        assert f"line {line}:" in result.stderr
    async with services.db.read() as session:
        first = await directory.lookup_caller(session, "+79160000003")
        last = await directory.lookup_caller(session, f"+7495{ROWS - 2:07d}")
        _, total = await directory.list_clients(session)
    assert first.client_name == "Клиент 3" and first.responsible_id == andy.id
    assert last.client_name == f"Клиент {ROWS - 2}" and last.responsible_id == andy.id
    assert total == ROWS - 3 + 1
