"""An organisation's Microsoft tenant and its acceptance of the Microsoft Customer Agreement."""

from __future__ import annotations

from datetime import datetime
from typing import Optional

from sqlalchemy import Index, text
from sqlmodel import Field, SQLModel

from .types import UTCDateTime, utcnow


class MicrosoftTenant(SQLModel, table=True):
    """The Microsoft tenant (Entra ID directory) an organisation says its Microsoft subscriptions
    belong to: its initial ``…onmicrosoft.com`` ``domain`` or its ``tenant_id`` (GUID), lower case.

    One per organisation (``org_id`` unique). It is a **claim** until Microsoft confirms it
    (``verified_at``): the panel cannot prove who controls a tenant, so a claim locks nobody out —
    several customers may claim one tenant, and none of them is told of the others.
    ``is_new``: the customer asked the reseller to create the tenant (``domain``).
    ``agreement_*``: the member who accepted the Microsoft Customer Agreement for the organisation
    (the acting user: their name and verified e-mail) and when; ``agreement_confirmed_at``: when
    Partner Center took the acceptance (confirm-customer-consent-customer-agreement)."""

    __table_args__ = (
        Index("ix_microsofttenant_domain", "domain"),
        Index("ix_microsofttenant_tenant", "tenant_id"),
        # a tenant is confirmed for one organisation only (claims may be many)
        Index("ux_microsofttenant_confirmed", "tenant_id", unique=True,
              sqlite_where=text("verified_at IS NOT NULL"), postgresql_where=text("verified_at IS NOT NULL")),
    )

    id: Optional[int] = Field(default=None, primary_key=True)
    org_id: int = Field(foreign_key="organisation.id", unique=True)
    domain: Optional[str] = Field(default=None, max_length=255)
    tenant_id: Optional[str] = Field(default=None, max_length=36)
    verified_at: Optional[datetime] = Field(default=None, sa_type=UTCDateTime)  # confirmed by Microsoft
    # the customer asked for a new tenant with this domain (created by Partner Center, or by the
    # operator when the first Microsoft order is carried out)
    is_new: bool = Field(default=False)
    linked_by: Optional[int] = Field(default=None, foreign_key="user.id")
    linked_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    agreement_name: str = Field(max_length=255)
    agreement_email: str = Field(max_length=254)
    agreement_accepted_at: datetime = Field(sa_type=UTCDateTime)
    agreement_confirmed_at: Optional[datetime] = Field(default=None, sa_type=UTCDateTime)  # told to Microsoft


__all__ = ["MicrosoftTenant"]
