"""PDFs read back with pypdf: Cyrillic text, requisites, numbers, totals and the sum in words."""

from __future__ import annotations

import io
from datetime import datetime, timezone
from decimal import Decimal

import pytest
from pypdf import PdfReader

from noventiq_panel.config import get_settings
from noventiq_panel.models import Role
from noventiq_panel.services.billing import documents, invoices, pdf
from noventiq_panel.services.core import ledger

from tests import factories as f

NOW = datetime(2026, 11, 25, 8, 0, tzinfo=timezone.utc)


def _text(data: bytes) -> str:
    reader = PdfReader(io.BytesIO(data))
    return "\n".join(page.extract_text() for page in reader.pages)


@pytest.mark.parametrize("amount, words", [
    ("1200000", "Один миллион двести тысяч сум 00 тийин"),
    ("1234.56", "Одна тысяча двести тридцать четыре сум 56 тийин"),
    ("0.05", "Ноль сум 05 тийин"),
    ("21", "Двадцать один сум 00 тийин"),
])
def test_amount_in_words_in_russian(amount, words):
    assert pdf.amount_in_words(Decimal(amount), "UZS") == words


def test_money_is_formatted_as_in_russian_documents():
    assert pdf.fmt_money(Decimal("1234567.5")) == "1 234 567,50"
    assert pdf.fmt_money(Decimal("-0.01")) == "-0,01"
    assert pdf.fmt_money(Decimal("0")) == "0,00"


def test_the_font_and_its_licence_ship_with_the_package():
    for name in ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "LICENSE-DejaVu.txt"):
        assert (pdf.FONT_DIR / name).is_file()
    assert "Bitstream" in (pdf.FONT_DIR / "LICENSE-DejaVu.txt").read_text()


def test_invoice_to_pay_has_requisites_number_amount_in_words_and_due_date(sqlite_engine):
    from sqlmodel import Session

    with Session(sqlite_engine, expire_on_commit=False) as session:
        o = f.org(session, name="ООО «Ромашка»", tax_id="300000001", address="г. Ташкент, ул. Навои, 1")
        u = f.user(session, o, Role.OWNER)
        p = invoices.request_topup(session, f.actor(u, o), "1200000", now=NOW)
        name, data = invoices.invoice_pdf(session, f.actor(u, o), p.id)
    text = _text(data)
    settings = get_settings()
    assert name == f"invoice-{p.number[3:]}.pdf"
    for expected in (f"Счёт на оплату № {p.number}", "ООО «Ромашка»", "300000001", settings.seller_name,
                     settings.seller_tax_id, settings.seller_account, "1 200 000,00",
                     "Один миллион двести тысяч сум 00 тийин", "Оплатить не позднее 30.11.2026",
                     "«25» ноября 2026 г."):
        assert expected in text, expected


def test_closing_document_pdf_has_the_organisation_number_and_total_in_cyrillic(sqlite_engine):
    from sqlmodel import Session

    with Session(sqlite_engine, expire_on_commit=False) as session:
        o = f.org(session, name="ООО «Ёлочка и Щётка»", tax_id="300000001")
        owner = f.user(session, o, Role.OWNER)
        ledger.post(session, org_id=o.id, kind="charge", amount=Decimal("-1234567.89"), idempotency_key="c1",
                    description="Microsoft 365 Business Standard, продление, 5 шт.", quantity=Decimal(5),
                    occurred_at=datetime(2026, 10, 12, tzinfo=timezone.utc))
        session.commit()
        [doc] = documents.generate_month(session, "2026-10", now=NOW)
        _name, data = documents.document_pdf(session, f.actor(owner, o), doc.id)
    text = _text(data)
    number = documents.act_number(doc.year, doc.number)
    for expected in ("ООО «Ёлочка и Щётка»", f"Акт № {number}", "СЧЁТ-ФАКТУРА", documents.invoice_number(doc.year,
                     doc.number), "1 234 567,89", "Один миллион двести тридцать четыре тысячи пятьсот шестьдесят семь "
                     "сум 89 тийин", "октябрь 2026", "132 275,13"):
        assert expected in text, expected
    assert len(PdfReader(io.BytesIO(data)).pages) == 2
