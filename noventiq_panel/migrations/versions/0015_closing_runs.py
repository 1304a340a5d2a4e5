"""closing documents: the months whose documents have been generated, and the latest moment a
generation of each ran as (a closed month's consumption never changes again)

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06 10:00:00
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
import noventiq_panel.models.types


revision: str = '0015'
down_revision: Union[str, Sequence[str], None] = '0014'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table('closingrun',
    sa.Column('period', sa.Date(), nullable=False),
    sa.Column('run_at', noventiq_panel.models.types.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('period')
    )


def downgrade() -> None:
    op.drop_table('closingrun')
