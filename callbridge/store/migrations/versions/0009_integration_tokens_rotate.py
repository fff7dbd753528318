"""an integration's token can be rotated: the previous one is still accepted until a moment the admin chose

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

from callbridge.store.tables import UTCDateTime

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("integrations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("previous_token", sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column("previous_token_until", UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("integrations", schema=None) as batch_op:
        batch_op.drop_column("previous_token_until")
        batch_op.drop_column("previous_token")
