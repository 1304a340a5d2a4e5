"""What the electronic invoice (ЭСФ) of a closing document needs, kept as it was when the document
was issued (``ClosingDocument.esf_record``, a JSON column), so the ЭСФ of an act issued last month
is the same file tomorrow as today, whatever the customer, support or the catalog change meanwhile:

- ``buyer``: the organisation's name, tax id, address, VAT registration code, bank МФО and account,
  director and billing currency — the name, tax id and address the act's PDF shows;
- ``seller``: the reseller's requisites from the settings (``PANEL_SELLER_*``);
- ``contract``: the organisation's contract (number, date) or, without one, the public offer of the
  settings (``source``: organisation | offer);
- ``vat_rate``: the rate the document's VAT was computed with (``PANEL_VAT_RATE`` then);
- ``lines``: each line of the act (description, quantity, unit, amount, VAT) with the subscription
  and the product it billed *then* (its id, name, ИКПУ/MXIK and package code and names), not the
  plan the subscription has now.

Decimals are written as text, dates as ISO text. :func:`take` builds a record from the lines of
``documents.month_lines_with_subscriptions``; ``documents`` stores it with the document and
``esf`` makes the files from it (and, before a month closes, checks one taken from today's data).
This module imports neither of them.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlmodel import Session, col, select

from noventiq_panel.config import Settings, get_settings
from noventiq_panel.models import Organisation, Plan, Product, Subscription

VERSION = 1
BUYER_FIELDS = ("name", "tax_id", "address", "vat_reg_code", "bank_mfo", "bank_account", "director")
SELLER_FIELDS = ("name", "tax_id", "address", "vat_reg_code", "bank_mfo", "bank_account", "director")
PRODUCT_FIELDS = ("mxik_code", "mxik_name", "package_code", "package_name")


def buyer(org: Organisation) -> dict[str, Any]:
    """The organisation's requisites an ЭСФ names, as they are now."""
    return {**{name: (getattr(org, name) or "") for name in BUYER_FIELDS}, "currency": org.billing_currency}


def seller(settings: Settings | None = None) -> dict[str, Any]:
    """The reseller's requisites from the settings, as they are now."""
    s = settings or get_settings()
    return {"name": s.seller_name, "tax_id": s.seller_tax_id, "address": s.seller_address,
            "vat_reg_code": s.seller_vat_reg_code, "bank_mfo": s.seller_mfo, "bank_account": s.seller_account,
            "director": s.seller_director, "accountant": s.seller_accountant,
            "vat_reg_status": s.seller_vat_reg_status}


def contract(org: Organisation, settings: Settings | None = None) -> dict[str, Any]:
    """The organisation's contract, or (without one) the public offer of the settings, as now."""
    s = settings or get_settings()
    if org.contract_no:
        return {"no": org.contract_no, "date": org.contract_date.isoformat() if org.contract_date else "",
                "source": "organisation"}
    return {"no": s.seller_offer_no or "", "date": (s.seller_offer_date or "").strip(), "source": "offer"}


def product(p: Product | None) -> dict[str, Any] | None:
    if p is None:
        return None
    return {"id": p.id, "name": p.name, **{name: (getattr(p, name) or "") for name in PRODUCT_FIELDS}}


def products_of(session: Session, subscription_ids: set[int]) -> dict[int, Product]:
    """The product each subscription's plan belongs to now (at issue: the product the line billed)."""
    if not subscription_ids:
        return {}
    rows = session.exec(
        select(Subscription.id, Product)
        .join(Plan, Plan.id == Subscription.plan_id)
        .join(Product, Product.id == Plan.product_id)
        .where(col(Subscription.id).in_(subscription_ids))
    ).all()
    return {sub_id: p for sub_id, p in rows}


def take(session: Session, org: Organisation, lines: list, subscriptions: list[int | None], *,
         vat_rate: Decimal, now: datetime | None = None, settings: Settings | None = None) -> dict[str, Any]:
    """The record of a document with ``lines`` (``pdf.Line``) billing ``subscriptions`` (one id or None
    per line), from the organisation, the settings and the catalog as they are now. Reads only."""
    s = settings or get_settings()
    found = products_of(session, {sub for sub in subscriptions if sub})
    rows = []
    for line, sub_id in zip(lines, subscriptions):
        rows.append({
            "description": line.description,
            "quantity": f"{Decimal(line.quantity).normalize():f}",
            "unit": line.unit,
            "amount": f"{Decimal(line.amount):f}",
            "vat": f"{Decimal(line.vat):f}",
            "subscription_id": sub_id,
            "product": product(found.get(sub_id) if sub_id else None),
        })
    return {
        "version": VERSION,
        "taken_at": now.isoformat() if now else None,
        "vat_rate": f"{Decimal(vat_rate).normalize():f}",
        "buyer": buyer(org),
        "seller": seller(s),
        "contract": contract(org, s),
        "lines": rows,
    }


def iso_date(value: Any) -> date | None:
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value).strip())
    except ValueError:
        return None


__all__ = ["BUYER_FIELDS", "PRODUCT_FIELDS", "SELLER_FIELDS", "VERSION", "buyer", "contract", "iso_date",
           "product", "products_of", "seller", "take"]
