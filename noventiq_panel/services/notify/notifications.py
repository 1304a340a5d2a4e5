"""The mail outbox, which is also each user's notification history.

Every notification is first a ``Notification`` row (subject, text and HTML rendered here, from the
Jinja2 templates in ``noventiq_panel/templates/mail/<locale>/<kind>.{subject.txt,txt,html}``); a
job sends the queued rows later (without SMTP settings they simply stay in the outbox and can be
read in the history).

- :func:`enqueue` adds the row (and its attachments) and FLUSHES, it does not commit: the caller's
  transaction commits it together with the change it reports, so a rolled-back change mails nothing.
- ``dedupe_key``: the same key twice gives one row (also from two transactions at once: the unique
  index decides inside a savepoint, the loser gets the winner's row). Use it for anything a job may
  repeat, e.g. ``f"renewal_reminder:{sub.id}:{period_end}:{user.id}"``.
- Context: every kind needs the keys listed in :data:`KINDS` (a missing one raises
  ``MissingContext`` — a programming error, never a user error). Money is passed as ``Decimal`` +
  ``currency`` and formatted for the recipient's locale; dates as ``date``; moments as aware
  ``datetime`` (shown in the organisation's time zone). Added for you: ``base_url``,
  ``support_email``, ``support_phone``, ``kb_url``, ``locale``, ``tz`` (the organisation's),
  ``org_name`` (when ``org_id`` is given), ``user_name`` (from ``user_id``/``notify_user``).
- Templates use StrictUndefined: a variable that is neither given nor optional fails loudly.

Template helpers: filters ``money(currency)``, ``number``, ``percent``, ``date``,
``datetime``, ``month``, ``role``; the global ``url(path)`` gives ``base_url + path``.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import jinja2
from jinja2 import pass_context
from sqlalchemy import delete, func, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from noventiq_panel.config import get_settings
from noventiq_panel.db import BulkInsert
from noventiq_panel import i18n
from noventiq_panel.i18n import format as fmt
from noventiq_panel.models import (
    MailSecret,
    Membership,
    Notification,
    NotificationAttachment,
    NotificationStatus,
    Organisation,
    User,
)
from noventiq_panel.models.types import utcnow
from noventiq_panel.services.core.errors import NotFound

TEMPLATE_DIR = Path(__file__).resolve().parents[2] / "templates" / "mail"

# kind -> (required context keys, optional context keys). The keys the module adds itself
# (base_url, support_*, kb_url, locale, tz, org_name, user_name) are never required from callers,
# except where a kind needs org_name without an org_id (welcome, invite: given explicitly).
# Types: *amount/balance/shortfall/spent/threshold_amount: Decimal; *_on/due_date/period_end:
# date; expires_at: aware datetime; month: date (any day of it); quantities: int.
KINDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # New customer's owner: link = set-password URL (issue_set_password_link); without a link
    # (self-registration, an existing user) the mail points to the sign-in page.
    "welcome": (("org_name",), ("link", "expires_at")),
    # Invited user: inviter_name, role ("owner"/"admin"/"finance"); link = set-password URL for a
    # new user, omitted for an existing one (then: sign in).
    "invite": (("org_name", "inviter_name", "role"), ("link", "expires_at")),
    # Password recovery: link = /reset/<token>, expires_at = when it stops working.
    "password_reset": (("link", "expires_at"), ()),
    # E-mail verification of a self-registered account: link = /verify/<token>.
    "verify_email": (("org_name", "link", "expires_at"), ()),
    # A new subscription/order: amount charged (0 for a trial).
    "order_confirmed": (("product", "plan", "quantity", "amount", "currency", "subscription_id"),
                        ("period_end", "trial_ends_on")),
    # Licence count changed: amount > 0 charged, < 0 refunded, 0 nothing; scheduled_for = date a
    # decrease takes effect (at renewal) when it is not immediate.
    "licence_changed": (("product", "old_quantity", "new_quantity", "amount", "currency", "subscription_id"),
                        ("scheduled_for",)),
    "renewal_done": (("product", "quantity", "amount", "currency", "period_end", "subscription_id"), ()),
    # Renewal could not be paid: amount required, shortfall missing, suspend_on = end of grace.
    "renewal_failed_funds": (("product", "amount", "shortfall", "currency", "suspend_on", "subscription_id"), ()),
    # Auto-renew is on: it will renew on renew_on for amount; balance now.
    "renewal_reminder": (("product", "renew_on", "amount", "currency", "balance", "subscription_id"), ()),
    # Auto-renew is off: it ends on expires_on.
    "expiry_reminder": (("product", "expires_on", "subscription_id"), ()),
    # Trial ends on trial_ends_on; converts = whether it becomes paid (then amount + currency).
    "trial_reminder": (("product", "trial_ends_on", "converts", "subscription_id"), ("amount", "currency")),
    "expired": (("product", "expired_on", "subscription_id"), ()),
    # reason: "funds" (grace period over) or "manual" (by a user / the reseller).
    "suspended": (("product", "suspended_on", "reason", "subscription_id"), ()),
    "low_balance": (("balance", "threshold", "currency"), ()),
    "payment_received": (("amount", "currency", "balance"), ("method",)),
    # An invoice to pay (PDF usually attached).
    "invoice_to_pay": (("invoice_number", "amount", "currency", "due_date"), ()),
    "payment_due": (("invoice_number", "amount", "currency", "due_date"), ()),
    "payment_overdue": (("invoice_number", "amount", "currency", "due_date"), ()),
    # Act of completed work + invoice of a closed month (PDFs attached).
    "closing_documents": (("month", "document_number", "amount", "currency"), ()),
    # threshold: percent (Decimal, e.g. 80); threshold_type "actual"/"forecast"; budget_amount the
    # monthly budget; spent = actual spend (or the month-end forecast for a forecast threshold).
    "budget_threshold": (("budget_name", "product", "threshold", "threshold_type", "budget_amount", "spent",
                          "currency", "month", "subscription_id"), ()),
    # A pay-as-you-go day far outside what its last 60 days predict (services/usage/anomalies.py):
    # day: date (organisation-local); direction "spike"/"drop"; actual, expected, low, high: Decimal
    # (the expected band [low, high]); services, resource_groups: lists of {name (str, "" = none),
    # actual, expected, change (Decimal), new (bool)}, those that changed most.
    "cost_anomaly": (("subscription_name", "product", "day", "direction", "actual", "expected", "low", "high",
                      "currency", "services", "resource_groups", "subscription_id"), ()),
    # The provisioning queue (subscriptions.provisioning): an order of a vendor without an API was
    # received (amount reserved, 0 for none); the operator completed a task (action: order,
    # quantity, plan, suspend, resume, cancel, auto_renew; amount charged for an order) or the vendor
    # declined it (reason); the tasks open too long (to the support address: tasks = list of
    # {id, org, subscription, vendor, action, requested_at, hours}).
    "provisioning_requested": (("product", "quantity", "amount", "currency", "subscription_id"), ()),
    "provisioning_done": (("product", "action", "quantity", "subscription_id"), ("amount", "refunded", "currency")),
    "provisioning_rejected": (("product", "action", "reason", "subscription_id"), ()),
    "provisioning_overdue": (("tasks", "count"), ()),
    # Monthly usage report of a pay-as-you-go subscription (report attached).
    "iaas_monthly_report": (("product", "month", "amount", "currency", "subscription_id"), ()),
    # Pay-as-you-go credit control (subscriptions.credit_control). The organisation is overdrawn
    # (prepaid: balance below zero; postpaid: beyond credit_limit, given for postpaid only):
    # suspend_at = when its pay-as-you-go subscriptions are suspended unless it tops up; products =
    # those subscriptions' names (list of str).
    "credit_overdrawn": (("balance", "currency", "suspend_at"), ("credit_limit", "products")),
    # Still overdrawn after the grace period: the pay-as-you-go subscriptions products were suspended.
    "credit_suspended": (("products", "balance", "currency"), ("credit_limit",)),
    # A top-up brought the balance back: the subscriptions products were resumed.
    "credit_resumed": (("products", "balance", "currency"), ("credit_limit",)),
}

_TAG = re.compile(r"<\s*/?\s*[a-zA-Z][^>]*>")


class MissingContext(ValueError):
    """A notification was enqueued without a context value its kind needs (a programming error)."""


class UnknownKind(ValueError):
    pass


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str


# --- rendering -------------------------------------------------------------------------------

def _loc(ctx) -> str:
    return fmt.normalize_locale(ctx.get("locale"))


def _tz(ctx) -> str:
    return ctx.get("tz") or fmt.DEFAULT_TZ


# Babel formatting is more than half the cost of rendering a mail, and a job mailing thousands of
# customers formats the same few amounts and dates again and again. The formatters are pure
# functions of their arguments, so their results are remembered, keyed by the value's exact type
# and repr besides the value itself: values Python calls equal that may print differently never
# share an entry (2 and Decimal("2.00"); 02:30 before and after a DST change, an hour apart).
_REMEMBERED_TYPES = (int, str, Decimal, date, datetime)


def _remembered(formatter):
    @lru_cache(maxsize=4096)
    def cached(_type, _repr, value, *args):
        return formatter(value, *args)

    def call(value, *args):
        if type(value) in _REMEMBERED_TYPES:
            return cached(type(value), repr(value), value, *args)
        return formatter(value, *args)

    return call


_money = _remembered(lambda amount, currency, loc: fmt.format_money(amount, currency, loc))
_number = _remembered(lambda value, loc, decimals: fmt.format_number(value, loc, decimals=decimals))
_percent = _remembered(lambda value, loc, decimals: fmt.format_percent(value, loc, decimals=decimals))
_date = _remembered(lambda value, loc, tz: fmt.format_date(value, loc, tz=tz, format="text"))
_datetime = _remembered(lambda value, tz, loc: fmt.format_datetime(value, tz, loc, format="text"))
_month = _remembered(lambda value, loc, tz: fmt.format_month(value, loc, tz=tz))


@pass_context
def _f_money(ctx, amount, currency):
    return _money(amount, currency, _loc(ctx))


@pass_context
def _f_number(ctx, value, decimals=None):
    return _number(value, _loc(ctx), decimals)


@pass_context
def _f_percent(ctx, value, decimals=None):
    return _percent(value, _loc(ctx), decimals)


@pass_context
def _f_date(ctx, value):
    return _date(value, _loc(ctx), _tz(ctx))


@pass_context
def _f_datetime(ctx, value):
    return _datetime(value, _tz(ctx), _loc(ctx))


@pass_context
def _f_month(ctx, value):
    return _month(value, _loc(ctx), _tz(ctx))


@pass_context
def _f_role(ctx, role):
    key = f"users.role.{role}"
    return i18n.t(key, _loc(ctx)) if i18n.has(key, _loc(ctx)) else str(role)


@pass_context
def _g_url(ctx, path: str = "/") -> str:
    base = ctx.get("base_url") or get_settings().base_url
    return base.rstrip("/") + "/" + str(path).lstrip("/")


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default_for_string=False,
                                            default=False),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
        auto_reload=False,  # the templates ship with the code: read once, not checked on every mail
    )
    env.filters.update(money=_f_money, number=_f_number, percent=_f_percent, date=_f_date,
                       datetime=_f_datetime, month=_f_month, role=_f_role)
    env.globals["url"] = _g_url
    return env


def _check_context(kind: str, context: Mapping[str, Any]) -> None:
    if kind not in KINDS:
        raise UnknownKind(f"unknown notification kind {kind!r}")
    required, _optional = KINDS[kind]
    missing = [k for k in required if k not in context]
    if missing:
        raise MissingContext(f"notification {kind!r} needs context {missing}")


def render(kind: str, context: Mapping[str, Any], locale: str = "ru") -> Rendered:
    """Subject, text and HTML of ``kind`` in ``locale`` (no database access).

    ``context`` must hold the kind's required keys; the common ones (base_url, support contacts,
    locale, tz) are filled in when missing.
    """
    _check_context(kind, context)
    loc = fmt.normalize_locale(locale)
    settings = get_settings()
    ctx: dict[str, Any] = {
        "base_url": settings.base_url,
        "support_email": settings.support_email,
        "support_phone": settings.support_phone,
        "kb_url": settings.knowledge_base_url,
        "tz": fmt.DEFAULT_TZ,
        "user_name": "",
        "kind": kind,
    }
    ctx.update(context)
    ctx["locale"] = loc
    env = environment()
    try:
        subject = env.get_template(f"{loc}/{kind}.subject.txt").render(ctx)
        text = env.get_template(f"{loc}/{kind}.txt").render(ctx)
        html = env.get_template(f"{loc}/{kind}.html").render(ctx)
    except jinja2.UndefinedError as exc:
        raise MissingContext(f"notification {kind!r} ({loc}): {exc}") from exc
    subject = " ".join(subject.split())[:500]  # one line: no header injection through a name
    text = re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"
    return Rendered(subject=subject, text=text, html=html)


def has_html_tags(text: str) -> bool:
    return bool(_TAG.search(text))


# --- the outbox ------------------------------------------------------------------------------

def _find_dedupe(session: Session, dedupe_key: str) -> Notification | None:
    return session.exec(select(Notification).where(Notification.dedupe_key == dedupe_key)).first()


# --- secret links: no raw secret at rest in the outbox ---------------------------------------

# The stored mail holds a mark where its link's secret (a token: set a password, verify the
# e-mail) goes. The mark is new for every mail and random, so text a user typed (an organisation's
# or a person's name) can never hold it: the mailer puts the secret exactly where the panel's own
# link is and nowhere else. The secret and its mark wait in ``MailSecret`` until the mailer sends
# the mail (or it fails for good, or the token expires), then are deleted; the history and the
# outbox show "…" in their place. ``__link_secret__`` is the one mark of mails queued before
# marks were random (migration 0007).
MARK_PATTERN = re.compile(r"__link_(?:secret|[0-9a-f]{32})__")


def _new_mark() -> str:
    return f"__link_{secrets.token_hex(16)}__"


@dataclass(frozen=True)
class Secret:
    """The raw token of a mail's link, when it stops working, and the mark standing in for it."""

    value: str
    expires_at: datetime
    mark: str = field(default_factory=_new_mark)


def secret_link(path: str, secret: Secret) -> str:
    """The link of a mail whose last part is its secret: ``<base_url><path><mark>``."""
    return get_settings().base_url + path + secret.mark


def fill_secret(text: str, held: MailSecret | None) -> str:
    """``text`` with its mark replaced by the secret (sending), or every mark by "…" (showing a
    stored mail, or one whose secret is gone)."""
    text = text or ""
    if held is not None:
        return text.replace(held.mark, held.secret)
    return MARK_PATTERN.sub("…", text)


def mail_secret(session: Session, notification_id: int) -> MailSecret | None:
    """The secret a queued mail waits to be sent with (None once sent, failed or expired)."""
    return session.get(MailSecret, notification_id)


def text_to_send(session: Session, row: Notification) -> str:
    """The text body as the mailer would send it now (its link's secret filled in while it waits
    to be sent; "…" once sent or expired): for the operator's outbox command, which is how an
    installation without SMTP hands out set-password links."""
    return fill_secret(row.body_text, mail_secret(session, row.id))


def link_to_send(session: Session, row: Notification) -> str | None:
    """The mail's own secret link as the mailer would send it now (None once sent, failed or
    expired, or for a mail without one). Found by its mark, which only the panel's link holds: a
    link someone typed into a name never passes for it (the operator's CLI prints this one)."""
    held = mail_secret(session, row.id)
    if held is None:
        return None
    found = re.search(r"https?://[^\s<>\"']*?" + re.escape(held.mark), row.body_text or "")
    return found.group(0).replace(held.mark, held.secret) if found else None


def purge_secrets(session: Session, now: datetime) -> int:
    """Delete the secrets whose tokens expired (their mails can no longer help anyone); a mail
    still waiting for one of them is failed, never sent with a dead link. Flushes."""
    expired = select(MailSecret.notification_id).where(MailSecret.expires_at <= now)
    session.execute(update(Notification)
                    .where(col(Notification.id).in_(expired), Notification.status == NotificationStatus.QUEUED)
                    .values(status=NotificationStatus.FAILED, last_error=LINK_EXPIRED)
                    .execution_options(synchronize_session=False))
    result = session.execute(delete(MailSecret).where(MailSecret.expires_at <= now)
                             .execution_options(synchronize_session=False))
    return result.rowcount or 0


LINK_EXPIRED = "the link expired before it was sent"


def enqueue(
    session: Session,
    *,
    kind: str,
    to_email: str,
    context: Mapping[str, Any],
    locale: str = "ru",
    org_id: int | None = None,
    user_id: int | None = None,
    attachments: Iterable[tuple[str, str, bytes]] = (),
    dedupe_key: str | None = None,
    secret: Secret | None = None,
    now: datetime | None = None,
) -> Notification:
    """Render ``kind`` and add it to the outbox. Flushes, does NOT commit.

    ``attachments``: ``(filename, mime_type, data)`` tuples. With a ``dedupe_key`` already present,
    returns the existing row and adds nothing. ``secret``: the token of the mail's link, whose
    rendered body holds its mark (:func:`secret_link`) in its place.
    """
    if dedupe_key:
        existing = _find_dedupe(session, dedupe_key)
        if existing is not None:
            return existing
    to_email = (to_email or "").strip()
    if not to_email or "@" not in to_email:
        raise ValueError(f"notification {kind!r}: no recipient address")
    ctx = dict(context)
    if org_id is not None and ("org_name" not in ctx or "tz" not in ctx):
        org = session.get(Organisation, org_id)
        if org is not None:
            ctx.setdefault("org_name", org.name)
            ctx.setdefault("tz", org.timezone)
    if user_id is not None and "user_name" not in ctx:
        user = session.get(User, user_id)
        if user is not None:
            ctx["user_name"] = user.name
    rendered = render(kind, ctx, locale)
    if secret is not None and secret.mark not in rendered.text:
        raise ValueError(f"notification {kind!r}: a secret without its secret_link in the mail")
    row = Notification(**outbox_row(kind=kind, to_email=to_email, rendered=rendered, locale=locale,
                                    org_id=org_id, user_id=user_id, dedupe_key=dedupe_key, now=now))
    files = [(str(name)[:255], str(mime or "application/octet-stream")[:100], bytes(data))
             for name, mime, data in attachments]
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
            for name, mime, data in files:
                session.add(NotificationAttachment(notification_id=row.id, filename=name, mime_type=mime, data=data))
            if secret is not None:
                session.add(MailSecret(notification_id=row.id, secret=secret.value, mark=secret.mark,
                                       expires_at=secret.expires_at))
            session.flush()
    except IntegrityError:
        if not dedupe_key:
            raise
        existing = _find_dedupe(session, dedupe_key)
        if existing is None:
            raise
        return existing
    return row


def outbox_row(*, kind: str, to_email: str, rendered: Rendered, locale: str, org_id: int | None = None,
               user_id: int | None = None, dedupe_key: str | None = None, now: datetime | None = None) -> dict[str, Any]:
    """The columns of one queued mail: the one place they are made (``enqueue`` and ``enqueue_many``)."""
    now = now or utcnow()
    return dict(org_id=org_id, user_id=user_id, to_email=to_email[:254], kind=kind,
                locale=fmt.normalize_locale(locale), subject=rendered.subject, body_text=rendered.text,
                body_html=rendered.html, status=NotificationStatus.QUEUED.value, attempts=0, next_attempt_at=now,
                last_error="", created_at=now, sent_at=None, dedupe_key=dedupe_key or None)


@dataclass(frozen=True)
class Pending:
    """A mail to queue in bulk: rendered by :func:`enqueue_many` only if it is not queued yet. The
    context holds what the template needs (``org_name``, ``tz``, ``user_name`` included)."""

    kind: str
    to_email: str
    context: Mapping[str, Any]
    locale: str = "ru"
    org_id: int | None = None
    user_id: int | None = None
    dedupe_key: str | None = None


def enqueue_many(session: Session, mails: Iterable[Pending], *, now: datetime | None = None) -> int:
    """Queue many mails in one bulk insert (jobs: a savepoint and an ORM object per mail would cost
    more than the work that sends them). A dedupe key already in the outbox, or twice in ``mails``,
    is queued once; mails are rendered as they go in, and only those not queued yet. Flushes with
    the caller's transaction; returns how many were queued."""
    mails = list(mails)
    keys = [m.dedupe_key for m in mails if m.dedupe_key]
    seen: set[str] = set()
    for i in range(0, len(keys), 500):
        seen.update(session.exec(select(Notification.dedupe_key)
                                 .where(col(Notification.dedupe_key).in_(keys[i:i + 500]))).all())
    count = 0

    def rows():  # streamed: PostgreSQL stores the first mails while the next ones render
        nonlocal count
        for mail in mails:
            if mail.dedupe_key:
                if mail.dedupe_key in seen:
                    continue
                seen.add(mail.dedupe_key)
            count += 1
            row = outbox_row(kind=mail.kind, to_email=mail.to_email, rendered=render(mail.kind, mail.context, mail.locale),
                             locale=mail.locale, org_id=mail.org_id, user_id=mail.user_id,
                             dedupe_key=mail.dedupe_key, now=now)
            yield [row[name] for name in _OUTBOX_COLUMNS]

    BulkInsert(session, Notification.__table__, _OUTBOX_COLUMNS).insert(rows())
    return count


_OUTBOX_COLUMNS = ("org_id", "user_id", "to_email", "kind", "locale", "subject", "body_text", "body_html", "status",
                   "attempts", "next_attempt_at", "last_error", "created_at", "sent_at", "dedupe_key")


def notify_user(
    session: Session,
    user: User,
    kind: str,
    context: Mapping[str, Any],
    org_id: int | None = None,
    attachments: Iterable[tuple[str, str, bytes]] = (),
    dedupe_key: str | None = None,
    secret: Secret | None = None,
    now: datetime | None = None,
) -> Notification:
    """:func:`enqueue` to ``user`` in the user's locale (flush only)."""
    ctx = dict(context)
    ctx.setdefault("user_name", user.name)
    return enqueue(session, kind=kind, to_email=user.email, context=ctx, locale=user.locale, org_id=org_id,
                   user_id=user.id, attachments=attachments, dedupe_key=dedupe_key, secret=secret, now=now)


def recipients(session: Session, org_id: int, roles: Sequence[str]) -> list[User]:
    """Active users with an active membership of one of ``roles`` in the organisation, by id."""
    rows = session.exec(
        select(User)
        .join(Membership, Membership.user_id == User.id)
        .where(Membership.org_id == org_id, Membership.in_force(),  # noqa: E712
               col(Membership.role).in_([str(r) for r in roles]), User.is_active == True)  # noqa: E712
        .order_by(User.id)
    ).all()
    return list(rows)


def notify_org_roles(
    session: Session,
    org_id: int,
    roles: Sequence[str],
    kind: str,
    context: Mapping[str, Any],
    attachments: Iterable[tuple[str, str, bytes]] = (),
    dedupe_key: str | None = None,
    now: datetime | None = None,
) -> list[Notification]:
    """One notification per active member with one of ``roles`` (e.g. Owner + Financial manager),
    each in that user's locale (flush only). ``dedupe_key`` is suffixed with ``:u<user id>``."""
    files = list(attachments)
    sent = []
    for user in recipients(session, org_id, roles):
        key = f"{dedupe_key}:u{user.id}" if dedupe_key else None
        sent.append(notify_user(session, user, kind, context, org_id=org_id, attachments=files, dedupe_key=key,
                                now=now))
    return sent


# --- history ---------------------------------------------------------------------------------

def history(session: Session, user_id: int, *, limit: int = 50, offset: int = 0) -> tuple[list[Notification], int]:
    """The user's notifications, newest first, and how many there are in all."""
    limit = max(1, min(int(limit), 500))
    offset = max(0, int(offset))
    total = session.exec(select(func.count()).select_from(Notification).where(Notification.user_id == user_id)).one()
    rows = session.exec(
        select(Notification).where(Notification.user_id == user_id)
        .order_by(col(Notification.created_at).desc(), col(Notification.id).desc())
        .offset(offset).limit(limit)
    ).all()
    return list(rows), int(total)


def get_for_user(session: Session, user_id: int, notification_id: int) -> Notification:
    """One notification of the user, as shown in the history (a detached copy; a secret link ends
    in "…": the secret was never stored with the mail); someone else's (or a missing id) is NotFound."""
    row = _own_row(session, user_id, notification_id)
    view = Notification.model_validate(row.model_dump())
    view.body_text, view.body_html = fill_secret(row.body_text, None), fill_secret(row.body_html, None)
    return view


def _own_row(session: Session, user_id: int, notification_id: int) -> Notification:
    row = session.get(Notification, notification_id)
    if row is None or row.user_id != user_id:
        raise NotFound("notification not found", key="notifications.not_found")
    return row


def attachments_for(session: Session, user_id: int, notification_id: int) -> list[NotificationAttachment]:
    """The attachments of one of the user's notifications (NotFound for someone else's)."""
    _own_row(session, user_id, notification_id)
    return list(session.exec(
        select(NotificationAttachment).where(NotificationAttachment.notification_id == notification_id)
        .order_by(NotificationAttachment.id)
    ).all())


__all__ = [
    "KINDS",
    "MissingContext",
    "Rendered",
    "UnknownKind",
    "attachments_for",
    "enqueue",
    "environment",
    "get_for_user",
    "has_html_tags",
    "history",
    "notify_org_roles",
    "notify_user",
    "recipients",
    "render",
]


# --- the operator's view of the outbox (CLI) -------------------------------------------------

def outbox(session: Session, *, status: str | None = None, to_email: str | None = None, kind: str | None = None,
           user_id: int | None = None, limit: int = 20) -> list[Notification]:
    """Newest mail first, filtered (operators: ``noventiq-panel outbox list``)."""
    query = select(Notification)
    if status:
        query = query.where(Notification.status == status)
    if to_email:
        query = query.where(Notification.to_email == to_email.strip().lower())
    if kind:
        query = query.where(Notification.kind == kind)
    if user_id is not None:
        query = query.where(Notification.user_id == user_id)
    return list(session.exec(query.order_by(col(Notification.created_at).desc(), col(Notification.id).desc())
                             .limit(limit)).all())


def outbox_mail(session: Session, notification_id: int) -> Notification | None:
    """One mail of the outbox by id (operators: ``noventiq-panel outbox show``)."""
    return session.get(Notification, notification_id)
