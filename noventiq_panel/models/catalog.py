"""Vendors, products, plans and exchange rates."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Optional

from sqlalchemy import JSON, UniqueConstraint
from sqlmodel import Field, SQLModel

from .types import Price, UTCDateTime, utcnow


class BillingType(StrEnum):
    LICENSE = "license"  # per seat, a term of a month or a year
    PAYG = "payg"  # pay-as-you-go, metered


class Term(StrEnum):
    MONTH = "month"
    YEAR = "year"


class BillingFrequency(StrEnum):
    MONTHLY = "monthly"  # a charge every month of the term
    UPFRONT = "upfront"  # the whole term at once


class Granularity(StrEnum):
    HOUR = "hour"
    DAY = "day"


class Vendor(SQLModel, table=True):
    id: Optional[int] = Field(default=None, primary_key=True)
    code: str = Field(max_length=64, unique=True)
    name: str = Field(max_length=255)
    portal_url: str = Field(default="", max_length=500)


class Product(SQLModel, table=True):
    id: Optional[int] = Field(default=None, primary_key=True)
    code: str = Field(max_length=64, unique=True)
    vendor_id: int = Field(foreign_key="vendor.id", index=True)
    name: str = Field(max_length=255)
    category: str = Field(default="", max_length=128, index=True)
    description: str = Field(default="")
    activation_md: str = Field(default="")  # activation instructions, Markdown
    is_active: bool = Field(default=True)
    sort_order: int = Field(default=0)
    # Electronic invoices (services/billing/esf.py): the product's ИКПУ/MXIK code (17 digits) and
    # its name in the classifier (tasnif.soliq.uz), the package (unit) code and name of that code.
    mxik_code: str = Field(default="", max_length=17)
    mxik_name: str = Field(default="", max_length=500)
    package_code: str = Field(default="", max_length=20)
    package_name: str = Field(default="", max_length=255)


class Plan(SQLModel, table=True):
    """A billing variant of a product.

    ``price`` is per seat for one whole term (month or year) in ``currency``; a yearly plan billed
    monthly charges price/12 each month. Pay-as-you-go plans have no seat price: usage records carry
    their cost, ``usage_markup_pct`` is added when rating.
    """

    id: Optional[int] = Field(default=None, primary_key=True)
    code: str = Field(max_length=64, unique=True)
    product_id: int = Field(foreign_key="product.id", index=True)
    name: str = Field(max_length=255)
    billing_type: str = Field(default=BillingType.LICENSE, max_length=16)
    term: Optional[str] = Field(default=None, max_length=8)  # licence plans: month | year
    billing_frequency: Optional[str] = Field(default=None, max_length=16)  # licence plans: monthly | upfront
    granularity: Optional[str] = Field(default=None, max_length=8)  # payg only
    price: Decimal = Field(default=Decimal("0"), sa_type=Price)
    currency: str = Field(default="USD", max_length=3)
    usage_markup_pct: Decimal = Field(default=Decimal("0"), sa_type=Price)
    # Pay-as-you-go: the expected cost of a first month (plan currency); a prepaid organisation needs
    # this much on its balance to order (None: the PANEL_PAYG_DEPOSIT setting).
    expected_monthly_cost: Optional[Decimal] = Field(default=None, sa_type=Price)
    min_quantity: int = Field(default=1)
    max_quantity: int = Field(default=300)
    trial_days: int = Field(default=0)  # >0: a free trial plan
    trial_max_quantity: int = Field(default=25)
    trial_converts_to: Optional[str] = Field(default=None, max_length=64)  # plan code
    cancellation_window_hours: int = Field(default=168)
    suspendable: bool = Field(default=False)
    allowed_changes: list[str] = Field(default_factory=list, sa_type=JSON)  # plan codes
    is_active: bool = Field(default=True)
    sort_order: int = Field(default=0)
    # the plan's item in the vendor's catalogue, for a connector's order (Partner Center's catalog
    # item id: product:SKU:availability, e.g. "CFQ7TTC0LH18:0001:CFQ7TTC0K5DM"); "" when none
    catalog_item_id: str = Field(default="", max_length=128, sa_column_kwargs={"server_default": ""})


class ExchangeRate(SQLModel, table=True):
    """Units of the base currency (UZS) for one unit of ``currency`` on ``rate_date``."""

    __table_args__ = (UniqueConstraint("currency", "rate_date", name="uq_rate_currency_date"),)

    id: Optional[int] = Field(default=None, primary_key=True)
    currency: str = Field(max_length=3)
    rate_date: date
    rate: Decimal = Field(sa_type=Price)
    source: str = Field(default="cbu", max_length=16)  # cbu | manual | demo
    fetched_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
