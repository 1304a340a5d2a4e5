"""The invoice to pay as a document: its number, its file name, the VAT it includes and its PDF.

- Numbers come from a gap-free counter per year of the organisation's local date
  (``СЧ-2026-000123``), taken inside the transaction that creates the payment;
  :func:`normalize_number` finds one again in the text a payer typed («сч 2026/123»).
- Prices include VAT: :func:`vat_part` is the VAT inside a gross amount, half-up to the tiyin (the
  closing documents use it per line).
- :func:`render_invoice_pdf` collects the data of one payment (seller from the settings, buyer from
  the organisation) for ``pdf.render_invoice``. It checks no access: its callers do.

Both the payment methods (bank transfer attaches the invoice) and the invoice services import this
module, and it imports neither, so they do not import each other.
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal

from sqlmodel import Session

from noventiq_panel.config import get_settings
from noventiq_panel.models import Organisation, Payment
from noventiq_panel.services.core import numbering
from noventiq_panel.services.core.clock import local_date

INVOICE_PREFIX = "СЧ"
DEFAULT_PURPOSE = {
    "topup": "Пополнение лицевого счёта (аванс за облачные услуги)",
    "shortfall": "Оплата заказа облачных услуг",
    "postpaid": "Облачные услуги",
}

_NUMBER_RE = re.compile(r"(?:СЧ|CЧ|SCH|SCh|Сч|сч)\s*[-№#]?\s*(\d{4})\s*[-/]\s*(\d{1,6})(?!\d)", re.IGNORECASE)
_BARE_NUMBER_RE = re.compile(r"(?<!\d)(20\d{2})-(\d{6})(?!\d)")


def new_number(session: Session, org: Organisation, now: datetime) -> str:
    """The next invoice number of the year ``now`` falls in for the organisation (flush only)."""
    year = local_date(now, org.timezone).year
    value = numbering.next_value(session, f"invoice-{year}")
    return f"{INVOICE_PREFIX}-{year}-{value:06d}"


def normalize_number(text: str) -> str | None:
    """The invoice number found in ``text`` («сч 2026/123», «СЧ-2026-000123»), canonical, or None."""
    if not isinstance(text, str):
        return None
    match = _NUMBER_RE.search(text) or _BARE_NUMBER_RE.search(text)
    if not match:
        return None
    return f"{INVOICE_PREFIX}-{match.group(1)}-{int(match.group(2)):06d}"


def invoice_filename(payment: Payment) -> str:
    """ASCII file name: ``invoice-2026-000123.pdf``."""
    tail = payment.number.split("-", 1)[1] if "-" in payment.number else str(payment.id)
    return f"invoice-{tail}.pdf"


def vat_part(amount: Decimal, rate: Decimal) -> Decimal:
    """The VAT included in a gross ``amount`` at ``rate`` percent, half-up to the tiyin."""
    return (Decimal(amount) * Decimal(rate) / (Decimal(100) + Decimal(rate))).quantize(
        Decimal("0.01"), rounding=ROUND_HALF_UP)


def parties(org: Organisation):
    """(seller, buyer) ``pdf.Party`` as every billing document names them: the reseller from the
    settings, the customer from its organisation details."""
    from noventiq_panel.services.billing import pdf  # fpdf2 is loaded when a document is made

    settings = get_settings()
    seller = pdf.Party(name=settings.seller_name, tax_id=settings.seller_tax_id, address=settings.seller_address,
                       bank=settings.seller_bank, account=settings.seller_account)
    buyer = pdf.Party(name=org.name, tax_id=org.tax_id, address=org.address, phone=org.phone,
                      bank=org.bank_details)
    return seller, buyer


def render_invoice_pdf(session: Session, payment: Payment) -> bytes:
    """The invoice to pay of ``payment`` (no authorisation: callers check it)."""
    from noventiq_panel.services.billing import pdf

    settings = get_settings()
    org = session.get(Organisation, payment.org_id)
    seller, buyer = parties(org)
    vat = vat_part(payment.amount, settings.vat_rate)
    description = payment.purpose or DEFAULT_PURPOSE.get(payment.kind, DEFAULT_PURPOSE["topup"])
    data = pdf.InvoiceData(
        number=payment.number,
        issued_on=local_date(payment.created_at, org.timezone),
        due_date=payment.due_date,
        seller=seller,
        buyer=buyer,
        currency=payment.currency,
        lines=[pdf.Line(description=description, quantity=Decimal(1), unit="усл.", unit_price=payment.amount,
                        amount=payment.amount, vat=vat)],
        total=payment.amount,
        vat_rate=settings.vat_rate,
        vat=vat,
    )
    return pdf.render_invoice(data)
