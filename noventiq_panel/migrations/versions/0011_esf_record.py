"""electronic invoices (ЭСФ): each closing document keeps what its ЭСФ needs as it was at issue
(esf_record) and the requisites taken later for it (esf_later), so an issued document's ЭСФ does
not change with the organisation, the settings or the catalog

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-08 10:00:00
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0011'
down_revision: Union[str, Sequence[str], None] = '0010'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    # documents issued before this revision keep NULL: their ЭСФ is recorded the first time it is made
    with op.batch_alter_table('closingdocument', schema=None) as batch_op:
        batch_op.add_column(sa.Column('esf_record', sa.JSON(none_as_null=True), nullable=True))
        batch_op.add_column(sa.Column('esf_later', sa.JSON(none_as_null=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('closingdocument', schema=None) as batch_op:
        batch_op.drop_column('esf_later')
        batch_op.drop_column('esf_record')
