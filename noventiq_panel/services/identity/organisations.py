"""Organisations: the customer's requisites, and the creation of a new customer by the reseller.

- ``get_details`` / ``update_details`` work for the actor's own organisation only (any member
  reads; Owner or Administrator changes, validated, audited).
- ``create_customer`` is a reseller/system operation (CLI, demo data): a new organisation and its
  Owner, who gets a ``welcome`` e-mail with a set-password link (in the outbox without SMTP).
- A tax id belongs to one customer (:func:`claim_tax_id`): an organisation the reseller created
  holds it at once, a self-service one only once a member proved their mailbox.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from noventiq_panel.models import (
    BillingMode,
    ClosingDocument,
    Membership,
    Organisation,
    Payment,
    PaymentStatus,
    Role,
    User,
)
from noventiq_panel.models.types import utcnow
from noventiq_panel.services.core import audit, requisites
from noventiq_panel.services.identity import auth
from noventiq_panel.services.notify import notifications
from noventiq_panel.services.core.authz import Actor, can_read, can_write
from noventiq_panel.services.identity import validation
from noventiq_panel.services.core.clock import local_date
from noventiq_panel.services.core.errors import Conflict, DomainError, Forbidden, InvalidInput, NotFound
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
    require_two_factor: bool = False
    # what the electronic invoices (ЭСФ) name beside the tax id and address (services/billing/esf.py)
    vat_reg_code: str = ""
    bank_mfo: str = ""
    bank_account: str = ""
    oked: str = ""
    director: str = ""
    contract_no: str = ""
    contract_date: date | None = None


# The ЭСФ requisites: each is optional in update_details / set_requisites (None: unchanged).
ESF_FIELDS = ("vat_reg_code", "bank_mfo", "bank_account", "oked", "director", "contract_no", "contract_date")


def _details(org: Organisation) -> OrgDetails:
    return OrgDetails(id=org.id, name=org.name, tax_id=org.tax_id, address=org.address, phone=org.phone,
                      bank_details=org.bank_details, billing_currency=org.billing_currency, timezone=org.timezone,
                      billing_mode=org.billing_mode, credit_limit=org.credit_limit,
                      low_balance_threshold=org.low_balance_threshold, created_at=org.created_at,
                      require_two_factor=org.require_two_factor,
                      **{name: getattr(org, name) for name in ESF_FIELDS})


# The contract between the reseller and the customer: support sets it (set_requisites, CLI
# ``org set-requisites``), not the customer's Owner or Administrator (update_details refuses it).
CONTRACT_FIELDS = ("contract_no", "contract_date")


def _contract_date(value: Any, today: date | None = None) -> date | None:
    if value in (None, ""):
        return None
    when = None
    if isinstance(value, datetime):
        when = value.date()
    elif isinstance(value, date):
        when = value
    elif isinstance(value, str):
        try:
            when = date.fromisoformat(value.strip())
        except ValueError:
            pass
    if when is None:
        raise InvalidInput("the contract date is YYYY-MM-DD", field="contract_date",
                           key="error.requisites.contract_date")
    if today is not None and when > today:
        # a contract is signed before the services it covers (an ЭСФ refuses one dated after it)
        raise InvalidInput("the contract date is in the future", field="contract_date",
                           key="error.requisites.contract_date_future")
    return when


def _one_line(value: Any, *, field: str, max_len: int) -> str:
    """Free text on one line: inner newlines and runs of spaces become one space (a contract number
    cannot add lines to the CLI's output or to the ЭСФ)."""
    return " ".join(validation._text(value, field=field, max_len=max_len).split())


def esf_values(*, today: date | None = None, **given: Any) -> dict[str, Any]:
    """The ЭСФ requisites among ``given`` that are not None, checked (services/core/requisites.py
    for the codes; a contract date not after ``today``); InvalidInput names the first wrong one."""
    checks = {
        "vat_reg_code": requisites.validate_vat_reg_code,
        "bank_mfo": requisites.validate_mfo,
        "bank_account": requisites.validate_bank_account,
        "oked": requisites.validate_oked,
        "director": lambda v: _one_line(v, field="director", max_len=255),
        "contract_no": lambda v: _one_line(v, field="contract_no", max_len=64),
        "contract_date": lambda v: _contract_date(v, today),
    }
    unknown = set(given) - set(checks)
    if unknown:
        raise InvalidInput(f"unknown requisites: {sorted(unknown)}", key="organisations.invalid")
    return {name: checks[name](value) for name, value in given.items() if value is not None}


def _tax_id_taken() -> Conflict:
    return Conflict("an organisation with this tax id is already registered", key="organisations.tax_id_taken",
                    field="tax_id")


def _other_with(session: Session, tax_id: str, org_id: int | None) -> Organisation | None:
    query = select(Organisation).where(Organisation.tax_id == tax_id)
    if org_id is not None:
        query = query.where(Organisation.id != org_id)
    return session.exec(query).first()


def require_tax_id_free(session: Session, tax_id: str, *, org_id: int | None = None) -> None:
    """Conflict ``organisations.tax_id_taken`` when another organisation has ``tax_id`` now,
    whoever holds it (a check only: :func:`claim_tax_id` is what a new holder calls). Empty tax
    ids are not compared. The unique index ``uq_organisation_tax_id`` backs it."""
    if tax_id and _other_with(session, tax_id, org_id) is not None:
        raise _tax_id_taken()


def holds_tax_id(session: Session, org: Organisation) -> bool:
    """Whether ``org`` keeps its tax id against another claimant: always when the reseller created
    it; a self-service one (sign-up, guest order) once money arrived for one of its invoices or a
    closing document was issued (the documents carry the tax id; a dispute goes to support), or
    one of its members (in force, active) proved their mailbox — so that an unproven sign-up or
    guest order (whose invoice nobody paid) cannot squat a real company's tax id."""
    if not org.self_service:
        return True
    paid = select(Payment.id).where(Payment.org_id == org.id, col(Payment.paid_amount) > 0).limit(1)
    documents = select(ClosingDocument.id).where(ClosingDocument.org_id == org.id).limit(1)
    if session.exec(paid).first() is not None or session.exec(documents).first() is not None:
        return True
    proven = (select(Membership.id).join(User, col(User.id) == col(Membership.user_id))
              .where(Membership.org_id == org.id, Membership.in_force(), User.is_active == True,  # noqa: E712
                     col(User.email_verified_at).is_not(None)).limit(1))
    return session.exec(proven).first() is not None


def claim_tax_id(session: Session, tax_id: str, *, org_id: int | None = None) -> None:
    """A tax id belongs to one customer. Before organisation ``org_id`` (None: a new one) takes
    ``tax_id``: Conflict ``organisations.tax_id_taken`` when another organisation holds it (a
    colleague asks that organisation's Owner for an invitation instead; a dispute goes to support,
    CLI ``org set-requisites``); an organisation that has it without holding it
    (:func:`holds_tax_id`) loses it, audited as ``organisation.tax_id_released``. Flushes."""
    if not tax_id:
        return
    other = _other_with(session, tax_id, org_id)
    if other is None:
        return
    if holds_tax_id(session, other):
        raise _tax_id_taken()
    other.tax_id = ""
    session.add(other)
    # its invoices nobody paid carried the tax id: they are void now (no payment can match them)
    unpaid = session.exec(select(Payment).where(
        Payment.org_id == other.id, col(Payment.status).in_([PaymentStatus.PENDING, PaymentStatus.OVERDUE,
                                                             PaymentStatus.FAILED]),
        col(Payment.paid_amount) == 0)).all()
    for payment in unpaid:
        payment.status = PaymentStatus.CANCELLED
        session.add(payment)
    audit.record(session, Actor.system(other.id), "organisation.tax_id_released", tax_id=tax_id,
                 reason="no member proved their mailbox; another customer claimed the tax id",
                 cancelled_invoices=[p.number for p in unpaid])
    session.flush()


def requisites_locked(session: Session, org_id: int) -> bool:
    """Once an invoice or a closing document was issued in the organisation's name, its legal name
    and tax id stay as they were (documents carry them); support changes them (CLI
    ``org set-requisites``)."""
    return (session.exec(select(Payment.id).where(Payment.org_id == org_id, Payment.status != PaymentStatus.CANCELLED)
                         .limit(1)).first() is not None
            or session.exec(select(ClosingDocument.id).where(ClosingDocument.org_id == org_id).limit(1)).first()
            is not None)


def get_details(session: Session, actor: Actor) -> OrgDetails:
    access = can_read(session, actor)
    org = session.get(Organisation, access.org_id)
    return _details(org)


def update_details(session: Session, actor: Actor, *, name: str, tax_id: str = "", address: str = "",
                   phone: str = "", bank_details: str = "", **esf: Any) -> OrgDetails:
    """Owner/Administrator edit the requisites shown on invoices and acts (and, through ``esf``,
    those of the electronic invoices: :data:`ESF_FIELDS`, None or absent = unchanged; the contract
    number and date are support's: Forbidden ``error.esf.contract_by_support`` when they would
    change). Documents already issued keep the requisites they were issued with (their ЭСФ is made
    from the document's own record, ``billing/esf_record``). Audited."""
    try:
        access = can_write(session, actor)
        values = {
            "name": " ".join(validation._text(name, field="name", max_len=255, required=True,
                                   key="organisations.name_required").split()),
            "tax_id": validation.validate_tax_id(tax_id),
            "address": validation._text(address, field="address", max_len=500),
            "phone": validation.validate_phone(phone),
            "bank_details": validation._text(bank_details, field="bank_details", max_len=500),
            **esf_values(**esf),
        }
    except DomainError:
        session.rollback()
        raise
    org = session.get(Organisation, access.org_id)
    changed = {k: v for k, v in values.items() if getattr(org, k) != v}
    try:
        if set(CONTRACT_FIELDS) & set(changed):
            raise Forbidden("the contract number and date are set by support", key="error.esf.contract_by_support")
        if {"name", "tax_id"} & set(changed) and requisites_locked(session, org.id):
            raise Conflict("the name and tax id are on issued documents; ask support to change them",
                           key="organisations.requisites_locked")
        claim_tax_id(session, changed.get("tax_id", ""), org_id=org.id)
    except DomainError:
        session.rollback()
        raise
    for key, value in changed.items():
        setattr(org, key, value)
    if changed:
        audit.record(session, actor, "organisation.updated", fields=sorted(changed))
    try:
        session.commit()
    except IntegrityError:  # the same tax id registered at the same moment
        session.rollback()
        raise _tax_id_taken() from None
    return _details(org)


def set_requisites(session: Session, org_id: int, *, name: str | None = None, tax_id: str | None = None,
                   now: datetime | None = None, **esf: Any) -> OrgDetails:
    """Support's change of a customer's legal name or tax id (CLI ``org set-requisites``), also
    after documents were issued: validated, the tax id still unique, audited as the system. The
    requisites of the electronic invoices (:data:`ESF_FIELDS`) may be given too, the contract
    number and date among them (a date not after today). Documents already issued keep the
    requisites they were issued with (``billing/esf_record``): this changes the next ones."""
    try:
        org = session.get(Organisation, org_id) if isinstance(org_id, int) else None
        if org is None:
            raise NotFound("organisation not found", key="organisations.not_found")
        values = {}
        if name is not None:
            values["name"] = validation.validate_org_name(name)
        if tax_id is not None:
            values["tax_id"] = validation.validate_tax_id(tax_id)
            claim_tax_id(session, values["tax_id"], org_id=org.id)
        values.update(esf_values(today=local_date(now or utcnow(), org.timezone), **esf))
    except DomainError:
        session.rollback()
        raise
    before = {k: getattr(org, k) for k in values}
    for key, value in values.items():
        setattr(org, key, value)
    audit.record(session, Actor.system(org.id), "organisation.requisites_set",
                 before={k: v.isoformat() if isinstance(v, date) else v for k, v in before.items()},
                 after={k: v.isoformat() if isinstance(v, date) else v for k, v in values.items()})
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
        claim_tax_id(session, tax_id)
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
    "claim_tax_id",
    "create_customer",
    "esf_values",
    "get_details",
    "holds_tax_id",
    "require_tax_id_free",
    "requisites_locked",
    "set_requisites",
    "update_details",
]
