"""Pay-as-you-go usage records as imported from the vendor's billing exports, and what rating keeps.

Rating (``services/usage/rating.py``) never writes to the records: it remembers, per subscription, the
highest record id it has charged (``RatingWatermark``). Record ids only grow (a sequence on
PostgreSQL, ``AUTOINCREMENT`` on SQLite) and rating locks out imports while it reads, so "id above
the watermark" is exactly "not charged yet". The exchange rate of a usage day is fixed the first
time that day is charged (``UsageFxRate``), so every record of a day has one rate and analytics,
exports and later charges of late records use the same one.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Optional

from sqlalchemy import Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from .types import Price, UTCDateTime, utcnow


class UsageRecord(SQLModel, table=True):
    """Usage of one meter on one resource over [period_start, period_end).

    ``cost`` is in ``currency`` (the vendor's price, before markup and conversion). ``source_key``
    is unique so that re-importing the same export adds nothing; a corrected line is recorded as
    a second record of the difference (same ``line_key``). Records are never updated or deleted: the ledger entry that charged a record is the usage entry of its subscription, period
    and currency whose ``meta.max_record_id`` is the first at or above the record's id.

    A usage entry's period is the organisation's local day (hourly plans too). Its meta: ``records``
    (how many records it settles), ``max_record_id``, ``cost_micro`` (their cost, micro-units of
    the usage currency), ``not_billed`` (``suspended``/``trial``: settled at 0), ``capped`` and
    ``uncredited`` (a credit cut to what was charged). ``records_from``/``records_until`` (ISO,
    UTC) mark an entry of part of its day — a day cut where a suspension begins or a trial ends —
    and hold the records starting in [records_from, records_until); an entry of the whole day has
    neither.
    """

    __table_args__ = (
        # rating: a subscription's records above its watermark, and where in time they start
        Index("ix_usage_sub_id", "subscription_id", "id", "period_start"),
        # rating's GROUP BY reads only this index (and analytics its first two columns)
        Index("ix_usage_rating", "subscription_id", "period_start", "currency", "cost"),
        Index("ix_usage_org_period", "org_id", "period_start"),
        Index("ix_usage_line_key", "line_key"),  # corrections: the earlier records of an export line
        {"sqlite_autoincrement": True},
    )

    id: Optional[int] = Field(default=None, primary_key=True)
    org_id: int = Field(foreign_key="organisation.id")
    subscription_id: int = Field(foreign_key="subscription.id")
    period_start: datetime = Field(sa_type=UTCDateTime)
    period_end: datetime = Field(sa_type=UTCDateTime)
    service: str = Field(default="", max_length=128)  # meter category / ServiceName
    meter: str = Field(default="", max_length=255)
    resource_group: str = Field(default="", max_length=255)
    resource_id: str = Field(default="", max_length=500)
    resource_name: str = Field(default="", max_length=255)
    quantity: Decimal = Field(default=Decimal("0"), sa_type=Price)
    unit: str = Field(default="", max_length=64)
    cost: Decimal = Field(default=Decimal("0"), sa_type=Price)
    currency: str = Field(default="USD", max_length=3)
    # FOCUS ChargeCategory / Azure ChargeType as the export names it (``usage_formats.charge_category``):
    # Usage, Purchase, Credit, Adjustment, Refund, ... A credit is a record with a negative cost.
    charge_category: str = Field(default="Usage", max_length=32, sa_column_kwargs={"server_default": "Usage"})
    source: str = Field(default="import", max_length=16)
    source_key: str = Field(max_length=64, unique=True)
    # The export line's identity without its figures (cost, quantity, prices) and without what a
    # vendor fills in later (invoice id): a corrected re-export of the line has the same line_key,
    # and the importer records the difference (services/usage/usage_import.py). NULL before migration 0004.
    line_key: Optional[str] = Field(default=None, max_length=32)
    imported_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class RatingWatermark(SQLModel, table=True):
    """The highest usage record id of a subscription that rating has settled (charged, or settled
    as not billable); every record of the subscription with an id at or below it is settled."""

    subscription_id: int = Field(primary_key=True, foreign_key="subscription.id",
                                 sa_column_kwargs={"autoincrement": False})
    last_record_id: int = Field(default=0)
    rated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class UsageFxRate(SQLModel, table=True):
    """The rate at which usage of ``day`` (the organisation's local day) in ``currency`` is charged
    in ``billing_currency``: units of the billing currency per unit, 6 decimals. Written the first
    time such usage is charged and never changed, so a rate published late does not price the
    rest of an already charged day differently."""

    __table_args__ = (UniqueConstraint("currency", "billing_currency", "day", name="uq_usagefx_day"),)

    id: Optional[int] = Field(default=None, primary_key=True)
    currency: str = Field(max_length=3)
    billing_currency: str = Field(max_length=3)
    day: date
    rate: Decimal = Field(sa_type=Price)
    fixed_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


__all__ = ["UsageRecord", "RatingWatermark", "UsageFxRate"]
