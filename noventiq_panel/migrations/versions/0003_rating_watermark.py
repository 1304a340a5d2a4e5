"""rating by watermark: ratingwatermark and usagefxrate; usage records no longer carry their entry

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 17:00:00

Rating used to write ``usagerecord.ledger_entry_id`` on every record it charged; it now keeps the
highest charged record id per subscription (``ratingwatermark``) and the rate fixed for each usage
day (``usagefxrate``). Both are filled from what the old column and the usage entries say. A record
left unrated below its subscription's highest rated id (only possible while its day had no
exchange rate) would be skipped by the new rule, so the upgrade stops and says so: load the rate,
run ``noventiq-panel jobs run rating`` on the old version, then upgrade.
"""
from datetime import datetime, timezone
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

import noventiq_panel.models.types

revision: str = '0003'
down_revision: Union[str, Sequence[str], None] = '0002'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        'ratingwatermark',
        sa.Column('subscription_id', sa.Integer(), autoincrement=False, nullable=False),
        sa.Column('last_record_id', sa.Integer(), nullable=False),
        sa.Column('rated_at', noventiq_panel.models.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(['subscription_id'], ['subscription.id'], ),
        sa.PrimaryKeyConstraint('subscription_id'),
    )
    op.create_table(
        'usagefxrate',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('currency', sa.String(length=3), nullable=False),
        sa.Column('billing_currency', sa.String(length=3), nullable=False),
        sa.Column('day', sa.Date(), nullable=False),
        sa.Column('rate', noventiq_panel.models.types.Price(), nullable=False),
        sa.Column('fixed_at', noventiq_panel.models.types.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('currency', 'billing_currency', 'day', name='uq_usagefx_day'),
    )
    conn = op.get_bind()
    stranded = conn.execute(sa.text(
        "SELECT COUNT(*) FROM usagerecord u WHERE u.ledger_entry_id IS NULL AND u.id < "
        "(SELECT MAX(r.id) FROM usagerecord r WHERE r.subscription_id = u.subscription_id "
        "AND r.ledger_entry_id IS NOT NULL)")).scalar()
    if stranded:
        raise RuntimeError(
            f"{stranded} usage records wait for an exchange rate below records already rated; load the rate "
            "and run the rating job on the previous version before upgrading")
    now = datetime.now(timezone.utc)
    stamp = now if conn.dialect.name == "postgresql" else now.replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")
    conn.execute(sa.text(
        "INSERT INTO ratingwatermark (subscription_id, last_record_id, rated_at) "
        "SELECT subscription_id, MAX(id), :now FROM usagerecord WHERE ledger_entry_id IS NOT NULL "
        "GROUP BY subscription_id"), {"now": stamp})
    conn.execute(sa.text(
        "INSERT INTO usagefxrate (currency, billing_currency, day, rate, fixed_at) "
        "SELECT source_currency, currency, fx_date, MIN(fx_rate), :now FROM ledgerentry "
        "WHERE kind = 'usage' AND fx_rate IS NOT NULL AND fx_date IS NOT NULL AND source_currency IS NOT NULL "
        "GROUP BY source_currency, currency, fx_date"), {"now": stamp})
    with op.batch_alter_table('usagerecord', schema=None, recreate='always',
                              table_kwargs={'sqlite_autoincrement': True}) as batch_op:
        batch_op.drop_index('ix_usage_sub_unrated')
        batch_op.drop_index('ix_usage_sub_period')
        batch_op.drop_column('ledger_entry_id')
        batch_op.create_index('ix_usage_sub_id', ['subscription_id', 'id', 'period_start'], unique=False)
        batch_op.create_index('ix_usage_rating', ['subscription_id', 'period_start', 'currency', 'cost'],
                              unique=False)


def downgrade() -> None:
    # Records rated by watermark carry no entry id: the old rating would charge them again.
    if op.get_bind().execute(sa.text("SELECT COUNT(*) FROM ratingwatermark")).scalar():
        raise RuntimeError("usage has been rated by watermark; downgrading would charge it again")
    with op.batch_alter_table('usagerecord', schema=None, recreate='always') as batch_op:
        batch_op.drop_index('ix_usage_sub_id')
        batch_op.drop_index('ix_usage_rating')
        batch_op.create_index('ix_usage_sub_period', ['subscription_id', 'period_start'], unique=False)
        batch_op.add_column(sa.Column('ledger_entry_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key('fk_usagerecord_ledger_entry', 'ledgerentry', ['ledger_entry_id'], ['id'])
        batch_op.create_index('ix_usage_sub_unrated', ['subscription_id', 'ledger_entry_id'], unique=False)
    op.drop_table('usagefxrate')
    op.drop_table('ratingwatermark')
