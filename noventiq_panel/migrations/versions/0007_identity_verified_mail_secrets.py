"""identity: verified e-mail, mail secrets kept apart from the outbox

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

MARK = "__link_secret__"  # notifications.SECRET_MARK
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


def downgrade() -> None:
    op.drop_table('mailsecret')
    with op.batch_alter_table('user', schema=None) as batch_op:
        batch_op.drop_column('email_verified_at')
