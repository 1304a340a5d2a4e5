"""An organisation's Microsoft tenant and its acceptance of the Microsoft Customer Agreement."""

from __future__ import annotations

from datetime import datetime
from typing import Optional

from sqlalchemy import Index
from sqlmodel import Field, SQLModel

from .types import UTCDateTime, utcnow


class MicrosoftTenant(SQLModel, table=True):
    """The Microsoft tenant (Entra ID directory) an organisation says its Microsoft subscriptions
    belong to: its initial ``…onmicrosoft.com`` ``domain`` or its ``tenant_id`` (GUID), lower case.

    One per organisation (``org_id`` unique). It is a **claim** until Microsoft confirms it
    (``verified_at``): the panel cannot prove who controls a tenant, so a claim locks nobody out —
    several customers may claim one tenant, and none of them is told of the others.
    ``agreement_*``: the member who accepted the Microsoft Customer Agreement for the organisation
    (the acting user: their name and verified e-mail) and when."""

    __table_args__ = (Index("ix_microsofttenant_domain", "domain"), Index("ix_microsofttenant_tenant", "tenant_id"))

    id: Optional[int] = Field(default=None, primary_key=True)
    org_id: int = Field(foreign_key="organisation.id", unique=True)
    domain: Optional[str] = Field(default=None, max_length=255)
    tenant_id: Optional[str] = Field(default=None, max_length=36)
    verified_at: Optional[datetime] = Field(default=None, sa_type=UTCDateTime)  # confirmed by Microsoft
    linked_by: Optional[int] = Field(default=None, foreign_key="user.id")
    linked_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    agreement_name: str = Field(max_length=255)
    agreement_email: str = Field(max_length=254)
    agreement_accepted_at: datetime = Field(sa_type=UTCDateTime)


__all__ = ["MicrosoftTenant"]
