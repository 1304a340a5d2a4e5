"""identity: verified e-mail, mail secrets kept apart from the outbox, unique tax ids, statement review

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04 21:30:00

- ``user.email_verified_at``: filled for the accounts whose mailbox is proven — those that used a
  link mailed to them (set a password through an invitation, a welcome or a reset link). A
  self-registered account that never did stays unverified and is asked to confirm its e-mail at
  its next sign-in; its sessions end.
- ``mailsecret``: the secret part of a queued mail's link. The links stored in the outbox until
  now are taken out of the mail bodies: a queued mail keeps its token here until it is sent, a
  sent one keeps only the mark.
- ``uq_organisation_tax_id``: a non-empty tax id belongs to one organisation. Where several share
  one today, the oldest keeps it and the others lose it (an ``organisation.tax_id_cleared`` audit
  event says whose it was): support checks them and sets the right one (``org set-requisites``).
- ``statementline.status/reason/decided_at``: the review list of the bank statement import; the
  lines imported until now were credited.
"""
import hashlib
import re
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
import noventiq_panel.models.types


revision: str = '0007'
down_revision: Union[str, Sequence[str], None] = '0006'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

MARK = "__link_secret__"  # the one mark of the mails of this migration (notifications.MARK_PATTERN)
LINK = re.compile(r"/(reset|verify)/([A-Za-z0-9_\-]{20,})")


def upgrade() -> None:
    with op.batch_alter_table('user', schema=None) as batch_op:
        batch_op.add_column(sa.Column('email_verified_at', noventiq_panel.models.types.UTCDateTime(), nullable=True))
    op.create_table('mailsecret',
    sa.Column('notification_id', sa.Integer(), nullable=False),
    sa.Column('secret', sa.String(length=200), nullable=False),
    sa.Column('expires_at', noventiq_panel.models.types.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['notification_id'], ['notification.id'], ),
    sa.PrimaryKeyConstraint('notification_id')
    )
    bind = op.get_bind()
    bind.execute(sa.text(
        'UPDATE "user" SET email_verified_at = (SELECT MIN(t.used_at) FROM passwordresettoken t '
        'WHERE t.user_id = "user".id AND t.used_at IS NOT NULL) '
        'WHERE email_verified_at IS NULL'))
    tokens = {h: e for h, e in bind.execute(sa.text(
        "SELECT token_hash, expires_at FROM passwordresettoken WHERE used_at IS NULL")).all()}
    notification = sa.table('notification', sa.column('id', sa.Integer), sa.column('status', sa.String),
                            sa.column('body_text', sa.Text), sa.column('body_html', sa.Text))
    secret = sa.table('mailsecret', sa.column('notification_id', sa.Integer), sa.column('secret', sa.String),
                      sa.column('expires_at', noventiq_panel.models.types.UTCDateTime()))
    rows = bind.execute(sa.text(
        "SELECT id, status, body_text, body_html FROM notification "
        "WHERE body_text LIKE '%/reset/%' OR body_text LIKE '%/verify/%'")).all()
    for nid, status, text, html in rows:
        found = LINK.search(text or "")
        if found is None:
            continue
        raw = found.group(2)
        expires = tokens.get(hashlib.sha256(raw.encode("utf-8")).hexdigest())
        if status == "queued" and expires is not None:
            bind.execute(sa.insert(secret).values(notification_id=nid, secret=raw, expires_at=expires))
        bind.execute(sa.update(notification).where(notification.c.id == nid).values(
            body_text=(text or "").replace(raw, MARK), body_html=(html or "").replace(raw, MARK)))
    _unique_tax_ids(bind)
    with op.batch_alter_table('organisation', schema=None) as batch_op:
        batch_op.create_index('uq_organisation_tax_id', ['tax_id'], unique=True,
                              sqlite_where=sa.text("tax_id <> ''"), postgresql_where=sa.text("tax_id <> ''"))
    with op.batch_alter_table('statementline', schema=None) as batch_op:
        batch_op.add_column(sa.Column('status', sa.String(length=16), nullable=False, server_default='credited'))
        batch_op.add_column(sa.Column('reason', sa.String(length=500), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('decided_at', noventiq_panel.models.types.UTCDateTime(), nullable=True))
        batch_op.create_index(batch_op.f('ix_statementline_status'), ['status'], unique=False)


def _unique_tax_ids(bind) -> None:
    rows = bind.execute(sa.text(
        "SELECT id, tax_id FROM organisation WHERE tax_id <> '' ORDER BY created_at, id")).all()
    owner: dict[str, int] = {}
    audit = sa.table('auditevent', sa.column('org_id', sa.Integer), sa.column('action', sa.String),
                     sa.column('details', sa.JSON), sa.column('created_at', noventiq_panel.models.types.UTCDateTime()))
    for org_id, tax_id in rows:
        if tax_id not in owner:
            owner[tax_id] = org_id
            continue
        bind.execute(sa.text("UPDATE organisation SET tax_id = '' WHERE id = :id"), {"id": org_id})
        bind.execute(sa.insert(audit).values(org_id=org_id, action="organisation.tax_id_cleared",
                                             details={"tax_id": tax_id, "kept_by_org": owner[tax_id]},
                                             created_at=noventiq_panel.models.types.utcnow()))


def downgrade() -> None:
    with op.batch_alter_table('statementline', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_statementline_status'))
        batch_op.drop_column('decided_at')
        batch_op.drop_column('reason')
        batch_op.drop_column('status')
    with op.batch_alter_table('organisation', schema=None) as batch_op:
        batch_op.drop_index('uq_organisation_tax_id')
    op.drop_table('mailsecret')
    with op.batch_alter_table('user', schema=None) as batch_op:
        batch_op.drop_column('email_verified_at')
