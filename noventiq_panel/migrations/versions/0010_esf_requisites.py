"""electronic invoices (ЭСФ): the ИКПУ/MXIK and package codes of products; the VAT registration code,
bank МФО and account, ОКЭД, director and contract of organisations

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 10:00:00
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0010'
down_revision: Union[str, Sequence[str], None] = '0009'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

_PRODUCT = (('mxik_code', 17), ('mxik_name', 500), ('package_code', 20), ('package_name', 255))
_ORGANISATION = (('vat_reg_code', 12), ('bank_mfo', 5), ('bank_account', 20), ('oked', 5), ('director', 255),
                 ('contract_no', 64))


def upgrade() -> None:
    with op.batch_alter_table('product', schema=None) as batch_op:
        for name, length in _PRODUCT:
            batch_op.add_column(sa.Column(name, sa.String(length=length), nullable=False, server_default=''))
    with op.batch_alter_table('organisation', schema=None) as batch_op:
        for name, length in _ORGANISATION:
            batch_op.add_column(sa.Column(name, sa.String(length=length), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('contract_date', sa.Date(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('organisation', schema=None) as batch_op:
        batch_op.drop_column('contract_date')
        for name, _ in reversed(_ORGANISATION):
            batch_op.drop_column(name)
    with op.batch_alter_table('product', schema=None) as batch_op:
        for name, _ in reversed(_PRODUCT):
            batch_op.drop_column(name)
