"""An organisation's Microsoft tenant and its acceptance of the Microsoft Customer Agreement."""

from __future__ import annotations

from datetime import datetime
from typing import Optional

from sqlmodel import Field, SQLModel

from .types import UTCDateTime, utcnow


class MicrosoftTenant(SQLModel, table=True):
    """The Microsoft tenant (Entra ID directory) an organisation's Microsoft subscriptions belong to.

    One per organisation (``org_id`` unique), and a tenant belongs to one customer: ``domain`` (its
    initial ``…onmicrosoft.com`` domain, lower case) and ``tenant_id`` (its GUID, lower case) are
    unique where set, so nobody can claim a tenant another customer has linked. ``agreement_*``:
    who accepted the Microsoft Customer Agreement for the organisation, their e-mail and when
    (Partner Center records the same acceptance)."""

    id: Optional[int] = Field(default=None, primary_key=True)
    org_id: int = Field(foreign_key="organisation.id", unique=True)
    domain: Optional[str] = Field(default=None, max_length=255, unique=True)
    tenant_id: Optional[str] = Field(default=None, max_length=36, unique=True)
    linked_by: Optional[int] = Field(default=None, foreign_key="user.id")
    linked_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    agreement_name: str = Field(max_length=255)
    agreement_email: str = Field(max_length=254)
    agreement_accepted_at: datetime = Field(sa_type=UTCDateTime)


__all__ = ["MicrosoftTenant"]
