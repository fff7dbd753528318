"""a lookup source: the company's own system asked about unknown numbers, and the ids clients have there

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

from callbridge.store.tables import UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("clients", schema=None) as batch_op:
        batch_op.add_column(sa.Column("external_id", sa.String(length=200), nullable=True))
    op.create_table(
        "lookup_source",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("secret", sa.String(length=200), nullable=False),
        sa.Column("cache_seconds", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    op.drop_table("lookup_source")
    with op.batch_alter_table("clients", schema=None) as batch_op:
        batch_op.drop_column("external_id")
