"""closing documents: a month whose consumption nets to a credit has no act; the credit is carried
into the next act, which records the first month it settles (carried_from)

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05 16:30:00
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0013'
down_revision: Union[str, Sequence[str], None] = '0012'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table('closingdocument', schema=None) as batch_op:
        batch_op.add_column(sa.Column('carried_from', sa.Date(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('closingdocument', schema=None) as batch_op:
        batch_op.drop_column('carried_from')
