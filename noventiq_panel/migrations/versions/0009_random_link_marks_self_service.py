"""a random mark per mail secret; organisations created by visitors (their tax id held once verified);
the invitation a set-password link answers

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05 05:40:00
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0009'
down_revision: Union[str, Sequence[str], None] = '0008'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table('mailsecret', schema=None) as batch_op:
        batch_op.add_column(sa.Column('mark', sa.String(length=64), nullable=False,
                                      server_default='__link_secret__'))
    with op.batch_alter_table('organisation', schema=None) as batch_op:
        batch_op.add_column(sa.Column('self_service', sa.Boolean(), nullable=False, server_default=sa.false()))
    with op.batch_alter_table('passwordresettoken', schema=None) as batch_op:
        batch_op.add_column(sa.Column('membership_id', sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('passwordresettoken', schema=None) as batch_op:
        batch_op.drop_column('membership_id')
    with op.batch_alter_table('organisation', schema=None) as batch_op:
        batch_op.drop_column('self_service')
    with op.batch_alter_table('mailsecret', schema=None) as batch_op:
        batch_op.drop_column('mark')
