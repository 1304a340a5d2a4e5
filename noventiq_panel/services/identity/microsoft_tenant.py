"""An organisation's Microsoft tenant and the Microsoft Customer Agreement (issue 18, first part).

Microsoft subscriptions live in the customer's Microsoft tenant (its Entra ID directory). An Owner
or Administrator links the organisation's existing tenant by its initial domain
(``contoso.onmicrosoft.com``) or its tenant id (a GUID), and accepts the Microsoft Customer
Agreement on the organisation's behalf: who (a name), their e-mail and when are recorded and shown
on the account page (Partner Center asks for the same acceptance when the connector orders).

Rules:
- One tenant per organisation; changing it is support's work (a linked tenant holds subscriptions).
- A link is a **claim** until Microsoft confirms it (``verified_at``; the Partner Center connector
  will: the customer's reseller relationship and agreement are checked there). The panel cannot
  prove who controls a tenant (no sign-in with the tenant's administrator yet), so a claim must
  not lock anyone out: several customers may claim one tenant, by its domain or its id, and
  nobody is told that someone else did (no "taken" answer to probe with). First come, first
  served would let a sign-up squat a real company's tenant for good (review of abe7de3).
- The agreement is accepted by the acting member, explicitly: their name and verified e-mail are
  recorded, never a name typed for someone else.
- A deactivated organisation links nothing.

Not built yet (README, issue 18): confirming a claim (Partner Center, or a Microsoft sign-in of
the tenant's administrator), creating a new tenant (domain availability through Partner Center),
and asking for the tenant in the first Microsoft order.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from noventiq_panel.models import MicrosoftTenant, Organisation, User
from noventiq_panel.services.core import audit, authz, clock
from noventiq_panel.services.core.authz import Actor
from noventiq_panel.services.core.errors import Conflict, InvalidInput

INITIAL_DOMAIN = "onmicrosoft.com"
# the domain's first label as DNS allows it (letters, digits, inner hyphens; at most 63)
_PREFIX = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@dataclass(frozen=True)
class TenantView:
    domain: str
    tenant_id: str
    linked_at: datetime
    linked_by: str  # the member's name or e-mail
    agreement_name: str
    agreement_email: str
    agreement_accepted_at: datetime
    verified: bool  # confirmed by Microsoft (until then a claim)


def parse_reference(raw: Any) -> tuple[str | None, str | None]:
    """(initial domain, tenant id) of what the customer typed: ``name.onmicrosoft.com`` or a tenant
    GUID, in lower case; InvalidInput otherwise (field ``tenant``)."""
    value = raw.strip().lower() if isinstance(raw, str) else ""
    if len(value) > 255 or not value:
        raise InvalidInput("the tenant's domain or id is required", field="tenant", key="error.tenant.reference")
    if _GUID.fullmatch(value) and value.strip("0-"):  # the canonical spelling; not the nil GUID
        return None, str(uuid.UUID(value))
    prefix, dot, rest = value.partition(".")
    if dot and rest == INITIAL_DOMAIN and _PREFIX.fullmatch(prefix):
        return value, None
    raise InvalidInput("not a tenant domain (name.onmicrosoft.com) or tenant id", field="tenant",
                       key="error.tenant.reference")


def tenant_of(session: Session, actor: Actor | None) -> TenantView | None:
    """The organisation's linked tenant (every role may read it), or None."""
    access = authz.can_read(session, actor)
    row = session.exec(select(MicrosoftTenant).where(MicrosoftTenant.org_id == access.org_id)).first()
    if row is None:
        return None
    user = session.get(User, row.linked_by) if row.linked_by else None
    return TenantView(domain=row.domain or "", tenant_id=row.tenant_id or "", linked_at=row.linked_at,
                      linked_by=(user.name or user.email) if user else "",
                      agreement_name=row.agreement_name, agreement_email=row.agreement_email,
                      agreement_accepted_at=row.agreement_accepted_at, verified=row.verified_at is not None)


def has_tenant(session: Session, org_id: int) -> bool:
    return session.exec(select(MicrosoftTenant.id).where(MicrosoftTenant.org_id == org_id)).first() is not None


def link(session: Session, actor: Actor | None, reference: Any, *, accepted: Any,
         now: datetime | None = None) -> TenantView:
    """Claim the organisation's existing Microsoft tenant and accept, as the acting member, the
    Microsoft Customer Agreement (Owner/Administrator). Commits; nothing is written on error."""
    now = clock.aware(now) if now else clock.utcnow()
    access = authz.can_write(session, actor)
    domain, tenant_id = parse_reference(reference)
    if accepted is not True:
        raise InvalidInput("the Microsoft Customer Agreement must be accepted", field="accepted",
                           key="error.tenant.agreement")
    try:
        org = session.get(Organisation, access.org_id)
        if org is None or not org.is_active:
            raise Conflict("the organisation is deactivated", key="error.tenant.org_inactive")
        if has_tenant(session, access.org_id):
            raise Conflict("the organisation has a Microsoft tenant already", key="error.tenant.already_linked")
        user = session.get(User, access.user_id)
        name = user.name or user.email
        session.add(MicrosoftTenant(org_id=access.org_id, domain=domain, tenant_id=tenant_id, linked_by=user.id,
                                    linked_at=now, agreement_name=name, agreement_email=user.email,
                                    agreement_accepted_at=now))
        session.flush()
        audit.record(session, access.actor, "microsoft.tenant_linked", created_at=now, domain=domain or "",
                     tenant_id=tenant_id or "", agreement_name=name, agreement_email=user.email)
        session.commit()
    except IntegrityError:  # the organisation linked one at the same moment (another request)
        session.rollback()
        raise Conflict("the organisation has a Microsoft tenant already", key="error.tenant.already_linked") from None
    except BaseException:
        session.rollback()
        raise
    return tenant_of(session, actor)
