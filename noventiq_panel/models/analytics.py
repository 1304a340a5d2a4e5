"""The daily roll-up of pay-as-you-go usage that the analytics pages and reports read.

``UsageDaily`` holds one row per subscription, organisation-local day, service (meter category),
resource group, resource, usage currency and charge category. It is derived data: ``services.usage.rollup.
refresh_daily_rollup`` rebuilds the rows of the (subscription, day) pairs it is given from the
usage records, and is called by the usage importer and by the rating job (whose ledger entries
carry the rate used). Reading it instead of the raw records keeps the IaaS detail of one
organisation fast however fine-grained (hourly, per meter) its records are.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Optional

from sqlalchemy import Index
from sqlmodel import Field, SQLModel

from .types import Price, UTCDateTime, utcnow


class UsageDaily(SQLModel, table=True):
    """Usage cost of one (subscription, local day, service, resource group, resource, currency,
    charge category).

    ``cost`` is the customer's price in the usage currency (vendor cost plus the plan's markup);
    ``cost_org`` is the same converted to the organisation's billing currency at the rate used by
    rating (the day's rate for records not rated yet); ``None`` when no rate is known yet.
    Amounts keep 6 decimals: the ledger rounds, the roll-up does not.
    """

    __table_args__ = (
        Index("ix_usagedaily_org_day", "org_id", "day"),
        Index("ix_usagedaily_sub_day", "subscription_id", "day"),
    )

    id: Optional[int] = Field(default=None, primary_key=True)
    org_id: int = Field(foreign_key="organisation.id")
    subscription_id: int = Field(foreign_key="subscription.id")
    day: date  # organisation-local calendar day of the records' period_start
    service: str = Field(default="", max_length=128)
    resource_group: str = Field(default="", max_length=255)
    resource_id: str = Field(default="", max_length=500)
    resource_name: str = Field(default="", max_length=255)
    cost: Decimal = Field(default=Decimal("0"), sa_type=Price)
    currency: str = Field(default="USD", max_length=3)
    # the records' charge category (``UsageRecord.charge_category``); ``rollup.is_credit`` says
    # which rows are credits
    charge_category: str = Field(default="Usage", max_length=32, sa_column_kwargs={"server_default": "Usage"})
    cost_org: Optional[Decimal] = Field(default=None, sa_type=Price)
    org_currency: str = Field(default="UZS", max_length=3)
    records: int = Field(default=0)
    refreshed_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


__all__ = ["UsageDaily"]
