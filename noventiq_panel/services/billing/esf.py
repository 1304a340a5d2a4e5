"""Electronic invoices (ЭСФ, e-faktura) and acts prepared for Didox / Soliq from the closing documents.

Companies in Uzbekistan receive a monthly ЭСФ for continuous services, dated the last day of the
month. The panel cannot sign for the reseller (the E-IMZO key is in the accountant's hands): for each
closing document (``documents``: act + счёт-фактура of one organisation and month) it prepares the
two JSON files the reseller's accountant imports into Didox and signs there:

- ``esf`` — document type **002**, «Счёт-фактура без акта»;
- ``act`` — document type **005**, «Акт выполненных работ».

Where the layouts come from (as read for this change; NOT tested against the Didox service, neither
its test API nor production — nobody has sent these files to Didox yet):

- 002: the Didox integrator documentation «JSON документов», section 1 «Счёт фактура»
  (https://api-docs.didox.uz/ru/integrators-property-documents, mirrored copy updated 2026-08-06),
  with its strict rules of the roaming centre: no field beyond the example, an unused block is
  ``null`` (not ``{}``), ``Count`` up to 6 decimals and every other number up to 2, dates
  ``yyyy-MM-dd``, ``WithoutVat`` only when ``HasVat`` is true, ``Director`` required for both
  parties. The older Soliq layout (``factura-save`` of the Soliq Service API, as shown in the public
  README of github.com/uadilov/Soliq-Service-API-Documentation) agrees on every block used here; it
  also has ``FacturaId``/``FacturaProductId`` (ids the roaming operator issues) and ``Oked`` in the
  party blocks, which the newer Didox example no longer lists: they are left out, so the ОКЭД is
  kept and checked but not written to the file.
- 005: the Didox documentation «06. Документы», method 6 «Обновление черновика»
  (https://api-docs.didox.uz/ru/integrators-documents): ``ActDoc``, ``ContractDoc``,
  ``SellerTin``/``SellerName``/branch, ``BuyerTin``/``BuyerName``/branch and a ``ProductList`` whose
  products carry ``TotalSumWithoutVat``, ``VatRate``, ``VatSum``, ``TotalSum`` and ``WithoutVat``
  (the same shape as the act builder of the ``didox`` Node.js SDK, github.com/mirzaevoff/didox).
  Section 5 «Акт» of «JSON документов» shows a variant that moves the VAT fields into an
  ``extended_json`` copy; the inline form of method 6 is used.

Inferred here (no source says it for this case; the accountant should confirm on the first import):

- Prices of the panel include VAT. Per line ``DeliverySumWithVat`` (002) / ``TotalSum`` (005) is the
  closing document's line amount, ``VatSum`` its VAT part exactly as the closing document computes it
  (``invoice_document.vat_part``, 12 %, half-up to the tiyin), ``DeliverySum`` the difference. So every
  line and the totals equal the closing document's to the tiyin.
- ``Summa`` (price per unit without VAT) must give ``Count × Summa = DeliverySum``. When the line's
  quantity divides the amount without VAT into whole tiyin, ``Count`` is the quantity; otherwise the
  line is written as ``Count`` 1 with the quantity in its name (so no amount is rounded away).
- ``Origin`` 3 («Оказание услуг»); ``VatRegStatus`` 20 («плательщик НДС, сертификат активный») for a
  buyer with a VAT registration code (the seller's comes from ``PANEL_SELLER_VAT_REG_STATUS``);
  ``FacturaType`` 0 (standard).
- An ЭСФ has no negative line: a month whose closing document holds a refund line is reported, and
  its corrective ЭСФ is left to the accountant. Amounts are in сум: an organisation billed in another
  currency is reported too.

:func:`missing_items` / :func:`check_month` list what an ЭСФ of a month would lack (seller
requisites in the settings, the organisation's requisites, a product without ИКПУ/package code,
refund lines, the currency). The check runs before the month is closed (the ``esf_check`` job near
the month's end, the ``documents`` job and ``noventiq-panel documents generate`` before generating,
``noventiq-panel documents check --month``); it does not block the act and its PDF. The download
(:func:`document_file`) refuses with :class:`EsfIncomplete`, naming what is missing, instead of
producing a file Didox would reject.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlmodel import Session, col, select

from noventiq_panel.config import Settings, get_settings
from noventiq_panel.models import (
    ClosingDocument,
    Organisation,
    Plan,
    Product,
    Subscription,
)
from noventiq_panel.services.billing import documents
from noventiq_panel.services.core import requisites
from noventiq_panel.services.core.authz import Actor, can_take_tax_documents, load_owned
from noventiq_panel.services.core.clock import next_month
from noventiq_panel.services.core.errors import DomainError, InvalidInput

log = logging.getLogger(__name__)

DOC_TYPES = {"esf": "002", "act": "005"}
KINDS = tuple(DOC_TYPES)
ORIGIN_SERVICES = 3
VAT_REG_STATUS_ACTIVE = 20
CURRENCY = "UZS"
CENT = Decimal("0.01")


# ---------------------------------------------------------------- what is missing

@dataclass(frozen=True)
class Missing:
    """One thing an ЭСФ lacks. ``scope``: seller | organisation | product | document; ``item``: the
    field (``vat_reg_code``, ``mxik_code``...) or the problem (``refund_line``, ``currency``);
    ``invalid``: present but not in the format the tax service takes."""

    scope: str
    item: str
    subject: str = ""
    org_id: int | None = None
    invalid: bool = False

    @property
    def key(self) -> str:
        return f"esf.missing.{self.scope}.{self.item}"

    def text(self, locale: str | None = None) -> str:
        """The item in words (``locale``: the catalogs; None: English for logs and the CLI)."""
        if locale is not None:
            from noventiq_panel.i18n import t

            line = t(self.key, locale, subject=self.subject)
            return line + (" " + t("esf.missing.invalid", locale) if self.invalid else "")
        what = self.item.replace("_", " ")
        where = {"seller": "seller (settings)", "organisation": f"organisation «{self.subject}»",
                 "product": f"product «{self.subject}»", "document": f"closing document of «{self.subject}»"}
        state = "invalid" if self.invalid else ("" if self.scope == "document" else "missing")
        return f"{where.get(self.scope, self.scope)}: {what}" + (f" {state}" if state else "")


class EsfIncomplete(InvalidInput):
    """The ЭСФ (or act) of a closing document cannot be made: ``missing`` lists why."""

    def __init__(self, missing: list[Missing]):
        self.missing = list(missing)
        super().__init__("the electronic invoice lacks: " + "; ".join(m.text() for m in self.missing),
                         field="document", key="error.esf.incomplete", count=len(self.missing))


def describe(missing: list[Missing], locale: str | None) -> str:
    """What is missing, translated, as one message (the page's toast)."""
    from noventiq_panel.i18n import t

    return t("error.esf.incomplete_items", locale, items="; ".join(m.text(locale) for m in missing))


def _check(field_name: str, value: Any, validate, scope: str, subject: str = "", org_id: int | None = None,
           ) -> list[Missing]:
    text = value.strip() if isinstance(value, str) else value
    if not text:
        return [Missing(scope, field_name, subject, org_id)]
    if validate is not None:
        try:
            validate(text)
        except DomainError:
            return [Missing(scope, field_name, subject, org_id, invalid=True)]
    return []


def seller_missing(settings: Settings | None = None) -> list[Missing]:
    """The reseller's own requisites (``PANEL_SELLER_*``) an ЭСФ needs."""
    s = settings or get_settings()
    out: list[Missing] = []
    for name, value, check in (
        ("name", s.seller_name, None),
        ("tax_id", s.seller_tax_id, requisites.validate_tax_id),
        ("vat_reg_code", s.seller_vat_reg_code, requisites.validate_vat_reg_code),
        ("bank_account", s.seller_account, requisites.validate_bank_account),
        ("bank_mfo", s.seller_mfo, requisites.validate_mfo),
        ("address", s.seller_address, None),
        ("director", s.seller_director, None),
        ("oked", s.seller_oked, requisites.validate_oked),
    ):
        out += _check(name, value, check, "seller")
    return out


def organisation_missing(org: Organisation) -> list[Missing]:
    """An organisation's requisites an ЭСФ needs (its tax id, VAT code, bank, address, director)."""
    out: list[Missing] = []
    for name, value, check in (
        ("tax_id", org.tax_id, requisites.validate_tax_id),
        ("vat_reg_code", org.vat_reg_code, requisites.validate_vat_reg_code),
        ("bank_account", org.bank_account, requisites.validate_bank_account),
        ("bank_mfo", org.bank_mfo, requisites.validate_mfo),
        ("address", org.address, None),
        ("director", org.director, None),
    ):
        out += _check(name, value, check, "organisation", org.name, org.id)
    if org.oked:
        out += _check("oked", org.oked, requisites.validate_oked, "organisation", org.name, org.id)
    if org.contract_no and org.contract_date is None:
        out.append(Missing("organisation", "contract_date", org.name, org.id))
    elif not org.contract_no:
        s = get_settings()  # no contract of its own: the public offer of the settings
        if not s.seller_offer_no or _iso_date(s.seller_offer_date) is None:
            out.append(Missing("organisation", "contract", org.name, org.id))
    if org.billing_currency != CURRENCY:
        out.append(Missing("organisation", "currency", org.name, org.id))
    return out


def product_missing(product: Product) -> list[Missing]:
    """A product's ИКПУ/MXIK code and package (with their names in the classifier)."""
    out: list[Missing] = []
    for name, value, check in (
        ("mxik_code", product.mxik_code, requisites.validate_mxik_code),
        ("mxik_name", product.mxik_name, None),
        ("package_code", product.package_code, requisites.validate_package_code),
        ("package_name", product.package_name, None),
    ):
        out += _check(name, value, check, "product", product.name)
    return out


# ---------------------------------------------------------------- the lines

@dataclass(frozen=True)
class EsfLine:
    """One line of the ЭСФ / act, from one line of the closing document."""

    ordno: int
    name: str
    product: Product | None
    count: Decimal
    price: Decimal  # per unit, without VAT
    net: Decimal  # DeliverySum: without VAT
    vat: Decimal
    amount: Decimal  # with VAT: the closing document's line amount


@dataclass
class Prepared:
    org: Organisation
    month: date
    lines: list[EsfLine]
    total: Decimal
    vat: Decimal
    missing: list[Missing] = field(default_factory=list)


def _products(session: Session, subscription_ids: set[int]) -> dict[int, Product]:
    if not subscription_ids:
        return {}
    rows = session.exec(
        select(Subscription.id, Product)
        .join(Plan, Plan.id == Subscription.plan_id)
        .join(Product, Product.id == Plan.product_id)
        .where(col(Subscription.id).in_(subscription_ids))
    ).all()
    return {sub_id: product for sub_id, product in rows}


def _count_and_price(quantity: Decimal, net: Decimal) -> tuple[Decimal, Decimal] | None:
    """(Count, Summa) with Count × Summa = net exactly, or None when the quantity does not divide it."""
    if quantity <= 0 or quantity != quantity.to_integral_value():
        return None
    price = (net / quantity).quantize(CENT, rounding=ROUND_HALF_UP)
    return (quantity, price) if price * quantity == net else None


def prepare(session: Session, org: Organisation, month: date) -> Prepared:
    """The ЭСФ lines of the organisation's month (the closing document's lines, ``documents.
    month_lines_with_subscriptions``) and everything missing for its ЭСФ, seller included."""
    rate = get_settings().vat_rate
    lines, subscriptions, total, vat = documents.month_lines_with_subscriptions(session, org, month)
    products = _products(session, {s for s in subscriptions if s})
    missing = seller_missing() + organisation_missing(org)
    out: list[EsfLine] = []
    checked: set[int] = set()
    for number, (line, sub_id) in enumerate(zip(lines, subscriptions), start=1):
        product = products.get(sub_id) if sub_id else None
        if product is None:
            missing.append(Missing("document", "line_without_product", f"{org.name}: {line.description}", org.id))
        elif product.id not in checked:
            checked.add(product.id)
            missing += product_missing(product)
        if line.amount < 0:
            missing.append(Missing("document", "refund_line", f"{org.name}: {line.description}", org.id))
        net = line.amount - line.vat
        split = _count_and_price(Decimal(line.quantity), net)
        if split is None:
            count, price = Decimal(1), net
            quantity = f"{line.quantity.normalize():f} {line.unit}"
            name = line.description if quantity in line.description else f"{line.description} ({quantity})"
        else:
            (count, price), name = split, line.description
        out.append(EsfLine(ordno=number, name=name[:500], product=product, count=count, price=price, net=net,
                           vat=line.vat, amount=line.amount))
    if rate <= 0:
        missing.append(Missing("seller", "vat_rate"))
    return Prepared(org=org, month=month, lines=out, total=total, vat=vat, missing=missing)


# ---------------------------------------------------------------- the month check

@dataclass
class MonthCheck:
    month: date
    organisations: int
    missing: list[Missing]

    @property
    def ok(self) -> bool:
        return not self.missing

    def lines(self) -> list[str]:
        return [m.text() for m in self.missing]


def check_month(session: Session, month) -> MonthCheck:
    """What the ЭСФ of ``month`` (a date in it or ``YYYY-MM``; the current month too, so far) would
    lack, for every organisation charged in it. Each item once (a product shared by many
    organisations, the seller's requisites). Reads only; logs each item as a warning."""
    month = documents.parse_month(month)
    found: list[Missing] = []
    seen: set[Missing] = set()
    org_ids = documents.orgs_charged(session, month)
    for org_id in org_ids:
        org = session.get(Organisation, org_id)
        prepared = prepare(session, org, month)
        if not prepared.lines or prepared.total == 0:
            continue
        for item in prepared.missing:
            if item not in seen:
                seen.add(item)
                found.append(item)
    session.rollback()
    for item in found:
        log.warning("ЭСФ of %s: %s", f"{month:%Y-%m}", item.text())
    return MonthCheck(month=month, organisations=len(org_ids), missing=found)


# ---------------------------------------------------------------- the JSON files

def _money(value: Decimal) -> str:
    return f"{Decimal(value).quantize(CENT, rounding=ROUND_HALF_UP):f}"


def _count(value: Decimal):
    value = Decimal(value)
    if value == value.to_integral_value():
        return int(value)
    return f"{value.quantize(Decimal('0.000001'), rounding=ROUND_HALF_UP).normalize():f}"


def _iso_date(value: Any) -> date | None:
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value).strip())
    except ValueError:
        return None


def _contract(org: Organisation, settings: Settings) -> dict[str, str]:
    if org.contract_no and org.contract_date:
        return {"ContractNo": org.contract_no, "ContractDate": org.contract_date.isoformat()}
    offer_date = _iso_date(settings.seller_offer_date)
    return {"ContractNo": settings.seller_offer_no, "ContractDate": offer_date.isoformat() if offer_date else ""}


def _doc_date(month: date) -> date:
    return next_month(month) - timedelta(days=1)


def factura_json(doc: ClosingDocument, prepared: Prepared, settings: Settings | None = None) -> dict[str, Any]:
    """The ЭСФ (Didox type 002) of a closing document, from :func:`prepare`'s lines."""
    s = settings or get_settings()
    org = prepared.org
    rate = s.vat_rate
    products = []
    for line in prepared.lines:
        p = line.product
        products.append({
            "OrdNo": line.ordno,
            "LgotaId": None,
            "CommittentName": "",
            "CommittentTin": "",
            "CommittentVatRegCode": "",
            "CommittentVatRegStatus": None,
            "Name": line.name,
            "CatalogCode": p.mxik_code if p else "",
            "CatalogName": p.mxik_name if p else "",
            "Marks": None,
            "Barcode": "",
            "PackageCode": p.package_code if p else "",
            "PackageName": p.package_name if p else "",
            "Count": _count(line.count),
            "Summa": _money(line.price),
            "DeliverySum": _money(line.net),
            "VatRate": f"{rate.normalize():f}",
            "VatSum": _money(line.vat),
            "ExciseRate": 0,
            "ExciseSum": 0,
            "DeliverySumWithVat": _money(line.amount),
            "WithoutVat": False,
            "LgotaType": None,
            "LgotaName": None,
            "LgotaVatSum": None,
            "WarehouseId": None,
            "Origin": ORIGIN_SERVICES,
        })
    return {
        "Version": 1,
        "WaybillLocalIds": [],
        "HasMarking": False,
        "HasRent": False,
        "FacturaRentDoc": None,
        "FacturaType": 0,
        "ProductList": {
            "HasCommittent": False,
            "HasLgota": False,
            "Tin": s.seller_tax_id,
            "HideReportCommittent": False,
            "HasExcise": False,
            "HasVat": True,
            "Products": products,
        },
        "FacturaDoc": {"FacturaNo": documents.invoice_number(doc.year, doc.number),
                       "FacturaDate": _doc_date(doc.period).isoformat()},
        "ContractDoc": _contract(org, s),
        "ContractId": None,
        "LotId": "",
        "OldFacturaDoc": None,
        "SellerTin": s.seller_tax_id,
        "Seller": {
            "Name": s.seller_name,
            "BranchCode": "",
            "BranchName": "",
            "VatRegCode": s.seller_vat_reg_code,
            "Account": s.seller_account,
            "BankId": s.seller_mfo,
            "Address": s.seller_address,
            "Director": s.seller_director,
            "Accountant": s.seller_accountant,
            "VatRegStatus": s.seller_vat_reg_status,
        },
        "ItemReleasedDoc": None,
        "BuyerTin": org.tax_id,
        "Buyer": {
            "Name": org.name,
            "BranchCode": "",
            "BranchName": "",
            "VatRegCode": org.vat_reg_code,
            "Account": org.bank_account,
            "BankId": org.bank_mfo,
            "Address": org.address,
            "Director": org.director,
            "Accountant": "",
            "VatRegStatus": VAT_REG_STATUS_ACTIVE if org.vat_reg_code else None,
        },
        "FacturaInvestmentObjectDoc": None,
        "FacturaEmpowermentDoc": None,
        "ForeignCompany": None,
    }


def act_json(doc: ClosingDocument, prepared: Prepared, settings: Settings | None = None) -> dict[str, Any]:
    """The act of completed work (Didox type 005) of a closing document."""
    s = settings or get_settings()
    org = prepared.org
    last_day = _doc_date(doc.period)
    text = (f"Мы, нижеподписавшиеся, {s.seller_name}, именуемое в дальнейшем Исполнитель, с одной стороны, и "
            f"{org.name}, именуемое в дальнейшем Заказчик, с другой стороны, составили настоящий Акт о том, что "
            f"услуги за период с {doc.period:%d.%m.%Y} по {last_day:%d.%m.%Y} оказаны в полном объёме и в срок; "
            f"Заказчик претензий по объёму, качеству и срокам оказания услуг не имеет.")
    products = []
    for line in prepared.lines:
        p = line.product
        products.append({
            "OrdNo": line.ordno,
            "CatalogCode": p.mxik_code if p else "",
            "CatalogName": p.mxik_name if p else "",
            "Name": line.name,
            "MeasureId": None,
            "PackageCode": p.package_code if p else "",
            "PackageName": p.package_name if p else "",
            "Count": str(_count(line.count)),
            "Summa": _money(line.price),
            "TotalSumWithoutVat": _money(line.net),
            "VatRate": f"{s.vat_rate.normalize():f}",
            "VatSum": _money(line.vat),
            "TotalSum": _money(line.amount),
            "WithoutVat": False,
        })
    return {
        "ActDoc": {"ActNo": documents.act_number(doc.year, doc.number), "ActDate": last_day.isoformat(),
                   "ActText": text},
        "ContractDoc": _contract(org, s),
        "SellerTin": s.seller_tax_id,
        "SellerName": s.seller_name,
        "SellerBranchCode": "",
        "SellerBranchName": "",
        "BuyerTin": org.tax_id,
        "BuyerName": org.name,
        "BuyerBranchCode": "",
        "BuyerBranchName": "",
        "ProductList": {"Tin": s.seller_tax_id, "HasExcise": False, "HasVat": True, "Products": products},
    }


def build(session: Session, doc: ClosingDocument, kind: str = "esf") -> dict[str, Any]:
    """The JSON (a dict) of ``kind`` (esf | act) of a closing document, or :class:`EsfIncomplete`.
    Refuses when the month's lines no longer add up to the stored document (to the tiyin)."""
    if kind not in DOC_TYPES:
        raise InvalidInput(f"kind is one of {', '.join(KINDS)}", field="kind", key="error.esf.kind")
    org = session.get(Organisation, doc.org_id)
    prepared = prepare(session, org, doc.period)
    if prepared.missing:
        raise EsfIncomplete(prepared.missing)
    if prepared.total != doc.total or prepared.vat != doc.vat:
        raise InvalidInput(f"the month's charges ({prepared.total}) no longer match the document ({doc.total})",
                           field="document", key="error.esf.total_changed")
    return factura_json(doc, prepared) if kind == "esf" else act_json(doc, prepared)


def filename(doc: ClosingDocument, kind: str) -> str:
    prefix = "esf" if kind == "esf" else "act"
    return f"{prefix}-{DOC_TYPES[kind]}-{doc.year}-{doc.number:06d}-{doc.period:%Y-%m}.json"


def to_bytes(data: dict[str, Any]) -> bytes:
    return json.dumps(data, ensure_ascii=False, indent=2).encode("utf-8")


def document_file(session: Session, actor: Actor, doc_id, kind: str = "esf") -> tuple[str, bytes]:
    """(file name, JSON) of the ЭСФ or act of one of the organisation's closing documents, for its
    Owner or Financial manager; NotFound for a foreign or missing id, EsfIncomplete naming what is
    missing. Reads only."""
    try:
        if kind not in DOC_TYPES:
            raise InvalidInput(f"kind is one of {', '.join(KINDS)}", field="kind", key="error.esf.kind")
        access = can_take_tax_documents(session, actor)
        doc = load_owned(session, access, ClosingDocument, doc_id, "document", key="error.billing.document_not_found")
        data = build(session, doc, kind)
        return filename(doc, kind), to_bytes(data)
    finally:
        session.rollback()


def find_document(session: Session, reference) -> ClosingDocument:
    """Operator lookup: a closing document by id (``42``) or number (``АКТ-2026-000042``,
    ``СФ-2026-000042``); InvalidInput/NotFound otherwise."""
    from noventiq_panel.services.core.errors import NotFound

    text = str(reference).strip()
    if text.isdigit():
        doc = session.get(ClosingDocument, int(text)) if int(text) < 2**31 else None
    else:
        parts = text.replace("/", "-").split("-")
        if len(parts) != 3 or not (parts[1].isdigit() and parts[2].isdigit()):
            raise InvalidInput(f"not a document id or number: {reference!r}", field="document",
                               key="error.billing.document_not_found")
        doc = session.exec(select(ClosingDocument).where(ClosingDocument.year == int(parts[1]),
                                                         ClosingDocument.number == int(parts[2]),
                                                         ClosingDocument.kind == documents.KIND)).first()
    if doc is None:
        raise NotFound("document not found", key="error.billing.document_not_found")
    return doc


def operator_file(session: Session, reference, kind: str = "esf") -> tuple[str, bytes]:
    """(file name, JSON) for the CLI (the system: any organisation's document)."""
    try:
        doc = find_document(session, reference)
        return filename(doc, kind), to_bytes(build(session, doc, kind))
    finally:
        session.rollback()


__all__ = [
    "DOC_TYPES",
    "KINDS",
    "EsfIncomplete",
    "Missing",
    "MonthCheck",
    "act_json",
    "build",
    "check_month",
    "describe",
    "document_file",
    "factura_json",
    "operator_file",
    "organisation_missing",
    "prepare",
    "product_missing",
    "seller_missing",
]
