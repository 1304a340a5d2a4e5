"""Organisations: the customer's requisites, and the creation of a new customer by the reseller.

- ``get_details`` / ``update_details`` work for the actor's own organisation only (any member
  reads; Owner or Administrator changes, validated, audited).
- ``create_customer`` is a reseller/system operation (CLI, demo data): a new organisation and its
  Owner, who gets a ``welcome`` e-mail with a set-password link (in the outbox without SMTP).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from noventiq_panel.models import BillingMode, Membership, Organisation, Role, User
from noventiq_panel.models.types import utcnow
from noventiq_panel.services.core import audit
from noventiq_panel.services.identity import auth
from noventiq_panel.services.notify import notifications
from noventiq_panel.services.core.authz import Actor, can_read, can_write
from noventiq_panel.services.identity import validation
from noventiq_panel.services.core.errors import Conflict, DomainError, InvalidInput
from noventiq_panel.services.core.money import parse_amount



@dataclass(frozen=True)
class OrgDetails:
    """What the account page shows and edits (no ORM object goes to the UI)."""

    id: int
    name: str
    tax_id: str
    address: str
    phone: str
    bank_details: str
    billing_currency: str
    timezone: str
    billing_mode: str
    credit_limit: Decimal
    low_balance_threshold: Decimal | None
    created_at: datetime


def _details(org: Organisation) -> OrgDetails:
    return OrgDetails(id=org.id, name=org.name, tax_id=org.tax_id, address=org.address, phone=org.phone,
                      bank_details=org.bank_details, billing_currency=org.billing_currency, timezone=org.timezone,
                      billing_mode=org.billing_mode, credit_limit=org.credit_limit,
                      low_balance_threshold=org.low_balance_threshold, created_at=org.created_at)


def get_details(session: Session, actor: Actor) -> OrgDetails:
    access = can_read(session, actor)
    org = session.get(Organisation, access.org_id)
    return _details(org)


def update_details(session: Session, actor: Actor, *, name: str, tax_id: str = "", address: str = "",
                   phone: str = "", bank_details: str = "") -> OrgDetails:
    """Owner/Administrator edit the requisites shown on invoices and acts. Audited."""
    try:
        access = can_write(session, actor)
        values = {
            "name": " ".join(validation._text(name, field="name", max_len=255, required=True,
                                   key="organisations.name_required").split()),
            "tax_id": validation.validate_tax_id(tax_id),
            "address": validation._text(address, field="address", max_len=500),
            "phone": validation.validate_phone(phone),
            "bank_details": validation._text(bank_details, field="bank_details", max_len=500),
        }
    except DomainError:
        session.rollback()
        raise
    org = session.get(Organisation, access.org_id)
    changed = {k: v for k, v in values.items() if getattr(org, k) != v}
    for key, value in changed.items():
        setattr(org, key, value)
    if changed:
        audit.record(session, actor, "organisation.updated", fields=sorted(changed))
    session.commit()
    return _details(org)


def create_customer(session: Session, *, org_name: str, tax_id: str = "", owner_email: str, owner_name: str,
                    locale: str = "ru", billing_mode: str = BillingMode.PREPAID, credit_limit: Any = 0,
                    currency: str = "UZS", timezone: str = "Asia/Tashkent",
                    now: datetime | None = None) -> tuple[Organisation, User]:
    """A new customer organisation and its Owner (reseller/system operation).

    A new owner gets a user without a password and a ``welcome`` e-mail with a set-password link
    (72 hours); an existing user (same e-mail) becomes the Owner of the new organisation and gets
    the welcome e-mail with a sign-in link (or a set-password link if they never set one).
    """
    now = now or utcnow()
    try:
        org_name = validation.validate_org_name(org_name)
        tax_id = validation.validate_tax_id(tax_id)
        email = validation.normalize_email(owner_email)
        owner_name = validation.validate_name(owner_name, field="owner_name")
        locale = validation.validate_locale(locale)
        if billing_mode not in (BillingMode.PREPAID, BillingMode.POSTPAID):
            raise InvalidInput("billing mode is prepaid or postpaid", field="billing_mode",
                               key="organisations.billing_mode_invalid")
        limit = parse_amount(credit_limit, currency, field="credit_limit", allow_zero=True)
        if billing_mode == BillingMode.PREPAID and limit != 0:
            raise InvalidInput("a prepaid organisation has no credit limit", field="credit_limit",
                               key="organisations.credit_limit_prepaid")
        currency = validation._text(currency, field="currency", max_len=3, required=True).upper()
        if not re.fullmatch(r"[A-Z]{3}", currency):
            raise InvalidInput("currency code expected", field="currency", key="organisations.currency_invalid")
        try:
            from zoneinfo import ZoneInfo

            ZoneInfo(timezone)
        except Exception:
            raise InvalidInput("unknown time zone", field="timezone", key="organisations.timezone_invalid") from None
    except DomainError:
        session.rollback()
        raise
    try:
        org = Organisation(name=org_name, tax_id=tax_id, billing_currency=currency, timezone=timezone,
                           billing_mode=billing_mode, credit_limit=limit, created_at=now)
        session.add(org)
        user = session.exec(select(User).where(User.email == email)).first()
        existing = user is not None
        if user is None:
            user = User(email=email, name=owner_name, locale=locale, created_at=now)
            session.add(user)
        session.flush()
        session.add(Membership(user_id=user.id, org_id=org.id, role=Role.OWNER, created_at=now))
        context: dict[str, Any] = {"org_name": org.name}
        secret = None
        if existing:
            # made Owner by the reseller: every open session of the account ends; an account whose
            # mailbox was never proven loses the password someone chose for it, and the mailbox gets
            # the set-password link (a squatter who registered the address first gets nothing)
            auth.end_sessions(session, user.id, now=now)
            if user.email_verified_at is None:
                user.password_hash = None
        if not user.password_hash:
            mail = auth.set_password_mail(session, user, now=now)
            context, secret = {**context, **mail.context}, mail.secret
        notifications.notify_user(session, user, "welcome", context, org_id=org.id, secret=secret, now=now)
        audit.record(session, Actor.system(org.id), "organisation.created", owner=email, billing_mode=billing_mode)
        session.commit()
    except IntegrityError:
        session.rollback()
        raise Conflict("the owner's e-mail was registered at the same moment; try again",
                       key="organisations.create_conflict") from None
    return org, user


__all__ = [
    "OrgDetails",
    "create_customer",
    "get_details",
    "update_details",
]
