"""webhooks: receivers, their deliveries in the outbox, a per-call sequence

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

from callbridge.store.tables import UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "webhooks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("events", sa.JSON(), nullable=False),
        sa.Column("integration_id", sa.Integer(), nullable=True),
        sa.Column("secret", sa.String(length=200), nullable=False),
        sa.Column("previous_secret", sa.String(length=200), nullable=True),
        sa.Column("previous_until", UTCDateTime(timezone=True), nullable=True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("failing_since", UTCDateTime(timezone=True), nullable=True),
        sa.Column("disabled_reason", sa.Text(), nullable=True),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["integration_id"], ["integrations.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.alter_column("integration_id", existing_type=sa.Integer(), nullable=True)
        batch_op.add_column(sa.Column("webhook_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("response_code", sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f("ix_outbox_webhook_id"), ["webhook_id"], unique=False)
        batch_op.create_foreign_key("fk_outbox_webhook_id_webhooks", "webhooks", ["webhook_id"], ["id"],
                                    ondelete="CASCADE")  # fmt: skip
    with op.batch_alter_table("outbox_attempts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("response_code", sa.Integer(), nullable=True))
    with op.batch_alter_table("calls", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sequence", sa.Integer(), server_default="0", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("calls", schema=None) as batch_op:
        batch_op.drop_column("sequence")
    with op.batch_alter_table("outbox_attempts", schema=None) as batch_op:
        batch_op.drop_column("response_code")
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_constraint("fk_outbox_webhook_id_webhooks", type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_outbox_webhook_id"))
        batch_op.drop_column("response_code")
        batch_op.drop_column("webhook_id")
        batch_op.alter_column("integration_id", existing_type=sa.Integer(), nullable=False)
    op.drop_table("webhooks")
