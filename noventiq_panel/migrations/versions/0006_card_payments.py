"""card payments: Payme and Click transactions (models/gateways.py)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04 17:45:42

Two new tables, nothing else changes. Payme amounts are BIGINT tiyin and the protocol's
millisecond times are BIGINT (a 13-digit Unix time does not fit an INTEGER); Click amounts are
Money (scaled BIGINT, 2 decimals), like every other amount.
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
import noventiq_panel.models.types


# revision identifiers, used by Alembic.
revision: str = '0006'
down_revision: Union[str, Sequence[str], None] = '0005'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table('clicktransaction',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('click_trans_id', sa.BigInteger(), nullable=False),
    sa.Column('click_paydoc_id', sa.BigInteger(), nullable=False),
    sa.Column('service_id', sa.BigInteger(), nullable=False),
    sa.Column('merchant_trans_id', sa.String(length=64), nullable=False),
    sa.Column('merchant_prepare_id', sa.Integer(), nullable=True),
    sa.Column('merchant_confirm_id', sa.Integer(), nullable=True),
    sa.Column('account_kind', sa.String(length=8), nullable=False),
    sa.Column('org_id', sa.Integer(), nullable=False),
    sa.Column('payment_id', sa.Integer(), nullable=True),
    sa.Column('amount', noventiq_panel.models.types.Money(), nullable=False),
    sa.Column('state', sa.Integer(), nullable=False),
    sa.Column('error', sa.Integer(), nullable=True),
    sa.Column('error_note', sa.String(length=255), nullable=False),
    sa.Column('sign_time', sa.String(length=32), nullable=False),
    sa.Column('created_at', noventiq_panel.models.types.UTCDateTime(), nullable=False),
    sa.Column('completed_at', noventiq_panel.models.types.UTCDateTime(), nullable=True),
    sa.Column('cancelled_at', noventiq_panel.models.types.UTCDateTime(), nullable=True),
    sa.Column('ledger_entry_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['ledger_entry_id'], ['ledgerentry.id'], ),
    sa.ForeignKeyConstraint(['org_id'], ['organisation.id'], ),
    sa.ForeignKeyConstraint(['payment_id'], ['payment.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('click_trans_id')
    )
    with op.batch_alter_table('clicktransaction', schema=None) as batch_op:
        batch_op.create_index('ix_clicktransaction_created', ['created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_clicktransaction_org_id'), ['org_id'], unique=False)
        batch_op.create_index('ix_clicktransaction_payment_state', ['payment_id', 'state'], unique=False)

    op.create_table('paymetransaction',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('payme_id', sa.String(length=32), nullable=False),
    sa.Column('payme_time', sa.BigInteger(), nullable=False),
    sa.Column('payme_time_at', noventiq_panel.models.types.UTCDateTime(), nullable=False),
    sa.Column('account_kind', sa.String(length=8), nullable=False),
    sa.Column('account', sa.JSON(), nullable=False),
    sa.Column('org_id', sa.Integer(), nullable=False),
    sa.Column('payment_id', sa.Integer(), nullable=True),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('state', sa.Integer(), nullable=False),
    sa.Column('reason', sa.Integer(), nullable=True),
    sa.Column('create_time', sa.BigInteger(), nullable=False),
    sa.Column('created_at', noventiq_panel.models.types.UTCDateTime(), nullable=False),
    sa.Column('perform_time', sa.BigInteger(), nullable=False),
    sa.Column('performed_at', noventiq_panel.models.types.UTCDateTime(), nullable=True),
    sa.Column('cancel_time', sa.BigInteger(), nullable=False),
    sa.Column('cancelled_at', noventiq_panel.models.types.UTCDateTime(), nullable=True),
    sa.Column('fiscal_data', sa.JSON(), nullable=False),
    sa.Column('ledger_entry_id', sa.Integer(), nullable=True),
    sa.Column('reversal_entry_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['ledger_entry_id'], ['ledgerentry.id'], ),
    sa.ForeignKeyConstraint(['org_id'], ['organisation.id'], ),
    sa.ForeignKeyConstraint(['payment_id'], ['payment.id'], ),
    sa.ForeignKeyConstraint(['reversal_entry_id'], ['ledgerentry.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('payme_id')
    )
    with op.batch_alter_table('paymetransaction', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_paymetransaction_org_id'), ['org_id'], unique=False)
        batch_op.create_index('ix_paymetransaction_payme_time', ['payme_time'], unique=False)
        batch_op.create_index('ix_paymetransaction_payment_state', ['payment_id', 'state'], unique=False)
        batch_op.create_index('ix_paymetransaction_state_time', ['state', 'payme_time'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('paymetransaction', schema=None) as batch_op:
        batch_op.drop_index('ix_paymetransaction_state_time')
        batch_op.drop_index('ix_paymetransaction_payment_state')
        batch_op.drop_index('ix_paymetransaction_payme_time')
        batch_op.drop_index(batch_op.f('ix_paymetransaction_org_id'))

    op.drop_table('paymetransaction')
    with op.batch_alter_table('clicktransaction', schema=None) as batch_op:
        batch_op.drop_index('ix_clicktransaction_payment_state')
        batch_op.drop_index(batch_op.f('ix_clicktransaction_org_id'))
        batch_op.drop_index('ix_clicktransaction_created')

    op.drop_table('clicktransaction')
