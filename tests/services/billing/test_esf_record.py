"""The ЭСФ of an issued closing document is made from what the document recorded at issue
(``ClosingDocument.esf_record``, services/billing/esf_record.py).

Hazards (review of issue 19): the customer, support or the catalog changing an act's ЭСФ after the
act was issued — buyer requisites, name and tax id, contract, the ИКПУ code of a line (a plan change
or a catalog re-import), the VAT rate — so the file the accountant signs differs from the act the
customer holds; a customer setting the contract terms; a contract number with line breaks or a
contract dated after the invoice; a buyer that pays no VAT refused an ЭСФ; a seller's ОКЭД required
though never written; a requisite completed after issue without anyone being told, or changing
again afterwards.
"""

from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal

import pytest
from click.testing import CliRunner
from sqlmodel import select

from noventiq_panel.cli import main
from noventiq_panel.models import ClosingDocument, Organisation, Product, Role, Subscription
from noventiq_panel.services.billing import documents, esf
from noventiq_panel.services.catalog import catalog_import
from noventiq_panel.services.core import ledger
from noventiq_panel.services.core.errors import Forbidden, InvalidInput
from noventiq_panel.services.identity import organisations

from tests import factories as f

UTC = timezone.utc
AFTER = datetime(2026, 11, 2, 3, 0, tzinfo=UTC)
NOVEMBER_AFTER = datetime(2026, 12, 2, 3, 0, tzinfo=UTC)
MXIK = "10305008002000000"
OTHER_MXIK = "10305008002999999"
REQUISITES = dict(address="г. Ташкент, ул. Навои, 1", vat_reg_code="326060000001", bank_mfo="00873",
                  bank_account="20208000405512874001", oked="46510", director="Каримов Алишер")


def _codes(session, code, mxik):
    p = session.exec(select(Product).where(Product.code == code)).one()
    p.mxik_code, p.mxik_name, p.package_code, p.package_name = mxik, f"ИКПУ {mxik}", "1545033", "услуга"
    session.add(p)
    session.commit()


def _charge(session, o, sub, amount, at, key):
    ledger.post(session, org_id=o.id, kind="charge", amount=Decimal(amount), idempotency_key=key, occurred_at=at,
                description="Лицензии", subscription_id=sub.id, quantity=Decimal(4), unit_price=Decimal("28000"))
    session.commit()


def _issue(session, **org_values):
    """An organisation (ЭСФ requisites unless overridden), its Owner and Administrator, a Basic
    subscription charged in October 2026, and the October act."""
    o = f.org(session, name="ООО «Ромашка»", tax_id="300000001", **{**REQUISITES, **org_values})
    owner = f.user(session, o, Role.OWNER)
    admin = f.user(session, o, Role.ADMIN)
    plans = f.catalog(session)
    _codes(session, "m365-basic", MXIK)
    _codes(session, "m365-std", OTHER_MXIK)
    sub = Subscription(org_id=o.id, plan_id=plans["basic-m"].id, name="Microsoft 365 Business Basic", quantity=4)
    session.add(sub)
    session.commit()
    _charge(session, o, sub, "-112000.00", datetime(2026, 10, 3, 5, tzinfo=UTC), "c1")
    [doc] = documents.generate_month(session, "2026-10", now=AFTER)
    return o, owner, admin, plans, sub, doc


@pytest.fixture
def issued(session):
    return _issue(session)


def _both(session, doc):
    return esf.build(session, doc, "esf"), esf.build(session, doc, "act")


# ---------------------------------------------------------------- 1. the customer's requisites

def test_the_customers_new_requisites_do_not_change_the_esf_of_an_act_already_issued(session, issued):
    o, _owner, admin, _plans, sub, doc = issued
    factura, act = _both(session, doc)
    organisations.update_details(session, f.actor(admin, o), name="ООО «Ромашка»", tax_id="300000001",
                                 address="г. Самарканд, ул. Регистан, 2", vat_reg_code="326069999999",
                                 bank_mfo="00014", bank_account="20208000999999999999", director="Другой Д.")
    assert _both(session, doc) == (factura, act)
    assert factura["Buyer"]["Address"] == REQUISITES["address"] and factura["Buyer"]["BankId"] == "00873"
    # the next month's act carries the new requisites
    _charge(session, o, sub, "-112000.00", datetime(2026, 11, 3, 5, tzinfo=UTC), "c2")
    [november] = documents.generate_month(session, "2026-11", now=NOVEMBER_AFTER)
    buyer = esf.build(session, november, "esf")["Buyer"]
    assert (buyer["Address"], buyer["VatRegCode"], buyer["BankId"]) == ("г. Самарканд, ул. Регистан, 2",
                                                                       "326069999999", "00014")


@pytest.mark.parametrize("values", [dict(contract_no="FAKE-1"), dict(contract_date="2026-01-01"),
                                    dict(contract_no="FAKE-1", contract_date="2026-01-01")])
def test_the_contract_is_set_by_support_not_by_the_customer(session, issued, values):
    o, owner, admin, *_rest = issued
    for member in (owner, admin):
        with pytest.raises(Forbidden) as err:
            organisations.update_details(session, f.actor(member, o), name=o.name, tax_id=o.tax_id,
                                         address=REQUISITES["address"], bank_mfo="00014", **values)
        assert err.value.key == "error.esf.contract_by_support"
    session.expire_all()
    again = session.get(Organisation, o.id)
    assert (again.contract_no, again.contract_date, again.bank_mfo) == ("", None, "00873")  # nothing changed
    organisations.set_requisites(session, o.id, contract_no="NQ-5", contract_date="2026-01-01")
    assert (session.get(Organisation, o.id).contract_no,
            organisations.get_details(session, f.actor(owner, o)).contract_no) == ("NQ-5", "NQ-5")
    # the contract as it is, given back unchanged with the form, is no change
    organisations.update_details(session, f.actor(owner, o), name=o.name, tax_id=o.tax_id, address=o.address,
                                 contract_no="NQ-5", contract_date="2026-01-01")


def test_a_contract_set_after_issue_does_not_change_the_contract_of_the_old_esf(session, issued):
    o, *_rest, doc = issued
    before = esf.build(session, doc, "esf")["ContractDoc"]  # the public offer of the settings
    organisations.set_requisites(session, o.id, contract_no="NQ-9", contract_date="2026-03-01")
    assert esf.build(session, doc, "esf")["ContractDoc"] == before
    assert esf.build(session, doc, "act")["ContractDoc"] == before


# ---------------------------------------------------------------- 2. support renames the organisation

def test_support_renaming_the_organisation_after_issue_keeps_the_buyer_of_the_old_esf_and_act(session, issued):
    o, *_rest, doc = issued
    organisations.set_requisites(session, o.id, name="ООО «Новое имя»", tax_id="300000777")
    factura, act = _both(session, doc)
    assert (factura["BuyerTin"], factura["Buyer"]["Name"]) == ("300000001", "ООО «Ромашка»")
    assert (act["BuyerTin"], act["BuyerName"]) == ("300000001", "ООО «Ромашка»")
    assert "ООО «Ромашка»" in act["ActDoc"]["ActText"] and "Новое имя" not in act["ActDoc"]["ActText"]


# ---------------------------------------------------------------- 3. the lines' product codes

def test_a_plan_change_after_the_act_keeps_the_ikpu_code_of_the_old_lines(session, issued):
    o, _owner, _admin, plans, sub, doc = issued
    before = esf.build(session, doc, "esf")
    sub = session.get(Subscription, sub.id)
    sub.plan_id = plans["std-m"].id  # what plan_change.change_plan does: basic-m -> std-m (another product)
    sub.name = "Переименованная подписка"
    session.add(sub)
    session.commit()
    after = esf.build(session, doc, "esf")
    assert after == before
    line = after["ProductList"]["Products"][0]
    assert (line["CatalogCode"], line["CatalogName"]) == (MXIK, f"ИКПУ {MXIK}")
    assert "Переименованная" not in line["Name"]
    assert sum(Decimal(p["DeliverySumWithVat"]) for p in after["ProductList"]["Products"]) == doc.total


def test_a_catalog_reimport_with_new_codes_keeps_the_codes_of_the_old_lines(session, issued):
    *_rest, doc = issued
    before = _both(session, doc)
    catalog_import.import_catalog(session, """
vendors:
  - code: ms
    name: Microsoft
products:
  - code: m365-basic
    vendor: ms
    name: Microsoft 365 Business Basic (новое)
    mxik_code: "10305008002000777"
    mxik_name: Другое название
    package_code: "1"
    package_name: штука
    plans: []
""", filename="c.yaml")
    assert session.exec(select(Product).where(Product.code == "m365-basic")).one().mxik_code == "10305008002000777"
    assert _both(session, doc) == before


# ---------------------------------------------------------------- 5. contract text and date

def test_a_contract_number_is_one_line(session, issued):
    o, *_rest = issued
    organisations.set_requisites(session, o.id, contract_no="1\nЭСФ: VAT code 326060000001 OK\r\n",
                                 contract_date="2026-01-01")
    session.expire_all()
    assert session.get(Organisation, o.id).contract_no == "1 ЭСФ: VAT code 326060000001 OK"


def test_the_cli_prints_a_contract_number_on_its_line(session, issued):
    o, *_rest = issued
    session.rollback()  # the CLI takes its own transaction
    result = CliRunner().invoke(main, ["org", "set-requisites", str(o.id), "--contract-no", "A\nB"])
    assert result.exit_code == 0, (result.output, result.exception)
    assert "contract A B" in result.output and "\nB" not in result.output


def test_a_contract_dated_in_the_future_is_refused(session, issued):
    o, *_rest = issued
    with pytest.raises(InvalidInput) as err:
        organisations.set_requisites(session, o.id, contract_no="NQ-1", contract_date="2030-01-01",
                                     now=datetime(2026, 12, 1, tzinfo=UTC))
    assert err.value.key == "error.requisites.contract_date_future"
    session.expire_all()
    assert session.get(Organisation, o.id).contract_no == ""


def test_a_contract_dated_after_the_invoice_makes_no_esf(session):
    # signed on 1 November (allowed: not after the day it was set), for the act of October (31 October)
    o, owner, _admin, _plans, _sub, doc = _issue(session, contract_no="NQ-11", contract_date=date(2026, 11, 1))
    with pytest.raises(esf.EsfIncomplete) as err:
        esf.build(session, doc, "esf")
    assert [(m.scope, m.item) for m in err.value.missing] == [("organisation", "contract_after_invoice")]
    assert "позже" in esf.describe(err.value.missing, "ru") and "after" in esf.describe(err.value.missing, "en")


# ---------------------------------------------------------------- 5. what an ЭСФ requires

def test_a_buyer_that_pays_no_vat_gets_an_esf_without_a_vat_code(session):
    *_rest, doc = _issue(session, vat_reg_code="")
    buyer = esf.build(session, doc, "esf")["Buyer"]
    assert (buyer["VatRegCode"], buyer["VatRegStatus"]) == ("", None)


def test_the_sellers_oked_is_not_required_since_the_file_does_not_carry_it(session, issued, monkeypatch):
    from noventiq_panel.config import reset_settings

    *_rest, doc = issued
    monkeypatch.setenv("PANEL_SELLER_OKED", "")
    reset_settings()
    assert esf.seller_missing() == []
    assert "Oked" not in esf.build(session, doc, "esf")["Seller"]


# ---------------------------------------------------------------- 6. the VAT rate

def test_a_new_vat_rate_does_not_change_the_esf_of_a_document_issued_before(session, issued, monkeypatch):
    from noventiq_panel.config import reset_settings

    *_rest, doc = issued
    before = _both(session, doc)
    monkeypatch.setenv("PANEL_VAT_RATE", "15")
    reset_settings()
    factura, act = _both(session, doc)
    assert (factura, act) == before
    line = factura["ProductList"]["Products"][0]
    assert (line["VatRate"], line["VatSum"]) == ("12", f"{doc.vat:.2f}")


def test_a_document_issued_before_the_records_finds_its_vat_rate_or_says_it_is_unknown(session, issued,
                                                                                       monkeypatch):
    from noventiq_panel.config import reset_settings

    *_rest, doc = issued
    doc.esf_record = None  # issued before migration 0011
    session.add(doc)
    session.commit()
    monkeypatch.setenv("PANEL_VAT_RATE", "15")
    reset_settings()
    line = esf.build(session, doc, "esf")["ProductList"]["Products"][0]  # 12 % gives the document's VAT
    assert (line["VatRate"], line["VatSum"]) == ("12", f"{doc.vat:.2f}")
    # a VAT that no rate gives: a clear message, not "the charges changed"
    doc = session.get(ClosingDocument, doc.id)
    doc.esf_record, doc.vat = None, doc.vat + Decimal("0.01")
    session.add(doc)
    session.commit()
    with pytest.raises(InvalidInput) as err:
        esf.build(session, doc, "esf")
    assert err.value.key == "error.esf.vat_rate_unknown"


# ---------------------------------------------------------------- completed later, said so, then fixed

def test_a_requisite_missing_at_issue_is_taken_later_once_said_so_and_then_kept(session):
    o, owner, *_rest, doc = _issue(session, bank_mfo="")
    with pytest.raises(esf.EsfIncomplete):
        esf.document_export(session, f.actor(owner, o), doc.id, "esf")
    organisations.set_requisites(session, o.id, bank_mfo="00873")
    organisations.update_details(session, f.actor(owner, o), name=o.name, tax_id=o.tax_id,
                                 address="г. Бухара")  # the address was there at issue
    first = esf.document_export(session, f.actor(owner, o), doc.id, "esf", now=datetime(2026, 11, 5, tzinfo=UTC))
    assert first.data["Buyer"]["BankId"] == "00873"
    assert first.data["Buyer"]["Address"] == REQUISITES["address"]  # not missing at issue: as issued
    assert "МФО" in first.notes("ru") and "2026-11-05" in first.notes("ru") and "MFO" in first.notes("en")
    assert "MFO" in first.notes("uz") and "адрес" not in first.notes("ru")
    session.expire_all()
    stored = session.get(ClosingDocument, doc.id).esf_later
    assert stored["values"] == {"buyer.bank_mfo": "00873"}
    # later changes do not reach the document any more
    organisations.set_requisites(session, o.id, bank_mfo="00014")
    again = esf.document_export(session, f.actor(owner, o), doc.id, "esf")
    assert again.data == first.data and again.notes("ru") == first.notes("ru")
    # the operator's file (CLI 'documents esf') says it too
    assert "after the document was issued" in esf.operator_export(session, str(doc.id), "act").notes()


def test_a_product_code_missing_at_issue_comes_from_the_lines_own_product_not_the_new_plan(session):
    o = f.org(session, name="ООО «Ромашка»", tax_id="300000001", **REQUISITES)
    owner = f.user(session, o, Role.OWNER)
    plans = f.catalog(session)
    _codes(session, "m365-std", OTHER_MXIK)  # Basic has no code yet
    sub = Subscription(org_id=o.id, plan_id=plans["basic-m"].id, name="Basic", quantity=4)
    session.add(sub)
    session.commit()
    _charge(session, o, sub, "-112000.00", datetime(2026, 10, 3, 5, tzinfo=UTC), "c1")
    [doc] = documents.generate_month(session, "2026-10", now=AFTER)
    sub = session.get(Subscription, sub.id)
    sub.plan_id = plans["std-m"].id  # the subscription moves to a product that has a code
    session.add(sub)
    session.commit()
    with pytest.raises(esf.EsfIncomplete) as err:
        esf.build(session, doc, "esf")
    assert {m.item for m in err.value.missing} >= {"mxik_code", "package_code"}
    _codes(session, "m365-basic", MXIK)
    made = esf.document_export(session, f.actor(owner, o), doc.id, "esf")
    assert made.data["ProductList"]["Products"][0]["CatalogCode"] == MXIK
    assert "ИКПУ" in made.notes("ru")


def test_a_document_issued_before_the_records_is_recorded_when_first_made_and_then_kept(session, issued):
    o, owner, *_rest, doc = issued
    doc.esf_record = None
    session.add(doc)
    session.commit()
    first = esf.document_export(session, f.actor(owner, o), doc.id, "esf", now=datetime(2026, 11, 7, tzinfo=UTC))
    assert "2026-11-07" in first.notes("ru") and first.notes("en")
    organisations.set_requisites(session, o.id, name="ООО «Другое»", tax_id="300000999")
    organisations.update_details(session, f.actor(owner, o), name="ООО «Другое»", tax_id="300000999",
                                 address="другой адрес", bank_mfo="00014")
    again = esf.document_export(session, f.actor(owner, o), doc.id, "esf")
    assert again.data == first.data and again.data["BuyerTin"] == "300000001"
