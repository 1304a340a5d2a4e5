"""usage records and the daily roll-up keep the export's charge category (FOCUS ChargeCategory,
Azure ChargeType), so credits show as credits in the analytics

Records imported before it are read as Usage: their category was not kept. The roll-up is derived
data and is rebuilt from the records (``noventiq-panel usage rollup``) after the upgrade.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06 12:00:00
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
import sqlmodel


revision: str = '0016'
down_revision: Union[str, Sequence[str], None] = '0015'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table('usagerecord') as batch_op:
        batch_op.add_column(sa.Column('charge_category', sqlmodel.sql.sqltypes.AutoString(length=32),
                                      server_default='Usage', nullable=False))
    with op.batch_alter_table('usagedaily') as batch_op:
        batch_op.add_column(sa.Column('charge_category', sqlmodel.sql.sqltypes.AutoString(length=32),
                                      server_default='Usage', nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('usagedaily') as batch_op:
        batch_op.drop_column('charge_category')
    # SQLite drops a column by rebuilding the table: keep its AUTOINCREMENT (ids never reused,
    # which the rating watermark relies on), as 0004 does
    with op.batch_alter_table('usagerecord', table_kwargs={'sqlite_autoincrement': True}) as batch_op:
        batch_op.drop_column('charge_category')
