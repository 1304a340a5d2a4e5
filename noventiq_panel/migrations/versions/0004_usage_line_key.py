"""usagerecord.line_key: an export line's identity without its figures, so that a corrected
re-export records the difference instead of charging the line twice

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03 09:00:00

Records imported before this revision keep NULL: their lines cannot be told apart from a
corrected copy, so a corrected re-export of them is imported as new lines, as before.
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = '0004'
down_revision: Union[str, Sequence[str], None] = '0003'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table('usagerecord', schema=None) as batch_op:
        batch_op.add_column(sa.Column('line_key', sa.String(length=32), nullable=True))
        batch_op.create_index('ix_usage_line_key', ['line_key'], unique=False)


def downgrade() -> None:
    # SQLite rebuilds the table to drop a column: keep its AUTOINCREMENT (record ids only grow).
    with op.batch_alter_table('usagerecord', schema=None, recreate='auto',
                              table_kwargs={'sqlite_autoincrement': True}) as batch_op:
        batch_op.drop_index('ix_usage_line_key')
        batch_op.drop_column('line_key')
