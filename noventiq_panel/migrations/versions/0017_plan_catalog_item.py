"""a plan's item in the vendor's catalogue (Partner Center's catalog item id), for a connector's order

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-06 14:00:00
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
import sqlmodel


revision: str = '0017'
down_revision: Union[str, Sequence[str], None] = '0016'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table('plan') as batch_op:
        batch_op.add_column(sa.Column('catalog_item_id', sqlmodel.sql.sqltypes.AutoString(length=128),
                                      server_default='', nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('plan') as batch_op:
        batch_op.drop_column('catalog_item_id')
