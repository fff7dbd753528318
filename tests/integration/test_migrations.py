"""The migrations build the schema the tables describe, on both databases, and the newest one goes back and
forth: a change to tables.py without its revision (or the reverse) fails here, not on an upgraded install."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import create_async_engine

from callbridge.config import sqlite_url
from callbridge.store.db import Database, alembic_config
from callbridge.store.tables import Base


def _differences(connection) -> list:
    return compare_metadata(MigrationContext.configure(connection), Base.metadata)


async def test_the_migrated_schema_is_the_one_the_tables_describe(database_url):
    engine = create_async_engine(database_url)
    async with engine.connect() as connection:
        assert await connection.run_sync(_differences) == []
    await engine.dispose()


async def test_the_newest_revision_goes_down_and_up_again(tmp_path):
    db = Database(sqlite_url(tmp_path / "scratch.db"))
    await db.migrate()

    def to(revision: str):
        def move(connection) -> list[str]:
            config = alembic_config()
            config.attributes["connection"] = connection
            (command.downgrade if revision != "head" else command.upgrade)(config, revision)
            return [index["name"] for index in inspect(connection).get_indexes("outbox")]

        return move

    async with db.engine.begin() as connection:
        assert "ix_outbox_due" in await connection.run_sync(to("0007"))
    async with db.engine.begin() as connection:
        assert "ix_outbox_receiver_due" in await connection.run_sync(to("head"))
        assert await connection.run_sync(_differences) == []
        # each receiver's due deliveries are an index range, and a double click still finds its request by index
        for query, index in [
            ("SELECT id FROM outbox WHERE webhook_id = 3 AND status = 'pending' AND next_attempt_at <= '2027' "
             "ORDER BY next_attempt_at LIMIT 20", "ix_outbox_receiver_due"),
            ("SELECT id FROM outbox WHERE webhook_id IS NULL AND status = 'pending' AND next_attempt_at <= '2027' "
             "ORDER BY next_attempt_at LIMIT 20", "ix_outbox_receiver_due"),
            ("SELECT id FROM outbox WHERE action = 'make_call' AND subject = '+79101234567' "
             "AND created_at >= '2026'", "ix_outbox_subject"),
        ]:  # fmt: skip
            plan = " ".join(row[3] for row in await connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {query}"))
            assert f"INDEX {index} (" in plan, plan
    await db.close()
