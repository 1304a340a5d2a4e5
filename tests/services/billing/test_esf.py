"""Electronic invoices (ЭСФ, Didox type 002) and acts (type 005) prepared from the closing documents.

Hazards: an ЭСФ whose amounts differ from the closing document by a tiyin (the buyer's VAT credit
and the seller's turnover would not match the act); a file Didox rejects because a code or a
requisite is missing or malformed, found by the buyer instead of before the month is closed; a
wrongly formatted code stored by the catalog import or on an organisation; another organisation's
document, or a role that does not take tax documents, getting the file.
"""

from __future__ import annotations

import json
from datetime import date, datetime, timezone
from decimal import Decimal

import pytest
from click.testing import CliRunner
from sqlmodel import select

from noventiq_panel.cli import main
from noventiq_panel.models import ClosingDocument, Organisation, Product, Role, Subscription
from noventiq_panel.services.billing import documents, esf
from noventiq_panel.services.catalog import catalog_import
from noventiq_panel.services.core import ledger, requisites
from noventiq_panel.services.core.errors import Forbidden, InvalidInput, NotFound
from noventiq_panel.services.identity import organisations

from tests import factories as f

UTC = timezone.utc
AFTER = datetime(2026, 11, 2, 3, 0, tzinfo=UTC)
MXIK = "10305008002000000"

REQUISITES = dict(address="г. Ташкент, ул. Навои, 1", vat_reg_code="326060000001", bank_mfo="00873",
                  bank_account="20208000405512874001", oked="46510", director="Каримов Алишер")


def _charge(session, o, amount, at, key, kind="charge", **kw):
    ledger.post(session, org_id=o.id, kind=kind, amount=Decimal(amount), idempotency_key=key, occurred_at=at,
                description=kw.pop("description", "Лицензии"), **kw)


def _codes(session, *product_codes, mxik=MXIK):
    for code in product_codes:
        p = session.exec(select(Product).where(Product.code == code)).one()
        p.mxik_code, p.mxik_name = mxik, "Услуги по предоставлению права использования ПО"
        p.package_code, p.package_name = "1545033", "услуга"
        session.add(p)
    session.commit()


@pytest.fixture
def month_org(session):
    """An organisation with every ЭСФ requisite, charged in October 2026 (licences, usage)."""
    return _month_org(session)


def _month_org(session, **org_extra):
    o = f.org(session, name="ООО «Ромашка»", tax_id="300000001", **REQUISITES, **org_extra)
    owner = f.user(session, o, Role.OWNER)
    plans = f.catalog(session)
    _codes(session, "m365-basic", "azure")
    basic = Subscription(org_id=o.id, plan_id=plans["basic-m"].id, name="Microsoft 365 Business Basic", quantity=10)
    azure = Subscription(org_id=o.id, plan_id=plans["azure-h"].id, name="Microsoft Azure", quantity=1)
    session.add_all([basic, azure])
    session.commit()
    # 10 seats at 30 000 (VAT included): 300 000 → VAT 32 142.86, without VAT 267 857.14 (not divisible by 10)
    _charge(session, o, "-300000.00", datetime(2026, 10, 1, 5, tzinfo=UTC), "c1", subscription_id=basic.id,
            quantity=Decimal(10), unit_price=Decimal("30000"), description="продление, 10 шт.")
    # 4 seats at 28 000: 112 000 → VAT 12 000, without VAT 100 000 = 4 × 25 000
    _charge(session, o, "-112000.00", datetime(2026, 10, 3, 5, tzinfo=UTC), "c2", subscription_id=basic.id,
            quantity=Decimal(4), unit_price=Decimal("28000"), description="увеличение")
    _charge(session, o, "-12345.67", datetime(2026, 10, 10, 5, tzinfo=UTC), "u1", kind="usage",
            subscription_id=azure.id)
    _charge(session, o, "-0.01", datetime(2026, 10, 20, 5, tzinfo=UTC), "u2", kind="usage", subscription_id=azure.id)
    session.commit()
    [doc] = documents.generate_month(session, "2026-10", now=AFTER)
    return o, owner, doc


# ---------------------------------------------------------------- amounts

def test_esf_and_act_equal_the_closing_document_to_the_tiyin_line_by_line(session, month_org):
    o, owner, doc = month_org
    lines, total, vat = documents.month_lines(session, session.get(Organisation, o.id), doc.period)
    data = esf.build(session, doc, "esf")
    products = data["ProductList"]["Products"]
    assert len(products) == len(lines) == 3
    for product, line in zip(products, lines):
        assert Decimal(product["DeliverySumWithVat"]) == line.amount
        assert Decimal(product["VatSum"]) == line.vat
        assert Decimal(product["DeliverySum"]) + Decimal(product["VatSum"]) == line.amount
        assert Decimal(product["Count"]) * Decimal(product["Summa"]) == Decimal(product["DeliverySum"])
    assert sum(Decimal(p["DeliverySumWithVat"]) for p in products) == doc.total == total
    assert sum(Decimal(p["VatSum"]) for p in products) == doc.vat == vat
    act = esf.build(session, doc, "act")
    act_products = act["ProductList"]["Products"]
    for product, line in zip(act_products, lines):
        assert Decimal(product["TotalSum"]) == line.amount
        assert Decimal(product["VatSum"]) == line.vat
        assert Decimal(product["TotalSumWithoutVat"]) + Decimal(product["VatSum"]) == line.amount
    assert sum(Decimal(p["TotalSum"]) for p in act_products) == doc.total


def test_a_quantity_that_does_not_divide_the_sum_becomes_one_unit_so_no_tiyin_is_rounded_away(session, month_org):
    _o, _owner, doc = month_org
    by_amount = {p["DeliverySumWithVat"]: p for p in esf.build(session, doc, "esf")["ProductList"]["Products"]}
    ten = by_amount["300000.00"]  # 267 857.14 / 10 is no whole tiyin
    assert ten["Count"] == 1 and ten["Summa"] == "267857.14" and ten["VatSum"] == "32142.86"
    assert "10" in ten["Name"]
    four = by_amount["112000.00"]  # 100 000 / 4 = 25 000
    assert four["Count"] == 4 and four["Summa"] == "25000.00" and four["DeliverySum"] == "100000.00"


def test_a_charge_posted_into_the_month_after_its_act_does_not_change_the_acts_esf(session, month_org):
    o, owner, doc = month_org
    before = esf.build(session, doc, "esf")
    azure = session.exec(select(Subscription).where(Subscription.name == "Microsoft Azure")).one()
    _charge(session, o, "-5.00", datetime(2026, 10, 15, 5, tzinfo=UTC), "late", kind="usage",
            subscription_id=azure.id)  # posted into October after its act was issued
    session.commit()
    after = esf.build(session, doc, "esf")  # the lines of the act as issued
    assert after == before
    assert sum(Decimal(p["DeliverySumWithVat"]) for p in after["ProductList"]["Products"]) == doc.total


def test_a_document_without_a_record_refuses_when_the_months_charges_no_longer_match_it(session, month_org):
    o, owner, doc = month_org
    doc.esf_record = None  # issued before migration 0011: its ЭСФ comes from the month's charges
    session.add(doc)
    session.commit()
    azure = session.exec(select(Subscription).where(Subscription.name == "Microsoft Azure")).one()
    _charge(session, o, "-5.00", datetime(2026, 10, 15, 5, tzinfo=UTC), "late", kind="usage",
            subscription_id=azure.id)
    session.commit()
    with pytest.raises(InvalidInput) as err:
        esf.build(session, doc, "esf")
    assert err.value.key == "error.esf.total_changed"
    session.expire_all()
    assert session.get(ClosingDocument, doc.id).esf_record is None  # nothing recorded


# ---------------------------------------------------------------- layout

def test_the_factura_has_the_didox_002_layout(session, month_org):
    o, _owner, doc = month_org
    data = esf.build(session, doc, "esf")
    assert data["Version"] == 1 and data["FacturaType"] == 0
    assert data["FacturaDoc"] == {"FacturaNo": documents.invoice_number(doc.year, doc.number),
                                  "FacturaDate": "2026-10-31"}
    assert set(data["ContractDoc"]) == {"ContractNo", "ContractDate"}
    assert data["SellerTin"] == data["ProductList"]["Tin"]
    seller = data["Seller"]
    for key in ("Name", "VatRegCode", "Account", "BankId", "Address", "Director", "VatRegStatus"):
        assert seller[key], key
    assert data["BuyerTin"] == "300000001"
    assert data["Buyer"]["VatRegCode"] == REQUISITES["vat_reg_code"]
    assert data["Buyer"]["Account"] == REQUISITES["bank_account"]
    assert data["Buyer"]["BankId"] == REQUISITES["bank_mfo"]
    assert data["Buyer"]["Director"] == REQUISITES["director"]
    # unused blocks are null, not empty objects (the roaming centre's rule)
    for key in ("OldFacturaDoc", "ItemReleasedDoc", "FacturaEmpowermentDoc", "ForeignCompany",
                "FacturaInvestmentObjectDoc", "FacturaRentDoc"):
        assert data[key] is None
    assert data["ProductList"]["HasVat"] is True
    product = data["ProductList"]["Products"][0]
    assert product["OrdNo"] == 1 and product["CatalogCode"] == MXIK and len(product["CatalogCode"]) == 17
    assert product["PackageCode"] == "1545033" and product["PackageName"] == "услуга"
    assert product["VatRate"] == "12" and product["WithoutVat"] is False and product["Origin"] == 3
    for key in ("Summa", "DeliverySum", "VatSum", "DeliverySumWithVat"):
        assert isinstance(product[key], str) and len(product[key].split(".")[1]) == 2  # two decimals, no float
    json.dumps(data)  # serialisable as it is


def test_the_act_has_the_didox_005_layout_and_the_contract_of_the_organisation(session):
    o, _owner, doc = _month_org(session, contract_no="NQ-17", contract_date=date(2026, 2, 1))
    act = esf.build(session, doc, "act")
    assert act["ActDoc"]["ActNo"] == documents.act_number(doc.year, doc.number)
    assert act["ActDoc"]["ActDate"] == "2026-10-31" and "ООО «Ромашка»" in act["ActDoc"]["ActText"]
    assert act["ContractDoc"] == {"ContractNo": "NQ-17", "ContractDate": "2026-02-01"}
    assert act["BuyerTin"] == "300000001" and act["BuyerName"] == "ООО «Ромашка»"
    assert act["SellerTin"] == act["ProductList"]["Tin"]
    product = act["ProductList"]["Products"][0]
    assert set(product) >= {"OrdNo", "CatalogCode", "CatalogName", "Name", "PackageCode", "PackageName", "Count",
                            "Summa", "TotalSumWithoutVat", "VatRate", "VatSum", "TotalSum", "WithoutVat"}


def test_without_a_contract_the_public_offer_of_the_settings_is_named(session, monkeypatch):
    from noventiq_panel.config import reset_settings

    monkeypatch.setenv("PANEL_SELLER_OFFER_NO", "ПО-7")
    monkeypatch.setenv("PANEL_SELLER_OFFER_DATE", "2025-12-30")
    reset_settings()
    _o, _owner, doc = _month_org(session)
    assert esf.build(session, doc, "esf")["ContractDoc"] == {"ContractNo": "ПО-7", "ContractDate": "2025-12-30"}


# ---------------------------------------------------------------- formats

@pytest.mark.parametrize("check, good, bad", [
    (requisites.validate_mxik_code, "10305008002000000", ["1030500800200000", "103050080020000001", "1030500800200000A"]),
    (requisites.validate_mfo, "00873", ["0087", "008731", "0O873"]),
    (requisites.validate_bank_account, "20208 000 405512874001", ["2020800040551287400", "2020800040551287400123"]),
    (requisites.validate_tax_id, "300000001", ["30000000", "3000000012", "30000000A"]),
    (requisites.validate_vat_reg_code, "326060000001", ["32606000000", "3260600000012"]),
    (requisites.validate_oked, "46510", ["4651", "465100"]),
    (requisites.validate_package_code, "1545033", ["15-45", "abc"]),
])
def test_a_malformed_code_is_refused_with_its_own_message(check, good, bad):
    assert check(good) == good.replace(" ", "")
    assert check("") == ""
    for value in bad:
        with pytest.raises(InvalidInput) as err:
            check(value)
        assert err.value.key.startswith(("error.requisites.", "organisations.tax_id_invalid"))
    with pytest.raises(InvalidInput) as err:
        check("", required=True)
    assert err.value.key == "error.requisites.required"


def test_every_format_message_exists_in_every_language():
    from noventiq_panel import i18n

    for key in ("error.requisites.mxik_code", "error.requisites.mfo", "error.requisites.bank_account",
                "error.requisites.vat_reg_code", "error.requisites.oked", "error.requisites.package_code"):
        for locale in i18n.LOCALES:
            assert i18n.t(key, locale) != key


def test_an_organisation_with_a_bad_account_is_refused_and_nothing_changes(session):
    o = f.org(session, **REQUISITES)
    with pytest.raises(InvalidInput) as err:
        organisations.set_requisites(session, o.id, bank_account="123", bank_mfo="00999")
    assert err.value.key == "error.requisites.bank_account"
    session.expire_all()
    again = session.get(Organisation, o.id)
    assert (again.bank_account, again.bank_mfo) == (REQUISITES["bank_account"], REQUISITES["bank_mfo"])
    owner = f.user(session, o, Role.OWNER)
    with pytest.raises(InvalidInput) as err:
        organisations.update_details(session, f.actor(owner, o), name=o.name, tax_id=o.tax_id, vat_reg_code="12")
    assert err.value.key == "error.requisites.vat_reg_code"
    details = organisations.update_details(session, f.actor(owner, o), name=o.name, tax_id=o.tax_id,
                                           bank_mfo="01088", director="Иванов Иван")
    assert details.bank_mfo == "01088" and details.director == "Иванов Иван"
    assert details.vat_reg_code == REQUISITES["vat_reg_code"]  # not given: unchanged


# ---------------------------------------------------------------- catalog import

CATALOG = """
vendors:
  - code: ms
    name: Microsoft
products:
  - code: m365-basic
    vendor: ms
    name: Microsoft 365 Business Basic
    mxik_code: "{first}"
    mxik_name: Услуги по предоставлению права использования ПО
    package_code: "1545033"
    package_name: услуга
    plans: []
  - code: m365-std
    vendor: ms
    name: Microsoft 365 Business Standard
    mxik_code: "{second}"
    package_code: "1545033"
    plans: []
"""


def test_the_catalog_import_stores_the_codes(session):
    catalog_import.import_catalog(session, CATALOG.format(first=MXIK, second="10305008002000001"),
                                  filename="c.yaml")
    p = session.exec(select(Product).where(Product.code == "m365-basic")).one()
    assert (p.mxik_code, p.package_code, p.package_name) == (MXIK, "1545033", "услуга")


def test_a_bad_code_in_the_catalog_names_its_row_and_nothing_is_imported(session):
    with pytest.raises(catalog_import.CatalogError) as err:
        catalog_import.import_catalog(session, CATALOG.format(first=MXIK, second="1030500800200"), filename="c.yaml")
    [issue] = err.value.issues
    assert issue.path == ("products", 1, "mxik_code")
    assert issue.line == 17 and "17 digits" in issue.message
    assert "c.yaml:17: products[1].mxik_code" in str(err.value)
    assert session.exec(select(Product)).all() == []


# ---------------------------------------------------------------- what is missing

def test_missing_requisites_and_codes_are_listed_for_the_month_before_it_closes(session):
    o = f.org(session, name="ООО «Без реквизитов»", address="г. Ташкент")
    plans = f.catalog(session)
    _codes(session, "m365-basic")  # azure has no code
    basic = Subscription(org_id=o.id, plan_id=plans["basic-m"].id, name="Basic", quantity=1)
    azure = Subscription(org_id=o.id, plan_id=plans["azure-h"].id, name="Azure", quantity=1)
    session.add_all([basic, azure])
    session.commit()
    _charge(session, o, "-30000.00", datetime(2026, 10, 1, 5, tzinfo=UTC), "c", subscription_id=basic.id)
    _charge(session, o, "-100.00", datetime(2026, 10, 2, 5, tzinfo=UTC), "u", kind="usage", subscription_id=azure.id)
    _charge(session, o, "5000.00", datetime(2026, 10, 3, 5, tzinfo=UTC), "r", kind="refund",
            subscription_id=basic.id)
    session.commit()
    check = esf.check_month(session, "2026-10")  # on 4 October: the month has not closed
    assert not check.ok
    found = {(m.scope, m.item) for m in check.missing}
    assert {("organisation", "bank_account"), ("organisation", "bank_mfo"),
            ("organisation", "director"), ("product", "mxik_code"), ("product", "package_code"),
            ("document", "refund_line")} <= found
    assert ("product", "mxik_code") in found and ("organisation", "address") not in found
    # a buyer that pays no VAT has no VAT registration code and gets an ЭСФ all the same
    assert ("organisation", "vat_reg_code") not in found
    texts = check.lines()
    assert any("Microsoft Azure" in t and "mxik code" in t for t in texts)
    assert any("МФО банка организации «ООО «Без реквизитов»»" == m.text("ru") for m in check.missing)


def test_a_missing_requisite_does_not_block_the_act_but_the_esf_says_what_is_missing(session):
    o = f.org(session, name="ООО «Нет МФО»", **{**REQUISITES, "bank_mfo": ""})
    owner = f.user(session, o, Role.OWNER)
    plans = f.catalog(session)
    _codes(session, "m365-basic")
    sub = Subscription(org_id=o.id, plan_id=plans["basic-m"].id, name="Basic", quantity=1)
    session.add(sub)
    session.commit()
    _charge(session, o, "-30000.00", datetime(2026, 10, 1, 5, tzinfo=UTC), "c", subscription_id=sub.id)
    session.commit()
    [doc] = documents.generate_month(session, "2026-10", now=AFTER)  # the act and its PDF are made
    with pytest.raises(esf.EsfIncomplete) as err:
        esf.document_file(session, f.actor(owner, o), doc.id, "esf")
    assert [(m.scope, m.item) for m in err.value.missing] == [("organisation", "bank_mfo")]
    assert "МФО" in esf.describe(err.value.missing, "ru") and "MFO" in esf.describe(err.value.missing, "en")
    assert "MFO" in esf.describe(err.value.missing, "uz")


def test_the_sellers_own_requisites_come_from_the_settings_and_are_checked(monkeypatch):
    from noventiq_panel.config import reset_settings

    assert esf.seller_missing() == []
    monkeypatch.setenv("PANEL_SELLER_VAT_REG_CODE", "")
    monkeypatch.setenv("PANEL_SELLER_MFO", "1088")
    reset_settings()
    found = {(m.item, m.invalid) for m in esf.seller_missing()}
    assert found == {("vat_reg_code", False), ("bank_mfo", True)}


# ---------------------------------------------------------------- who may take the file

def test_owner_and_financial_manager_get_the_file_and_other_roles_are_refused(session, month_org):
    o, owner, doc = month_org
    finance = f.user(session, o, Role.FINANCE)
    admin = f.user(session, o, Role.ADMIN)
    name, data = esf.document_file(session, f.actor(owner, o), doc.id, "esf")
    assert name.endswith(".json") and "002" in name
    assert json.loads(data)["BuyerTin"] == "300000001"
    name, data = esf.document_file(session, f.actor(finance, o), str(doc.id), "act")
    assert "005" in name and json.loads(data)["ActDoc"]
    with pytest.raises(Forbidden) as err:
        esf.document_file(session, f.actor(admin, o), doc.id, "esf")
    assert err.value.key == "error.esf.roles"


def test_another_organisations_document_is_not_found(session, month_org):
    _o, _owner, doc = month_org
    other = f.org(session, name="ООО «Чужая»", **REQUISITES)
    stranger = f.user(session, other, Role.OWNER)
    for raw in (doc.id, str(doc.id), "999999", "x", None):
        with pytest.raises(NotFound):
            esf.document_file(session, f.actor(stranger, other), raw, "esf")


def test_an_unknown_kind_is_refused(session, month_org):
    o, owner, doc = month_org
    with pytest.raises(InvalidInput) as err:
        esf.document_file(session, f.actor(owner, o), doc.id, "xml")
    assert err.value.key == "error.esf.kind"


# ---------------------------------------------------------------- operator commands

def _run(*args, code=0):
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result.output


def test_cli_writes_the_esf_of_a_document_by_number_or_id(session, month_org, tmp_path):
    _o, _owner, doc = month_org
    out = tmp_path / "esf.json"
    number = documents.act_number(doc.year, doc.number)
    assert "written" in _run("documents", "esf", "--document", number, "--out", str(out))
    data = json.loads(out.read_text(encoding="utf-8"))
    assert Decimal(sum(Decimal(p["DeliverySumWithVat"]) for p in data["ProductList"]["Products"])) == doc.total
    act = json.loads(_run("documents", "esf", "--document", str(doc.id), "--kind", "act"))
    assert act["ActDoc"]["ActNo"] == number
    result = CliRunner().invoke(main, ["documents", "esf", "--document", "АКТ-2026-999999"])
    assert result.exit_code != 0 and "not found" in result.output


def test_cli_check_prints_what_is_missing_and_fails(session, month_org):
    o, _owner, _doc = month_org
    assert "complete" in _run("documents", "check", "--month", "2026-10")
    organisations.set_requisites(session, o.id, bank_mfo="")
    output = _run("documents", "check", "--month", "2026-10", code=1)
    assert "bank mfo missing" in output and "ООО «Ромашка»" in output


def test_cli_generate_reports_the_missing_items_and_makes_the_act_anyway(session):
    o = f.org(session, name="ООО «Пусто»")
    plans = f.catalog(session)
    sub = Subscription(org_id=o.id, plan_id=plans["basic-m"].id, name="Basic", quantity=1)
    session.add(sub)
    session.commit()
    _charge(session, o, "-30000.00", datetime(2026, 10, 1, 5, tzinfo=UTC), "c", subscription_id=sub.id)
    session.commit()
    output = _run("documents", "generate", "2026-10", "--now", "2026-11-02T03:00:00")
    assert "missing" in output and "mxik code" in output and "1 documents generated" in output
    session.rollback()
    assert session.exec(select(ClosingDocument)).one().total == Decimal("30000.00")


def test_cli_sets_the_requisites_of_an_organisation(session):
    o = f.org(session)
    output = _run("org", "set-requisites", str(o.id), "--vat-reg-code", "326060000009", "--bank-mfo", "00873",
                  "--bank-account", "20208000405512874009", "--oked", "62010", "--director", "Иванов И.",
                  "--contract-no", "NQ-1", "--contract-date", "2026-01-15")
    assert "326060000009" in output
    session.expire_all()
    again = session.get(Organisation, o.id)
    assert again.contract_date == date(2026, 1, 15) and again.bank_mfo == "00873"
    session.close()  # end the read (SQLite write lock): the CLI below must meet the check, not the lock
    result = CliRunner().invoke(main, ["org", "set-requisites", str(o.id), "--bank-mfo", "123"])
    assert result.exit_code != 0 and "bank_mfo" in result.output, result.output
    session.expire_all()
    assert session.get(Organisation, o.id).bank_mfo == "00873"  # nothing changed


# ---------------------------------------------------------------- the jobs

def test_the_jobs_report_the_missing_items_before_and_when_the_month_closes(session, caplog):
    from jobs import registry

    o = f.org(session, name="ООО «Пусто»")
    plans = f.catalog(session)
    sub = Subscription(org_id=o.id, plan_id=plans["basic-m"].id, name="Basic", quantity=1)
    session.add(sub)
    session.commit()
    _charge(session, o, "-30000.00", datetime(2026, 10, 1, 5, tzinfo=UTC), "c", subscription_id=sub.id)
    session.commit()
    with caplog.at_level("WARNING"):
        early = registry.run_job("esf_check", datetime(2026, 10, 25, 4, 0, tzinfo=UTC))
    assert "2026-10" in early and "8 missing" in early and "bank account" in early
    assert any("mxik code" in r.getMessage() for r in caplog.records)
    closing = registry.run_job("documents", datetime(2026, 11, 1, 9, 30, tzinfo=UTC))
    assert "1 created" in closing and "ЭСФ:" in closing and "documents check --month 2026-10" in closing


def test_the_month_check_warns_of_the_carried_credit_the_act_will_hold(session):
    """October's refund outweighs its charge: no act, the credit is carried into November's act as
    a recalculation line (no product, negative), which its ЭСФ cannot hold. The check before
    November closes says so, as the download of November's ЭСФ does."""
    o = f.org(session, name="ООО «Перерасчёт»", tax_id="300000009", **REQUISITES)
    owner = f.user(session, o, Role.OWNER)
    plans = f.catalog(session)
    _codes(session, "m365-basic")
    sub = Subscription(org_id=o.id, plan_id=plans["basic-m"].id, name="Basic", quantity=1)
    session.add(sub)
    session.commit()
    _charge(session, o, "-30000.00", datetime(2026, 9, 10, 5, tzinfo=UTC), "sep", subscription_id=sub.id)
    _charge(session, o, "-10000.00", datetime(2026, 10, 10, 5, tzinfo=UTC), "oct", subscription_id=sub.id)
    _charge(session, o, "25000.00", datetime(2026, 10, 20, 5, tzinfo=UTC), "oct-r", kind="refund",
            subscription_id=sub.id, description="возврат")
    _charge(session, o, "-30000.00", datetime(2026, 11, 10, 5, tzinfo=UTC), "nov", subscription_id=sub.id)
    session.commit()
    documents.generate_month(session, "2026-09", now=datetime(2026, 10, 2, tzinfo=UTC))
    assert documents.generate_month(session, "2026-10", now=AFTER) == []  # a credit of 15 000: no act
    check = esf.check_month(session, "2026-11")
    carried = {(m.scope, m.item) for m in check.missing if "Перерасчёт" in m.subject}
    assert carried == {("document", "line_without_product"), ("document", "refund_line")}
    [nov] = documents.generate_month(session, "2026-11", now=datetime(2026, 12, 2, tzinfo=UTC))
    assert nov.total == Decimal("15000.00") and nov.carried_from == date(2026, 10, 1)
    with pytest.raises(esf.EsfIncomplete) as err:
        esf.document_file(session, f.actor(owner, o), nov.id, "esf")
    assert {(m.scope, m.item) for m in err.value.missing if "Перерасчёт" in m.subject} == carried
