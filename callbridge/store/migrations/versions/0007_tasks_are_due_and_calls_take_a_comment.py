"""tasks are due (a missed call's task by a time the integration sets), and a call takes the comment its employee
writes on the card

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

from callbridge.store.tables import UTCDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("due_at", UTCDateTime(timezone=True), nullable=True))
    with op.batch_alter_table("calls", schema=None) as batch_op:
        batch_op.add_column(sa.Column("comment", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("calls", schema=None) as batch_op:
        batch_op.drop_column("comment")
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_column("due_at")
