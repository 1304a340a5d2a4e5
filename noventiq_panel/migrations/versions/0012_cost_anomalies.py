"""cost anomalies of pay-as-you-go subscriptions (costanomaly: once per subscription and day) and the
subscription's setting that turns their mails off (subscription.anomaly_alerts, on by default)

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-10 10:00:00
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
import noventiq_panel.models.types


revision: str = '0012'
down_revision: Union[str, Sequence[str], None] = '0011'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        'costanomaly',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('org_id', sa.Integer(), nullable=False),
        sa.Column('subscription_id', sa.Integer(), nullable=False),
        sa.Column('day', sa.Date(), nullable=False),
        sa.Column('actual', noventiq_panel.models.types.Money(), nullable=False),
        sa.Column('expected', noventiq_panel.models.types.Money(), nullable=False),
        sa.Column('low', noventiq_panel.models.types.Money(), nullable=False),
        sa.Column('high', noventiq_panel.models.types.Money(), nullable=False),
        sa.Column('currency', sa.String(length=3), nullable=False),
        sa.Column('direction', sa.String(length=8), nullable=False),
        sa.Column('contributors', sa.JSON(), nullable=False),
        sa.Column('created_at', noventiq_panel.models.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(['org_id'], ['organisation.id']),
        sa.ForeignKeyConstraint(['subscription_id'], ['subscription.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('subscription_id', 'day', name='uq_costanomaly_sub_day'),
    )
    op.create_index('ix_costanomaly_org_day', 'costanomaly', ['org_id', 'day'], unique=False)
    with op.batch_alter_table('subscription', schema=None) as batch_op:
        batch_op.add_column(sa.Column('anomaly_alerts', sa.Boolean(), nullable=False, server_default=sa.true()))


def downgrade() -> None:
    with op.batch_alter_table('subscription', schema=None) as batch_op:
        batch_op.drop_column('anomaly_alerts')
    op.drop_index('ix_costanomaly_org_day', table_name='costanomaly')
    op.drop_table('costanomaly')
