"""an organisation's Microsoft tenant (its initial domain or tenant id: a claim until Microsoft
confirms it) and who accepted the Microsoft Customer Agreement, with their e-mail and when

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-06 15:00:00
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
import noventiq_panel.models.types


revision: str = '0018'
down_revision: Union[str, Sequence[str], None] = '0017'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table('microsofttenant',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('org_id', sa.Integer(), nullable=False),
    sa.Column('domain', sa.String(length=255), nullable=True),
    sa.Column('tenant_id', sa.String(length=36), nullable=True),
    sa.Column('verified_at', noventiq_panel.models.types.UTCDateTime(), nullable=True),
    sa.Column('linked_by', sa.Integer(), nullable=True),
    sa.Column('linked_at', noventiq_panel.models.types.UTCDateTime(), nullable=False),
    sa.Column('agreement_name', sa.String(length=255), nullable=False),
    sa.Column('agreement_email', sa.String(length=254), nullable=False),
    sa.Column('agreement_accepted_at', noventiq_panel.models.types.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['linked_by'], ['user.id'], ),
    sa.ForeignKeyConstraint(['org_id'], ['organisation.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('org_id')
    )
    op.create_index('ix_microsofttenant_domain', 'microsofttenant', ['domain'])
    op.create_index('ix_microsofttenant_tenant', 'microsofttenant', ['tenant_id'])


def downgrade() -> None:
    op.drop_index('ix_microsofttenant_tenant', table_name='microsofttenant')
    op.drop_index('ix_microsofttenant_domain', table_name='microsofttenant')
    op.drop_table('microsofttenant')
