"""The first online order: a visitor without an account browses the catalog and orders.

- :func:`public_catalog` / :func:`quote` show the catalog and price an order for a visitor, as
  they would be for a new customer (the defaults of self-registration: UZS, Asia/Tashkent,
  prepaid, empty balance). Nothing is written.
- :func:`guest_order` validates everything, throttles repeated anonymous orders per e-mail and
  per IP, refuses an e-mail that already has an account (Conflict ``guest.error.sign_in``: the
  same that the registration page says), and otherwise creates the organisation and its Owner
  (a user without a password, a single-use set-password link in the ``welcome`` mail), then
  orders for it with the ordinary ordering code, as the system (the Owner's mailbox is not
  proven yet, so the Owner holds no rights until the set-password link is used):

  - a trial: nothing is ordered yet. A trial needs a proven mailbox (so that fresh organisations
    do not hand out endless free licences): the visitor sets the password through the mailed
    link, which proves it, and starts the trial from the catalog (status ``confirm_email``);
  - nothing else to pay now (pay-as-you-go within the deposit rules): :func:`ordering.order` —
    the subscription starts at once and ``order_confirmed`` is mailed;
  - a paid plan (the balance is empty): :func:`invoices.request_shortfall_invoice` for exactly
    the price with :func:`pending_actions.pending_action_for_order`; ``invoice_to_pay`` is mailed
    and, once the invoice is paid (``payments.confirm_payment``), the subscription is created.

  All of it is ONE transaction: the ordinary services commit their own work, so they run in a
  second session joined to this transaction's connection in savepoint mode — their "commit"
  releases a savepoint, and only the final commit here makes everything visible. Any error rolls
  back the whole of it (no organisation, user, mail, invoice or subscription is left behind).

Throttling follows ``services.identity.auth``: every order attempt (placed, or refused for an existing
e-mail) is a ``LoginAttempt`` row with email ``"guest:<email>"`` (``success=True`` so it never
counts as a failed sign-in of the IP). More than ``MAX_PER_EMAIL`` attempts per address or
``MAX_PER_IP`` per IP within the login window raise Throttled (``auth.throttled``, ``minutes``).
Invalid input is refused before anything is recorded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from noventiq_panel.models import (
    BillingMode,
    LoginAttempt,
    Membership,
    Organisation,
    Role,
    User,
)
from noventiq_panel.services.core import audit, clock
from noventiq_panel.services.identity import auth
from noventiq_panel.services.catalog import catalog
from noventiq_panel.services.notify import notifications
from noventiq_panel.services.billing import invoices
from noventiq_panel.services.subscriptions import ordering
from noventiq_panel.services.subscriptions.context import utc_now
from noventiq_panel.services.subscriptions.pending_actions import pending_action_for_order
from noventiq_panel.services.subscriptions.quotes import OrderQuote
from noventiq_panel.services.core.authz import Actor
from noventiq_panel.services.identity import organisations, validation
from noventiq_panel.services.core.errors import Conflict, DomainError, InvalidInput, Throttled

GUEST_PREFIX = "guest:"
MAX_PER_EMAIL = 3  # order attempts per e-mail address within the login window
MAX_PER_IP = 5  # order attempts (= new organisations) per IP within the login window
NEW_CUSTOMER = {"billing_currency": "UZS", "timezone": "Asia/Tashkent", "billing_mode": BillingMode.PREPAID}


@dataclass
class GuestOrderResult:
    """What the visitor is shown (no link, no secret: the set-password link goes by e-mail only)."""

    org_id: int
    user_id: int
    email: str
    product_name: str
    plan_name: str
    quantity: int
    currency: str
    is_trial: bool
    subscription_id: int | None = None  # placed at once (trial, nothing to pay now)
    status: str = ""  # the subscription's, "waiting_payment", or "confirm_email" (a trial)
    trial_ends_on: date | None = None
    invoice_number: str = ""  # a paid plan: the invoice to pay
    invoice_amount: Decimal | None = None
    invoice_due: date | None = None
    mails: list[str] = field(default_factory=list)  # the kinds mailed, for the record


def _new_customer_org() -> Organisation:
    """A transient (never added) organisation with a new customer's defaults, for pricing."""
    return Organisation(name="", **NEW_CUSTOMER)


# --- browsing --------------------------------------------------------------------------------

def public_catalog(session: Session, *, search: str = "", category: str | None = None,
                   now: datetime | None = None) -> dict:
    """The active catalog for a visitor, shaped like :func:`catalog.list_catalog` (prices also in
    UZS, the currency of a new customer). Reads only."""
    result = catalog.catalog_for(session, _new_customer_org(), search=search, category=category, now=now)
    session.rollback()  # end the read transaction (SQLite: BEGIN IMMEDIATE)
    return result


def quote(session: Session, plan_id, quantity, *, now: datetime | None = None) -> OrderQuote:
    """Price a visitor's order with the ordinary quote code, for a new (empty) organisation.
    NotFound for a missing or withdrawn plan, InvalidInput for a quantity the plan refuses,
    RateMissing when the plan's currency has no rate. Nothing is written."""
    try:
        info = catalog.get_plan(session, plan_id)
        qty = ordering.order_quantity(info.plan, quantity)
        return ordering.order_quote(session, _new_customer_org(), info, qty, utc_now(now))
    finally:
        session.rollback()


# --- throttling ------------------------------------------------------------------------------

def _attempts(session: Session, now: datetime, *, email: str | None = None, ip: str | None = None) -> list[datetime]:
    query = select(LoginAttempt.at).where(LoginAttempt.at > auth.window(now))
    if email is not None:
        query = query.where(LoginAttempt.email == (GUEST_PREFIX + email)[:254])
    if ip is not None:
        query = query.where(LoginAttempt.ip == ip, col(LoginAttempt.email).startswith(GUEST_PREFIX))
    return list(session.exec(query.order_by(LoginAttempt.at)).all())


def _check_throttle(session: Session, email: str, ip: str, now: datetime) -> None:
    checks = [(_attempts(session, now, email=email), MAX_PER_EMAIL)]
    if ip:
        checks.append((_attempts(session, now, ip=ip), MAX_PER_IP))
    for times, limit in checks:
        if len(times) >= limit:
            raise Throttled("too many orders without an account", key="auth.throttled",
                            minutes=auth.retry_minutes(times, limit, now))


def _record(session: Session, email: str, ip: str, now: datetime) -> None:
    auth.record_attempt(session, GUEST_PREFIX + email, ip, True, now)


# --- ordering --------------------------------------------------------------------------------

def _sign_in_instead() -> Conflict:
    return Conflict("this e-mail already has an account", key="guest.error.sign_in", field="email")


def _validate(session: Session, *, email, name, org_name, tax_id, plan_id, quantity, locale):
    email = validation.normalize_email(email)
    name = validation.validate_name(name)
    org_name = validation.validate_org_name(org_name)
    tax_id = validation.validate_tax_id(tax_id)
    if not tax_id:
        raise InvalidInput("the tax id (INN) is required", field="tax_id", key="organisations.tax_id_invalid")
    locale = validation.validate_locale(locale)
    info = catalog.get_plan(session, plan_id)  # NotFound for a missing or withdrawn plan
    quantity = ordering.order_quantity(info.plan, quantity)  # the plan's own quantity rules
    return email, name, org_name, tax_id, locale, info, quantity


def check(session: Session, *, email, name, org_name, tax_id, plan_id, quantity, locale: str = "ru",
          now: datetime | None = None) -> OrderQuote:
    """Validate a visitor's order form as :func:`guest_order` will and price it (the dialog's
    preview). Does not say whether the e-mail has an account (the order does, throttled).
    Nothing is written."""
    try:
        _email, _name, _org, _tax, _loc, info, qty = _validate(
            session, email=email, name=name, org_name=org_name, tax_id=tax_id, plan_id=plan_id,
            quantity=quantity, locale=locale)
        return ordering.order_quote(session, _new_customer_org(), info, qty, utc_now(now))
    finally:
        session.rollback()


def _create_customer(session: Session, *, email: str, name: str, org_name: str, tax_id: str, locale: str,
                     now: datetime) -> tuple[Organisation, User]:
    """The organisation and its Owner (no password; a set-password link by the welcome mail).
    The internals of ``organisations.create_customer`` for a NEW user only. Flush only."""
    org = Organisation(name=org_name, tax_id=tax_id, self_service=True, created_at=now, **NEW_CUSTOMER)
    user = User(email=email, name=name, locale=locale, created_at=now)
    session.add(org)
    session.add(user)
    session.flush()
    session.add(Membership(user_id=user.id, org_id=org.id, role=Role.OWNER, created_at=now))
    mail = auth.set_password_mail(session, user, now=now)
    notifications.notify_user(session, user, "welcome", {"org_name": org.name, **mail.context}, org_id=org.id,
                              secret=mail.secret, now=now)
    audit.record(session, Actor.system(org.id), "organisation.created", owner=email, source="guest_order")
    session.flush()
    return org, user


def guest_order(session: Session, *, email, name, org_name, tax_id, plan_id, quantity, locale: str = "ru",
                ip: str = "", now: datetime | None = None) -> GuestOrderResult:
    """Place the first online order of a visitor without an account (see the module docstring).

    Raises InvalidInput/NotFound for bad input (nothing written), Throttled, Conflict
    ``guest.error.sign_in`` for an e-mail with an account (the attempt is recorded), the ordering
    errors (Conflict, RateMissing...) with everything rolled back. Commits.
    """
    now = utc_now(now)
    ip = ip[:64] if isinstance(ip, str) else ""
    try:
        email, name, org_name, tax_id, locale, info, quantity = _validate(
            session, email=email, name=name, org_name=org_name, tax_id=tax_id, plan_id=plan_id,
            quantity=quantity, locale=locale)
        _check_throttle(session, email, ip, now)
    except DomainError:
        session.rollback()
        raise
    if session.exec(select(User.id).where(User.email == email)).first() is not None:
        _record(session, email, ip, now)  # a probe counts against the limits too
        session.commit()
        raise _sign_in_instead()
    _record(session, email, ip, now)
    try:  # after the throttle: whether a tax id is a customer's is not for unlimited probing
        organisations.claim_tax_id(session, tax_id)
    except DomainError:
        session.commit()  # the try counts
        raise
    plan, product = info.plan, info.product
    try:
        connection = session.connection()  # this transaction; the services below join it
        with Session(bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False) as inner:
            org, user = _create_customer(inner, email=email, name=name, org_name=org_name, tax_id=tax_id,
                                         locale=locale, now=now)
            actor = Actor.system(org.id)
            result = GuestOrderResult(org_id=org.id, user_id=user.id, email=email, product_name=product.name,
                                      plan_name=plan.name, quantity=quantity, currency=org.billing_currency,
                                      is_trial=plan.trial_days > 0, mails=["welcome"])
            q = ordering.quote_order(inner, actor, plan.id, quantity, now=now)
            if q.is_trial:
                result.status = "confirm_email"
            elif q.price_now > 0:
                action = pending_action_for_order(actor, plan.id, q.quantity, quote_id=q.quote_id)
                payment = invoices.request_shortfall_invoice(inner, actor, q.price_now, action, now=now)
                result.status = "waiting_payment"
                result.invoice_number = payment.number
                result.invoice_amount = payment.amount
                result.invoice_due = payment.due_date
                result.mails.append("invoice_to_pay")
            else:
                outcome = ordering.order(inner, actor, plan.id, q.quantity, quote_id=q.quote_id,
                                         amount=str(q.amount_due), now=now, tenant_later=True)
                result.subscription_id = outcome.subscription_id
                result.status = outcome.status
                if q.is_trial and q.trial_ends_at:
                    result.trial_ends_on = clock.local_date(q.trial_ends_at, org.timezone)
                result.mails.append("order_confirmed")
        session.commit()
    except IntegrityError:  # the e-mail was registered at the same moment
        session.rollback()
        raise _sign_in_instead() from None
    except BaseException:
        session.rollback()
        raise
    return result


__all__ = ["GuestOrderResult", "MAX_PER_EMAIL", "MAX_PER_IP", "check", "guest_order", "public_catalog", "quote"]
