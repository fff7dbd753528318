"""Alembic environment: runs on the connection callbridge hands it (see store.db.migrate)."""

from alembic import context

from callbridge.store.tables import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise SystemExit("run migrations through callbridge (serve or migrate), which supplies the connection")
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
