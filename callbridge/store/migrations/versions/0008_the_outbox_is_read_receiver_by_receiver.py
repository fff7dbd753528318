"""the outbox is read receiver by receiver, and a webhook delivery is cheaper to queue: one index of webhook,
status and due time replaces the index of status and due time and the index of the webhook (a prefix of the new
one), and the index a double click is found by holds only requests with a subject (no webhook delivery has one)

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

WITH_A_SUBJECT = {"sqlite_where": sa.text("subject IS NOT NULL"), "postgresql_where": sa.text("subject IS NOT NULL")}


def upgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_outbox_due"))
        batch_op.drop_index(batch_op.f("ix_outbox_webhook_id"))
        batch_op.drop_index("ix_outbox_subject")
        batch_op.create_index("ix_outbox_receiver_due", ["webhook_id", "status", "next_attempt_at"], unique=False)
        batch_op.create_index("ix_outbox_subject", ["action", "subject", "created_at"], unique=False, **WITH_A_SUBJECT)


def downgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_subject")
        batch_op.drop_index("ix_outbox_receiver_due")
        batch_op.create_index("ix_outbox_subject", ["action", "subject", "created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_outbox_webhook_id"), ["webhook_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_outbox_due"), ["status", "next_attempt_at"], unique=False)
