"""The catalog: products by category and vendor, their plans (billing variants) and prices.

Prices are kept in the plan's currency; the catalog also shows them in the organisation's billing
currency at the rate in force today (organisation's time zone), rounded for display only — the
ledger converts again at the moment of a charge and stores the rate it used.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from sqlmodel import Session, col, select

from noventiq_panel.models import Organisation, Plan, Product, Vendor
from noventiq_panel.services.core import authz, clock, proration, rates
from noventiq_panel.services.core.authz import Actor
from noventiq_panel.services.core.errors import InvalidInput, NotFound, RateMissing
from noventiq_panel.services.core.money import round_money

MAX_SEARCH = 100


@dataclass(frozen=True)
class PlanInfo:
    """A plan with its product and vendor (what services need to price and provision)."""

    plan: Plan
    product: Product
    vendor: Vendor


def _active_plan_query():
    return (
        select(Plan, Product, Vendor)
        .join(Product, Product.id == Plan.product_id)
        .join(Vendor, Vendor.id == Product.vendor_id)
    )


def get_plan(session: Session, plan_id, *, active_only: bool = True) -> PlanInfo:
    """The plan with this id (with product and vendor); NotFound if missing or withdrawn."""
    plan_id = authz.parse_id(plan_id, "plan", key="error.plan_not_found")
    row = session.exec(_active_plan_query().where(Plan.id == plan_id)).first()
    if row is None or (active_only and not (row[0].is_active and row[1].is_active)):
        raise NotFound("plan not found", key="error.plan_not_found")
    return PlanInfo(*row)


def get_plan_by_code(session: Session, code, *, active_only: bool = True) -> PlanInfo:
    """The plan with this code; NotFound if missing or withdrawn."""
    if not isinstance(code, str) or not code.strip():
        raise NotFound("plan not found", key="error.plan_not_found")
    row = session.exec(_active_plan_query().where(Plan.code == code.strip())).first()
    if row is None or (active_only and not (row[0].is_active and row[1].is_active)):
        raise NotFound("plan not found", key="error.plan_not_found")
    return PlanInfo(*row)


def convert_price(session: Session, amount: Decimal, currency: str, org: Organisation, day: date) -> tuple[Decimal, Decimal]:
    """``amount`` in ``currency`` → (amount in the org's currency unrounded, rate used). RateMissing
    when no rate is known on or before ``day``."""
    return rates.convert_amount(session, Decimal(amount), currency, org.billing_currency, day)


def _price_view(session: Session, amount: Decimal, currency: str, org: Organisation, day: date) -> Decimal | None:
    try:
        converted, _rate = convert_price(session, amount, currency, org, day)
    except RateMissing:
        return None
    return round_money(converted, org.billing_currency)


def _text(value) -> str | None:
    """Enum members (set as defaults before a row is reloaded) as their plain values."""
    return None if value is None else str(value)


def plan_view(session: Session, plan: Plan, org: Organisation, day: date) -> dict:
    """A plain dict for pages: prices per seat and term, per billing period, and in org currency."""
    is_payg = plan.billing_type == "payg"
    per_period = Decimal("0") if is_payg else proration.period_price(plan.price, plan.term, plan.billing_frequency)
    return {
        "id": plan.id,
        "code": plan.code,
        "name": plan.name,
        "billing_type": _text(plan.billing_type),
        "term": _text(plan.term),
        "billing_frequency": _text(plan.billing_frequency),
        "granularity": _text(plan.granularity),
        "currency": plan.currency,
        "price": plan.price,
        "period_price": per_period,
        "org_currency": org.billing_currency,
        "price_org": None if is_payg else _price_view(session, plan.price, plan.currency, org, day),
        "period_price_org": None if is_payg else _price_view(session, per_period, plan.currency, org, day),
        "usage_markup_pct": plan.usage_markup_pct,
        "min_quantity": plan.min_quantity,
        "max_quantity": plan.trial_max_quantity if plan.trial_days > 0 else plan.max_quantity,
        "is_trial": plan.trial_days > 0,
        "trial_days": plan.trial_days,
        "trial_converts_to": plan.trial_converts_to,
        "suspendable": plan.suspendable,
        "cancellation_window_hours": plan.cancellation_window_hours,
    }


def _matches(needle: str, *haystack: str) -> bool:
    return any(needle in (text or "").casefold() for text in haystack)


def list_catalog(session: Session, actor: Actor | None, *, search: str = "", category: str | None = None,
                 now: datetime | None = None) -> dict:
    """The active catalog grouped ``category → vendor → product → plans``, priced for the actor's
    organisation. Any member of the organisation may read it.

    ``search`` matches (case-insensitively, Cyrillic included) the category, vendor, product name or
    description, or a plan's name or code; a product matches with all its plans, a plan match keeps
    only the matching plans.
    """
    access = authz.can_read(session, actor)
    return catalog_for(session, session.get(Organisation, access.org_id), search=search, category=category,
                       now=now)


def catalog_for(session: Session, org: Organisation, *, search: str = "", category: str | None = None,
                now: datetime | None = None) -> dict:
    """The grouped catalog with prices converted for ``org`` (which need not be stored: a visitor
    sees the prices of a new customer). Reads only; the caller checks who may see it."""
    if not isinstance(search, str):
        raise InvalidInput("search must be text", field="search", key="error.invalid")
    needle = search.strip().casefold()[:MAX_SEARCH]
    now = clock.aware(now) if now else clock.utcnow()
    day = clock.local_date(now, org.timezone)
    rows = session.exec(
        _active_plan_query()
        .where(Plan.is_active == True, Product.is_active == True)  # noqa: E712
        .order_by(Product.category, Vendor.name, Product.sort_order, Product.name, Plan.sort_order, Plan.id)
    ).all()
    categories: dict[str, dict[str, dict]] = {}
    products: dict[int, dict] = {}
    for plan, product, vendor in rows:
        if category and product.category != category:
            continue
        if needle:
            product_hit = _matches(needle, product.category, vendor.name, product.name, product.description)
            if not product_hit and not _matches(needle, plan.name, plan.code):
                continue
        vendors = categories.setdefault(product.category or "", {})
        vendor_entry = vendors.setdefault(vendor.code, {
            "code": vendor.code, "name": vendor.name, "portal_url": vendor.portal_url, "products": []})
        if product.id not in products:
            products[product.id] = {
                "id": product.id, "code": product.code, "name": product.name, "category": product.category,
                "description": product.description, "vendor": vendor.name, "vendor_code": vendor.code,
                "plans": [], "has_trial": False,
            }
            vendor_entry["products"].append(products[product.id])
        view = plan_view(session, plan, org, day)
        products[product.id]["plans"].append(view)
        products[product.id]["has_trial"] |= view["is_trial"]
    return {
        "currency": org.billing_currency,
        "rate_date": day,
        "categories": [
            {"name": name, "vendors": list(vendors.values())}
            for name, vendors in categories.items()
        ],
        "product_count": len(products),
    }


def list_categories(session: Session) -> list[str]:
    """Categories that have at least one active product (for filters)."""
    rows = session.exec(
        select(Product.category).where(Product.is_active == True).distinct().order_by(Product.category)  # noqa: E712
    ).all()
    return [r for r in rows if r]


def list_vendors(session: Session) -> list[dict]:
    """Vendors (code, name, portal) ordered by name (for filters)."""
    return [{"code": v.code, "name": v.name, "portal_url": v.portal_url}
            for v in session.exec(select(Vendor).order_by(col(Vendor.name))).all()]
