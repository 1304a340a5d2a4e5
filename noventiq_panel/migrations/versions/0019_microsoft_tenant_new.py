"""a Microsoft tenant the customer asked the reseller to create (is_new), when Partner Center
took the customer's acceptance of the Microsoft Customer Agreement, a tenant confirmed for one
organisation only, and a queued order's operation key (carried out once)

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-06 05:10:00
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
import noventiq_panel.models.types


revision: str = '0019'
down_revision: Union[str, Sequence[str], None] = '0018'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table('microsofttenant') as batch:
        batch.add_column(sa.Column('is_new', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column('agreement_confirmed_at', noventiq_panel.models.types.UTCDateTime(), nullable=True))
    op.create_index('ux_microsofttenant_confirmed', 'microsofttenant', ['tenant_id'], unique=True,
                    sqlite_where=sa.text('verified_at IS NOT NULL'), postgresql_where=sa.text('verified_at IS NOT NULL'))
    with op.batch_alter_table('provisioningtask') as batch:
        batch.add_column(sa.Column('request_key', sa.String(length=200), nullable=True))
        batch.create_unique_constraint('uq_provisioningtask_request_key', ['request_key'])


def downgrade() -> None:
    with op.batch_alter_table('provisioningtask') as batch:
        batch.drop_constraint('uq_provisioningtask_request_key', type_='unique')
        batch.drop_column('request_key')
    op.drop_index('ux_microsofttenant_confirmed', table_name='microsofttenant')
    with op.batch_alter_table('microsofttenant') as batch:
        batch.drop_column('agreement_confirmed_at')
        batch.drop_column('is_new')
