"""membership.awaiting_consent: invitations of existing users wait for their consent

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 15:20:00

"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = '0002'
down_revision: Union[str, Sequence[str], None] = '0001'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    # Every membership that existed before this revision was in use: it counts as accepted.
    with op.batch_alter_table('membership', schema=None) as batch_op:
        batch_op.add_column(sa.Column('awaiting_consent', sa.Boolean(), nullable=False,
                                      server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table('membership', schema=None) as batch_op:
        batch_op.drop_column('awaiting_consent')
