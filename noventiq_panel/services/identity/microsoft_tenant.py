"""An organisation's Microsoft tenant and the Microsoft Customer Agreement (issue 18).

Microsoft subscriptions live in the customer's Microsoft tenant (its Entra ID directory), so the
first Microsoft order asks for it (:func:`order_tenant`). An Owner or Administrator either links
the organisation's existing tenant by its initial domain (``contoso.onmicrosoft.com``) or its
tenant id (a GUID) (:func:`link`), or asks for a new one with a domain prefix of their choice
(:func:`create`), and accepts the Microsoft Customer Agreement as the acting member: their name
and verified e-mail and when are recorded and shown on the account page.

Where the tenants are kept (``vendors.connector.tenant_directory``):
- **Partner Center** configured: a new tenant's domain is checked for availability and the tenant
  is created there with the organisation's details (the tax id, which Microsoft requires for
  Uzbekistan), confirmed (``verified_at``), and the agreement is passed on to Microsoft
  (``agreement_confirmed_at``; Microsoft takes it only with App+User credentials — without them
  the operator confirms it in Partner Center). An existing tenant is never confirmed by looking it
  up there: being one of the reseller's customers does not show that this customer controls it.
- An existing tenant, and a new one without a directory (the provisioning queue), stay a claim;
  the operator checks with the customer, creates or finds it at Microsoft, and confirms it
  (``provisioning complete --tenant-id`` with the first order, or ``tenants confirm``). A tenant
  id is confirmed for one organisation only.

Rules:
- One tenant per organisation; changing it is support's work (a linked tenant holds subscriptions).
- A tenant is a **claim** until Microsoft (or the operator) confirms it. The panel cannot prove who
  controls a tenant (no sign-in with the tenant's administrator), so a claim locks nobody out:
  several customers may claim one tenant, and nobody is told that someone else did (no "taken"
  answer to probe with; review of abe7de3). A connector orders only into a confirmed tenant.
- The agreement is accepted by the acting member, explicitly, never in someone else's name.
- A deactivated organisation links nothing. A call to Microsoft that fails leaves nothing
  recorded, except a creation whose outcome is unknown: that is kept as a claim for the operator
  to reconcile, never created twice.
"""

from __future__ import annotations

import logging
import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from noventiq_panel.models import MicrosoftTenant, Organisation, User
from noventiq_panel.services.core import audit, authz, clock, ledger
from noventiq_panel.services.core.authz import Actor
from noventiq_panel.services.core.errors import (
    Conflict,
    InvalidInput,
    NotFound,
    Throttled,
    VendorUnavailable,
)
from noventiq_panel.services.vendors import connector as vendor_api

log = logging.getLogger(__name__)

INITIAL_DOMAIN = "onmicrosoft.com"
# the domain's first label as DNS allows it (letters, digits, inner hyphens; at most 63)
_PREFIX = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
# a new tenant's prefix: letters and digits only (Partner Center's create-a-customer)
_NEW_PREFIX = re.compile(r"[a-z0-9]{1,63}")
_GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# Microsoft did not answer (or kept failing): what was asked may or may not have been done there
_NO_ANSWER = (VendorUnavailable, Throttled)


@dataclass(frozen=True)
class TenantView:
    domain: str
    tenant_id: str
    linked_at: datetime
    linked_by: str  # the member's name or e-mail
    agreement_name: str
    agreement_email: str
    agreement_accepted_at: datetime
    verified: bool  # confirmed by Microsoft or the operator (until then a claim)
    is_new: bool  # the customer asked for a new tenant
    agreement_confirmed: bool  # Microsoft has the acceptance


@dataclass(frozen=True)
class Created:
    """A new tenant. ``admin_user``/``admin_password``: the administrator account Microsoft made,
    shown to the customer once and kept nowhere (empty when the operator creates the tenant)."""

    tenant: TenantView
    admin_user: str = ""
    admin_password: str = ""


def parse_reference(raw: Any) -> tuple[str | None, str | None]:
    """(initial domain, tenant id) of what the customer typed: ``name.onmicrosoft.com`` or a tenant
    GUID, in lower case; InvalidInput otherwise (field ``tenant``)."""
    value = raw.strip().lower() if isinstance(raw, str) else ""
    if len(value) > 255 or not value:
        raise InvalidInput("the tenant's domain or id is required", field="tenant", key="error.tenant.reference")
    if (tenant_id := parse_tenant_id(value)) is not None:
        return None, tenant_id
    prefix, dot, rest = value.partition(".")
    if dot and rest == INITIAL_DOMAIN and _PREFIX.fullmatch(prefix):
        return value, None
    raise InvalidInput("not a tenant domain (name.onmicrosoft.com) or tenant id", field="tenant",
                       key="error.tenant.reference")


def parse_tenant_id(raw: Any) -> str | None:
    """The canonical spelling of a tenant GUID (never the nil GUID), or None."""
    value = raw.strip().lower() if isinstance(raw, str) else ""
    if _GUID.fullmatch(value) and value.strip("0-"):
        return str(uuid.UUID(value))
    return None


def parse_prefix(raw: Any) -> str:
    """A new tenant's domain prefix (``<prefix>.onmicrosoft.com``): letters and digits, lower case."""
    value = raw.strip().lower() if isinstance(raw, str) else ""
    if value.endswith("." + INITIAL_DOMAIN):
        value = value[: -len(INITIAL_DOMAIN) - 1]
    if not _NEW_PREFIX.fullmatch(value):
        raise InvalidInput("the domain prefix takes 1 to 63 Latin letters and digits", field="prefix",
                           key="error.tenant.prefix")
    return value


def _view(session: Session, row: MicrosoftTenant) -> TenantView:
    user = session.get(User, row.linked_by) if row.linked_by else None
    return TenantView(domain=row.domain or "", tenant_id=row.tenant_id or "", linked_at=row.linked_at,
                      linked_by=(user.name or user.email) if user else "",
                      agreement_name=row.agreement_name, agreement_email=row.agreement_email,
                      agreement_accepted_at=row.agreement_accepted_at, verified=row.verified_at is not None,
                      is_new=row.is_new, agreement_confirmed=row.agreement_confirmed_at is not None)


def _row(session: Session, org_id: int) -> MicrosoftTenant | None:
    return session.exec(select(MicrosoftTenant).where(MicrosoftTenant.org_id == org_id)).first()


def tenant_of(session: Session, actor: Actor | None) -> TenantView | None:
    """The organisation's linked tenant (every role may read it), or None."""
    access = authz.can_read(session, actor)
    row = _row(session, access.org_id)
    return None if row is None else _view(session, row)


def tenant_of_org(session: Session, org_id: int) -> TenantView | None:
    """The organisation's tenant for the operator (the CLI, the provisioning queue)."""
    row = _row(session, org_id)
    return None if row is None else _view(session, row)


def has_tenant(session: Session, org_id: int) -> bool:
    return session.exec(select(MicrosoftTenant.id).where(MicrosoftTenant.org_id == org_id)).first() is not None


# --- the first Microsoft order --------------------------------------------------------------------


def required_for(vendor_code: str | None) -> bool:
    """Does an order of this vendor's products need the organisation's Microsoft tenant?"""
    return vendor_code == vendor_api.MICROSOFT


def order_status(session: Session, org_id: int, vendor_code: str | None) -> str:
    """What an order of this vendor still needs: "" (nothing), "missing" (link or create the
    tenant first) or "unconfirmed" (a connector orders only into a confirmed tenant)."""
    if not required_for(vendor_code):
        return ""
    row = _row(session, org_id)
    if row is None:
        return "missing"
    if row.verified_at is None and vendor_api.connector_for(vendor_code) is not None:
        return "unconfirmed"
    return ""


def require_for_order(status: str) -> None:
    """Conflict for what :func:`order_status` says is missing."""
    if status == "missing":
        raise Conflict("link or create the organisation's Microsoft tenant first", key="error.tenant.required")
    if status == "unconfirmed":
        raise Conflict("the Microsoft tenant is not confirmed yet", key="error.tenant.unconfirmed")


def tenant_id_of(session: Session, org_id: int) -> str | None:
    """The organisation's confirmed tenant id (what a connector orders into), or None."""
    row = _row(session, org_id)
    return row.tenant_id if row is not None and row.verified_at is not None else None


# --- linking or creating ----------------------------------------------------------------------------


def _begin(session: Session, actor: Actor | None, accepted: Any) -> tuple[authz.Access, Organisation, User]:
    """Owner/Administrator, the agreement accepted, the organisation (locked) active and without a
    tenant yet."""
    access = authz.can_write(session, actor)
    if accepted is not True:
        raise InvalidInput("the Microsoft Customer Agreement must be accepted", field="accepted",
                           key="error.tenant.agreement")
    org = ledger.lock_organisation(session, access.org_id)
    if not org.is_active:
        raise Conflict("the organisation is deactivated", key="error.tenant.org_inactive")
    if has_tenant(session, access.org_id):
        raise Conflict("the organisation has a Microsoft tenant already", key="error.tenant.already_linked")
    return access, org, session.get(User, access.user_id)


def _save(session: Session, access: authz.Access, user: User, now: datetime, *, domain: str | None,
          tenant_id: str | None, verified: bool, is_new: bool, directory) -> MicrosoftTenant:
    name = user.name or user.email
    row = MicrosoftTenant(org_id=access.org_id, domain=domain, tenant_id=tenant_id, linked_by=user.id, linked_at=now,
                          verified_at=now if verified else None, is_new=is_new, agreement_name=name,
                          agreement_email=user.email, agreement_accepted_at=now)
    if verified and directory is not None:
        _send_agreement(directory, row, session.get(Organisation, access.org_id), now)
    session.add(row)
    session.flush()
    audit.record(session, access.actor, "microsoft.tenant_created" if is_new else "microsoft.tenant_linked",
                 created_at=now, domain=domain or "", tenant_id=tenant_id or "", verified=verified,
                 agreement_name=name, agreement_email=user.email,
                 agreement_confirmed=row.agreement_confirmed_at is not None)
    return row


def _commit(session: Session) -> None:
    try:
        session.commit()
    except IntegrityError:  # the organisation linked one at the same moment (another request)
        session.rollback()
        raise Conflict("the organisation has a Microsoft tenant already", key="error.tenant.already_linked") from None


def link(session: Session, actor: Actor | None, reference: Any, *, accepted: Any,
         now: datetime | None = None) -> TenantView:
    """Claim the organisation's existing Microsoft tenant and accept, as the acting member, the
    Microsoft Customer Agreement (Owner/Administrator). It stays a claim until the operator, who
    checks with the customer that they control it, confirms it (:func:`confirm`). Commits;
    nothing is written on error."""
    now = clock.aware(now) if now else clock.utcnow()
    domain, tenant_id = parse_reference(reference)
    try:
        access, _org, user = _begin(session, actor, accepted)
        # a claim, whatever the directory knows: that a tenant is one of the reseller's customers
        # does not show that this customer controls it (review of 29c1d87), and asking would tell
        # the customer whose tenant a reference is
        _save(session, access, user, now, domain=domain, tenant_id=tenant_id, verified=False, is_new=False,
              directory=None)
        _commit(session)
    except BaseException:
        session.rollback()
        raise
    return tenant_of(session, actor)


def domain_status(session: Session, actor: Actor | None, prefix: Any) -> str:
    """Is ``<prefix>.onmicrosoft.com`` free for a new tenant? "available", "taken", or "unknown"
    (no Partner Center here: the operator checks when creating it). Owner/Administrator."""
    authz.can_write(session, actor)
    prefix = parse_prefix(prefix)
    session.rollback()  # nothing held while Microsoft answers
    directory = vendor_api.tenant_directory()
    if directory is None:
        return "unknown"
    return "available" if directory.domain_available(prefix) else "taken"


def create(session: Session, actor: Actor | None, prefix: Any, *, accepted: Any,
           now: datetime | None = None) -> Created:
    """Ask for a new Microsoft tenant ``<prefix>.onmicrosoft.com`` for the organisation, with its
    details (name, tax id, address, phone: Microsoft requires them for Uzbekistan), and accept the
    Microsoft Customer Agreement as the acting member (Owner/Administrator).

    With Partner Center: a taken domain is refused; the tenant is created and confirmed, and the
    administrator account Microsoft made is returned once. When Microsoft does not answer, the
    request is kept as a claim for the operator (it may have been created; it is never created
    twice). Without Partner Center: kept for the operator, who creates it with the first order.
    Commits; nothing is written on a refusal."""
    now = clock.aware(now) if now else clock.utcnow()
    prefix = parse_prefix(prefix)
    domain = f"{prefix}.{INITIAL_DOMAIN}"
    try:
        access, org, user = _begin(session, actor, accepted)
        missing = [f for f in ("tax_id", "address", "phone") if not (getattr(org, f) or "").strip()]
        if missing:
            raise InvalidInput("Microsoft needs the organisation's tax id, address and phone",
                               field="details", key="error.tenant.details_missing", missing=", ".join(missing))
        directory = vendor_api.tenant_directory()
        created = None
        if directory is not None:
            if not directory.domain_available(prefix):
                raise InvalidInput(f"{domain} is taken", field="prefix", key="error.tenant.domain_taken",
                                   domain=domain)
            try:
                created = directory.create_customer(customer_details(org, user, prefix))
            except _NO_ANSWER:
                created = None  # it may exist now: the operator reconciles the claim, nothing is retried
        tenant_id = parse_tenant_id(created.tenant_id) if created is not None else None
        _save(session, access, user, now, domain=domain, tenant_id=tenant_id, verified=tenant_id is not None,
              is_new=True, directory=directory)
        _commit(session)
    except BaseException:
        session.rollback()
        raise
    view = tenant_of(session, actor)
    if created is None:
        return Created(view)
    return Created(view, admin_user=created.admin_user, admin_password=created.admin_password)


def _names(full: str) -> tuple[str, str]:
    first, _, last = (full or "").strip().partition(" ")
    return first, (last.strip() or first)


def customer_details(org: Organisation, user: User, prefix: str) -> vendor_api.CustomerDetails:
    """What Partner Center's create-a-customer is sent: the organisation's details, the acting
    member as the contact."""
    first, last = _names(user.name or user.email.split("@")[0])
    return vendor_api.CustomerDetails(
        domain_prefix=prefix, company_name=org.name, email=user.email, phone=org.phone, first_name=first,
        last_name=last, address_line1=org.address[:250], city=_city(org), tax_id=org.tax_id)


def _city(org: Organisation) -> str:
    """The city of the organisation's address: the part before the first comma that names one
    (``г. Ташкент, ул. ...``), else the time zone's city."""
    for part in org.address.split(","):
        part = part.strip()
        if part.lower().startswith(("г.", "г ", "shahar", "city")):
            return part.split(" ", 1)[-1].strip(". ") or part
    return (org.timezone or "Asia/Tashkent").rsplit("/", 1)[-1].replace("_", " ")


def _send_agreement(directory, row: MicrosoftTenant, org: Organisation | None, now: datetime) -> None:
    """Tell Partner Center the customer accepted the agreement; when it cannot be told (App+User
    credentials missing, no answer) the acceptance stays recorded here for the operator."""
    first, last = _names(row.agreement_name)
    try:
        directory.accept_customer_agreement(row.tenant_id, first, last, row.agreement_email,
                                            org.phone if org else "", row.agreement_accepted_at)
    except Exception:  # noqa: BLE001 - the tenant exists at Microsoft now: it must be recorded, whatever this says
        log.warning("the Microsoft Customer Agreement of tenant %s was not confirmed at Partner Center", row.tenant_id,
                    exc_info=True)
        return
    row.agreement_confirmed_at = now


# --- the operator ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    org_id: int
    org_name: str
    domain: str
    tenant_id: str
    is_new: bool
    linked_at: datetime
    agreement: str  # name <e-mail>


def unconfirmed(session: Session, limit: int = 200) -> list[Claim]:
    """Tenants waiting for the operator, oldest first."""
    rows = session.exec(select(MicrosoftTenant, Organisation).join(Organisation)
                        .where(col(MicrosoftTenant.verified_at).is_(None))
                        .order_by(col(MicrosoftTenant.linked_at), col(MicrosoftTenant.id)).limit(limit)).all()
    out = [Claim(t.org_id, o.name, t.domain or "", t.tenant_id or "", t.is_new, t.linked_at,
                 f"{t.agreement_name} <{t.agreement_email}>") for t, o in rows]
    session.commit()
    return out


def confirm_locked(session: Session, org_id: int, tenant_id: Any, *, operator: str, now: datetime) -> MicrosoftTenant:
    """The operator found (or created) the organisation's tenant at Microsoft under ``tenant_id``:
    the claim is confirmed. A confirmed tenant keeps its id (Conflict for another). Inside the
    caller's transaction, the organisation locked."""
    canonical = parse_tenant_id(tenant_id)
    if canonical is None:
        raise InvalidInput("a tenant id is a GUID", field="tenant_id", key="error.tenant.reference")
    row = _row(session, org_id)
    if row is None:
        raise NotFound(f"organisation {org_id} has no Microsoft tenant", key="error.tenant.none")
    elsewhere = session.exec(select(MicrosoftTenant.org_id).where(
        MicrosoftTenant.tenant_id == canonical, col(MicrosoftTenant.verified_at).is_not(None),
        MicrosoftTenant.org_id != org_id)).first()
    if elsewhere is not None:  # one tenant's subscriptions belong to one customer
        raise Conflict(f"tenant {canonical} is confirmed for organisation {elsewhere}",
                       key="error.tenant.confirmed_elsewhere", org_id=elsewhere)
    if row.verified_at is not None:
        if row.tenant_id != canonical:
            raise Conflict(f"organisation {org_id}'s tenant is confirmed as {row.tenant_id}",
                           key="error.tenant.confirmed_other")
        return row
    row.tenant_id, row.verified_at = canonical, now
    session.add(row)
    try:  # the index says it too, also when another confirmation of this id runs at the same moment
        with session.begin_nested():
            session.flush()
    except IntegrityError:
        raise Conflict(f"tenant {canonical} is confirmed for another organisation",
                       key="error.tenant.confirmed_elsewhere") from None
    audit.record(session, Actor.system(org_id), "microsoft.tenant_confirmed", created_at=now, domain=row.domain or "",
                 tenant_id=canonical, operator=operator)
    return row


def confirm(session: Session, org_id: Any, tenant_id: Any, *, operator: str, now: datetime | None = None) -> Claim:
    """``tenants confirm``: :func:`confirm_locked` in its own transaction. Commits."""
    now = clock.aware(now) if now else clock.utcnow()
    operator = (operator or "").strip()[:255]
    if not operator:
        raise InvalidInput("the operator's name is required", field="operator", key="error.provisioning.operator")
    try:
        org_id = int(str(org_id).strip())
    except ValueError:
        raise NotFound("no such organisation", key="error.not_found") from None
    try:
        if session.get(Organisation, org_id) is None:
            raise NotFound("no such organisation", key="error.not_found")
        org = ledger.lock_organisation(session, org_id)
        row = confirm_locked(session, org_id, tenant_id, operator=operator, now=now)
        claim = Claim(org_id, org.name, row.domain or "", row.tenant_id or "", row.is_new, row.linked_at,
                      f"{row.agreement_name} <{row.agreement_email}>")
        session.commit()
    except BaseException:
        session.rollback()
        raise
    return claim


__all__ = ["Claim", "Created", "TenantView", "confirm", "confirm_locked", "create",
           "customer_details", "domain_status", "has_tenant", "link", "order_status", "require_for_order", "tenant_id_of",
           "parse_prefix", "parse_reference", "parse_tenant_id", "required_for", "tenant_of", "tenant_of_org", "unconfirmed"]
