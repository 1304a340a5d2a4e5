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
  kept but neither required nor written to the file.
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
  buyer with a VAT registration code (a buyer that pays no VAT has none: empty code, status null) (the seller's comes from ``PANEL_SELLER_VAT_REG_STATUS``);
  ``FacturaType`` 0 (standard).
- An ЭСФ has no negative line: a month whose closing document holds a refund line is reported, and
  its corrective ЭСФ is left to the accountant. Amounts are in сум: an organisation billed in another
  currency is reported too.

An issued document's files are made from its record (``ClosingDocument.esf_record``, taken at issue
by ``documents`` through ``esf_record``: parties, contract, VAT rate, lines with the codes of the
product each line billed then), never from the organisation, settings or catalog of the day, so they
are the same file tomorrow as today (:func:`make`). A value missing (or malformed) at issue may be
taken later from the then-current data — the organisation, the settings, the line's own product (not
the subscription's plan of today); the buyer's VAT code, the lines, amounts and VAT rate never are.
The first complete file writes those values to the document (``esf_later``), so they do not change
again, and :class:`EsfFile` ``notes`` say which they are. A document issued before the records
existed (migration 0011) gets its record, from the day's data, the first time its file is made.

:func:`prepare` / :func:`check_month` list what an ЭСФ of a month would lack (seller
requisites in the settings, the organisation's requisites, a product without ИКПУ/package code,
refund lines, the currency, a contract dated after the invoice). The check runs before the month is closed (the ``esf_check`` job near
the month's end, the ``documents`` job and ``noventiq-panel documents generate`` before generating,
``noventiq-panel documents check --month``); it does not block the act and its PDF. The download
(:func:`document_export`) refuses with :class:`EsfIncomplete`, naming what is missing, instead of
producing a file Didox would reject.
"""

from __future__ import annotations

import copy
import json
import logging
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy import update
from sqlmodel import Session, col, select

from noventiq_panel.config import Settings, get_settings
from noventiq_panel.models import ClosingDocument, Organisation, Product
from noventiq_panel.models.types import utcnow
from noventiq_panel.services.billing import documents, esf_record
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


# The checks of each party's requisites: (field, format check or None).
SELLER_CHECKS = (
    ("name", None),
    ("tax_id", requisites.validate_tax_id),
    ("vat_reg_code", requisites.validate_vat_reg_code),
    ("bank_account", requisites.validate_bank_account),
    ("bank_mfo", requisites.validate_mfo),
    ("address", None),
    ("director", None),
)  # the seller's ОКЭД is not written to the file (see above), so it is not required either
BUYER_CHECKS = (
    ("name", None),
    ("tax_id", requisites.validate_tax_id),
    ("bank_account", requisites.validate_bank_account),
    ("bank_mfo", requisites.validate_mfo),
    ("address", None),
    ("director", None),
)  # the buyer's VAT registration code is optional: a buyer that pays no VAT gets an ЭСФ as well
PRODUCT_CHECKS = (
    ("mxik_code", requisites.validate_mxik_code),
    ("mxik_name", None),
    ("package_code", requisites.validate_package_code),
    ("package_name", None),
)


def _party_missing(values: dict[str, Any], checks, scope: str, subject: str = "", org_id: int | None = None,
                   ) -> list[Missing]:
    return [m for name, check in checks for m in _check(name, values.get(name), check, scope, subject, org_id)]


def seller_missing(settings: Settings | None = None) -> list[Missing]:
    """The reseller's own requisites (``PANEL_SELLER_*``) an ЭСФ needs."""
    return _party_missing(esf_record.seller(settings), SELLER_CHECKS, "seller")


def _buyer_missing(buyer: dict[str, Any], org_id: int | None) -> list[Missing]:
    subject = buyer.get("name") or ""
    out = _party_missing(buyer, BUYER_CHECKS, "organisation", subject, org_id)
    if buyer.get("vat_reg_code"):
        out += _check("vat_reg_code", buyer["vat_reg_code"], requisites.validate_vat_reg_code, "organisation",
                      subject, org_id)
    if buyer.get("currency") != CURRENCY:
        out.append(Missing("organisation", "currency", subject, org_id))
    return out


def _contract_missing(contract: dict[str, Any], doc_date: date | None, subject: str = "",
                      org_id: int | None = None) -> list[Missing]:
    """The contract (or public offer) an ЭСФ names: a number, and a date not after the ЭСФ's."""
    if not str(contract.get("no") or "").strip():
        return [Missing("organisation", "contract", subject, org_id)]
    when = esf_record.iso_date(contract.get("date")) if contract.get("date") else None
    if when is None:
        return [Missing("organisation", "contract_date", subject, org_id, invalid=bool(contract.get("date")))]
    if doc_date is not None and when > doc_date:
        return [Missing("organisation", "contract_after_invoice", subject, org_id)]
    return []


def organisation_missing(org: Organisation, doc_date: date | None = None) -> list[Missing]:
    """An organisation's requisites an ЭСФ needs now (its tax id, bank, address, director, contract;
    the VAT registration code only checked when there is one)."""
    return (_buyer_missing(esf_record.buyer(org), org.id)
            + _contract_missing(esf_record.contract(org), doc_date, org.name, org.id))


def _product_missing(product: dict[str, Any]) -> list[Missing]:
    return _party_missing(product, PRODUCT_CHECKS, "product", product.get("name") or "")


def product_missing(product: Product) -> list[Missing]:
    """A product's ИКПУ/MXIK code and package (with their names in the classifier)."""
    return _product_missing(esf_record.product(product))


# ---------------------------------------------------------------- the lines

@dataclass(frozen=True)
class EsfLine:
    """One line of the ЭСФ / act, from one line of the closing document."""

    ordno: int
    name: str
    product: dict[str, Any] | None  # the product's name and codes as the record keeps them
    count: Decimal
    price: Decimal  # per unit, without VAT
    net: Decimal  # DeliverySum: without VAT
    vat: Decimal
    amount: Decimal  # with VAT: the closing document's line amount


@dataclass
class Prepared:
    """The ЭСФ of one organisation and month, made from a record (``esf_record``): the parties,
    the contract and the VAT rate in ``record``, the lines, and what is missing."""

    record: dict[str, Any]
    org_id: int | None
    month: date
    lines: list[EsfLine]
    total: Decimal
    vat: Decimal
    missing: list[Missing] = field(default_factory=list)

    @property
    def vat_rate(self) -> Decimal:
        return Decimal(self.record["vat_rate"])


def _count_and_price(quantity: Decimal, net: Decimal) -> tuple[Decimal, Decimal] | None:
    """(Count, Summa) with Count × Summa = net exactly, or None when the quantity does not divide it."""
    if quantity <= 0 or quantity != quantity.to_integral_value():
        return None
    price = (net / quantity).quantize(CENT, rounding=ROUND_HALF_UP)
    return (quantity, price) if price * quantity == net else None


def _doc_date(month: date) -> date:
    return next_month(month) - timedelta(days=1)


def from_record(record: dict[str, Any], month: date, org_id: int | None) -> Prepared:
    """The ЭСФ lines of a record and everything missing for its ЭСФ, seller included."""
    buyer = record["buyer"]
    subject = buyer.get("name") or ""
    missing = (_party_missing(record["seller"], SELLER_CHECKS, "seller") + _buyer_missing(buyer, org_id)
               + _contract_missing(record["contract"], _doc_date(month), subject, org_id))
    out: list[EsfLine] = []
    checked: set[int] = set()
    for number, row in enumerate(record["lines"], start=1):
        amount, vat, quantity = Decimal(row["amount"]), Decimal(row["vat"]), Decimal(row["quantity"])
        description, product = row["description"], row.get("product")
        if product is None:
            missing.append(Missing("document", "line_without_product", f"{subject}: {description}", org_id))
        elif product["id"] not in checked:
            checked.add(product["id"])
            missing += _product_missing(product)
        if amount < 0:
            missing.append(Missing("document", "refund_line", f"{subject}: {description}", org_id))
        net = amount - vat
        split = _count_and_price(quantity, net)
        if split is None:
            count, price = Decimal(1), net
            text = f"{quantity.normalize():f} {row['unit']}"
            name = description if text in description else f"{description} ({text})"
        else:
            (count, price), name = split, description
        out.append(EsfLine(ordno=number, name=name[:500], product=product, count=count, price=price, net=net,
                           vat=vat, amount=amount))
    if Decimal(record["vat_rate"]) <= 0:
        missing.append(Missing("seller", "vat_rate"))
    total = sum((line.amount for line in out), Decimal("0.00"))
    vat_total = sum((line.vat for line in out), Decimal("0.00"))
    return Prepared(record=record, org_id=org_id, month=month, lines=out, total=total, vat=vat_total,
                    missing=missing)


def prepare(session: Session, org: Organisation, month: date) -> Prepared:
    """The ЭСФ the organisation's month would have if its document were issued now (the closing
    document's lines with the line of earlier credits carried into it, ``documents.act_lines``, and
    today's requisites and codes), and everything missing for it. Reads only."""
    rate = get_settings().vat_rate
    lines, subscriptions, _total, _vat, _carried_from = documents.act_lines(session, org, month, rate=rate)
    return from_record(esf_record.take(session, org, lines, subscriptions, vat_rate=rate), month, org.id)


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


# ---------------------------------------------------------------- an issued document's record

LEGACY_VAT_RATES = (Decimal(12), Decimal(15), Decimal(20))  # the rates Uzbekistan has had (2023, 2019, before)


def _legacy_record(session: Session, doc: ClosingDocument, now: datetime) -> dict[str, Any]:
    """The record of a document issued before the panel kept one (migration 0011): the month's
    lines and today's requisites and codes, with the VAT rate whose per-line VAT gives the
    document's VAT to the tiyin (the current one first)."""
    org = session.get(Organisation, doc.org_id)
    current = get_settings().vat_rate
    for rate in (current,) + tuple(r for r in LEGACY_VAT_RATES if r != current):
        lines, subscriptions, total, vat = documents.month_lines_with_subscriptions(session, org, doc.period,
                                                                                    rate=rate)
        if total != doc.total:
            raise InvalidInput(f"the month's charges ({total}) no longer match the document ({doc.total})",
                               field="document", key="error.esf.total_changed")
        if vat == doc.vat:
            record = esf_record.take(session, org, lines, subscriptions, vat_rate=rate, now=now)
            return {**record, "recorded_later": True}
    raise InvalidInput(f"no VAT rate gives the document's VAT ({doc.vat}); it was issued before the panel kept "
                       "the rate of each document", field="document", key="error.esf.vat_rate_unknown")


def _later_values(session: Session, doc: ClosingDocument, record: dict[str, Any]) -> dict[str, Any]:
    """What was missing (or malformed) in the record and is there now, in the organisation, the
    settings or the product the line billed at issue (never another plan's product): ``seller.<field>``,
    ``buyer.<field>``, ``contract``, ``product.<id>.<field>``. The VAT code of a buyer that had none,
    the amounts, the lines and the VAT rate are never taken later."""
    later: dict[str, Any] = {}
    org = session.get(Organisation, doc.org_id)
    for party, checks, now_values in (("seller", SELLER_CHECKS, esf_record.seller()),
                                      ("buyer", BUYER_CHECKS, esf_record.buyer(org))):
        for name, check in checks:
            if (_check(name, record[party].get(name), check, party)
                    and not _check(name, now_values.get(name), check, party)):
                later[f"{party}.{name}"] = now_values[name]
    doc_date = _doc_date(doc.period)
    contract = esf_record.contract(org)
    if _contract_missing(record["contract"], doc_date) and not _contract_missing(contract, doc_date):
        later["contract"] = contract
    for row in record["lines"]:
        product = row.get("product")
        if product is None:
            continue
        current = None
        for name, check in PRODUCT_CHECKS:
            key = f"product.{product['id']}.{name}"
            if key in later or not _check(name, product.get(name), check, "product"):
                continue
            current = current or session.get(Product, product["id"])
            value = getattr(current, name, "") if current is not None else ""
            if not _check(name, value, check, "product"):
                later[key] = value
    return later


def _with_later(record: dict[str, Any], later: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(record)
    for key, value in later.items():
        parts = key.split(".")
        if parts[0] in ("seller", "buyer"):
            out[parts[0]][parts[1]] = value
        elif parts[0] == "contract":
            out["contract"] = dict(value)
        elif parts[0] == "product":
            for row in out["lines"]:
                if row.get("product") and str(row["product"]["id"]) == parts[1]:
                    row["product"][parts[2]] = value
    return out


def _later_items(record: dict[str, Any], later: dict[str, Any], org_id: int | None) -> list[Missing]:
    """The values taken later, named like what was missing (for the message of the download)."""
    subject = record["buyer"].get("name") or ""
    names = {str(row["product"]["id"]): row["product"].get("name", "") for row in record["lines"]
             if row.get("product")}
    items = []
    for key in later:
        parts = key.split(".")
        if parts[0] == "seller":
            items.append(Missing("seller", parts[1]))
        elif parts[0] == "buyer":
            items.append(Missing("organisation", parts[1], subject, org_id))
        elif parts[0] == "contract":
            items.append(Missing("organisation", "contract", subject, org_id))
        else:
            items.append(Missing("product", parts[2], names.get(parts[1], ""), org_id))
    return items


@dataclass
class EsfFile:
    """A made ЭСФ or act: the file, and which of its values were not on the document's record at
    issue (``later``: taken on ``later_at`` from the then-current data; ``recorded_at``: the whole
    record was taken then, for a document issued before the panel kept records)."""

    filename: str
    data: dict[str, Any]
    later: list[Missing] = field(default_factory=list)
    later_at: datetime | None = None
    recorded_at: datetime | None = None

    @property
    def content(self) -> bytes:
        return to_bytes(self.data)

    def notes(self, locale: str | None = None) -> str:
        """What the recipient should know (translated; None: English for the CLI), or ``""``."""
        parts = []
        if self.recorded_at is not None:
            day = f"{self.recorded_at:%Y-%m-%d}"
            if locale is None:
                parts.append(f"issued before the panel kept ЭСФ records: its requisites and codes are those of {day}")
            else:
                from noventiq_panel.i18n import t

                parts.append(t("esf.later.recorded", locale, date=day))
        if self.later:
            day = f"{self.later_at:%Y-%m-%d}" if self.later_at else ""
            if locale is None:
                parts.append(f"taken after the document was issued (on {day}): "
                             + "; ".join(m.text() for m in self.later))
            else:
                from noventiq_panel.i18n import t

                parts.append(t("esf.later.values", locale, date=day,
                               items="; ".join(m.text(locale) for m in self.later)))
        return " ".join(parts)


def _when(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(value) if value else None
    except (TypeError, ValueError):
        return None


def _store(session: Session, doc: ClosingDocument, **values: Any) -> bool:
    """Write ``esf_record``/``esf_later`` once: only where the column is still empty (a
    simultaneous first download keeps the first writer's values). Commits; False when another won."""
    statement = update(ClosingDocument).where(col(ClosingDocument.id) == doc.id)
    for name in values:
        statement = statement.where(getattr(ClosingDocument, name).is_(None))
    done = session.execute(statement.values(**values)).rowcount == 1
    session.commit()
    return done


def make(session: Session, doc: ClosingDocument, kind: str = "esf", *, now: datetime | None = None,
         _again: bool = True) -> EsfFile:
    """The ЭСФ (``kind`` esf) or act of an issued closing document, from its record: the same file
    every day, whatever changed in the organisation, the settings or the catalog since. What was
    missing at issue may be taken later from the then-current data; the first time the file is
    complete those values are written to the document (``esf_later``) and stay. A document issued
    before the panel kept records gets its record then, from today's data (its month's lines must
    still add up to it to the tiyin). :class:`EsfIncomplete` names what is still missing (nothing
    is written then). Commits what it writes."""
    if kind not in DOC_TYPES:
        raise InvalidInput(f"kind is one of {', '.join(KINDS)}", field="kind", key="error.esf.kind")
    now = now or utcnow()
    record, recorded_at = doc.esf_record, None
    if record is None:
        record = _legacy_record(session, doc, now)
        new_record = True
    else:
        new_record = False
        if record.get("recorded_later"):
            recorded_at = _when(record.get("taken_at"))
    stored = doc.esf_later
    if stored is not None:
        later, later_at = dict(stored.get("values") or {}), _when(stored.get("at"))
    else:
        later, later_at = _later_values(session, doc, record), now
    prepared = from_record(_with_later(record, later), doc.period, doc.org_id)
    if prepared.missing:
        raise EsfIncomplete(prepared.missing)
    if prepared.total != doc.total or prepared.vat != doc.vat:
        raise InvalidInput(f"the ЭСФ lines ({prepared.total}) do not add up to the document ({doc.total})",
                           field="document", key="error.esf.total_changed")
    writes: dict[str, Any] = {}
    if new_record:
        writes["esf_record"] = record
        recorded_at = now
    if later and stored is None:
        writes["esf_later"] = {"at": now.isoformat(), "values": later}
    if writes:
        doc_id = doc.id
        if not _store(session, doc, **writes):
            if not _again:
                raise InvalidInput("the electronic invoice is being made by someone else; try again",
                                   field="document", key="error.esf.busy")
            session.expire_all()
            return make(session, session.get(ClosingDocument, doc_id), kind, now=now, _again=False)
        session.expire_all()
    data = factura_json(doc, prepared) if kind == "esf" else act_json(doc, prepared)
    return EsfFile(filename=filename(doc, kind), data=data, later=_later_items(record, later, doc.org_id),
                   later_at=later_at if later else None, recorded_at=recorded_at)


# ---------------------------------------------------------------- the JSON files

def _money(value: Decimal) -> str:
    return f"{Decimal(value).quantize(CENT, rounding=ROUND_HALF_UP):f}"


def _count(value: Decimal):
    value = Decimal(value)
    if value == value.to_integral_value():
        return int(value)
    return f"{value.quantize(Decimal('0.000001'), rounding=ROUND_HALF_UP).normalize():f}"


def _iso_date(value: Any) -> date | None:
    return esf_record.iso_date(value)


def _contract(prepared: Prepared) -> dict[str, str]:
    contract = prepared.record["contract"]
    when = _iso_date(contract.get("date")) if contract.get("date") else None
    return {"ContractNo": contract.get("no") or "", "ContractDate": when.isoformat() if when else ""}


def _rate(prepared: Prepared) -> str:
    return f"{prepared.vat_rate.normalize():f}"


def factura_json(doc: ClosingDocument, prepared: Prepared) -> dict[str, Any]:
    """The ЭСФ (Didox type 002) of a closing document, from its record (:func:`from_record`)."""
    seller, buyer = prepared.record["seller"], prepared.record["buyer"]
    rate = _rate(prepared)
    products = []
    for line in prepared.lines:
        p = line.product or {}
        products.append({
            "OrdNo": line.ordno,
            "LgotaId": None,
            "CommittentName": "",
            "CommittentTin": "",
            "CommittentVatRegCode": "",
            "CommittentVatRegStatus": None,
            "Name": line.name,
            "CatalogCode": p.get("mxik_code", ""),
            "CatalogName": p.get("mxik_name", ""),
            "Marks": None,
            "Barcode": "",
            "PackageCode": p.get("package_code", ""),
            "PackageName": p.get("package_name", ""),
            "Count": _count(line.count),
            "Summa": _money(line.price),
            "DeliverySum": _money(line.net),
            "VatRate": rate,
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
            "Tin": seller["tax_id"],
            "HideReportCommittent": False,
            "HasExcise": False,
            "HasVat": True,
            "Products": products,
        },
        "FacturaDoc": {"FacturaNo": documents.invoice_number(doc.year, doc.number),
                       "FacturaDate": _doc_date(doc.period).isoformat()},
        "ContractDoc": _contract(prepared),
        "ContractId": None,
        "LotId": "",
        "OldFacturaDoc": None,
        "SellerTin": seller["tax_id"],
        "Seller": {
            "Name": seller["name"],
            "BranchCode": "",
            "BranchName": "",
            "VatRegCode": seller["vat_reg_code"],
            "Account": seller["bank_account"],
            "BankId": seller["bank_mfo"],
            "Address": seller["address"],
            "Director": seller["director"],
            "Accountant": seller.get("accountant", ""),
            "VatRegStatus": seller.get("vat_reg_status"),
        },
        "ItemReleasedDoc": None,
        "BuyerTin": buyer["tax_id"],
        "Buyer": {
            "Name": buyer["name"],
            "BranchCode": "",
            "BranchName": "",
            "VatRegCode": buyer.get("vat_reg_code", ""),
            "Account": buyer["bank_account"],
            "BankId": buyer["bank_mfo"],
            "Address": buyer["address"],
            "Director": buyer["director"],
            "Accountant": "",
            "VatRegStatus": VAT_REG_STATUS_ACTIVE if buyer.get("vat_reg_code") else None,
        },
        "FacturaInvestmentObjectDoc": None,
        "FacturaEmpowermentDoc": None,
        "ForeignCompany": None,
    }


def act_json(doc: ClosingDocument, prepared: Prepared) -> dict[str, Any]:
    """The act of completed work (Didox type 005) of a closing document, from its record."""
    seller, buyer = prepared.record["seller"], prepared.record["buyer"]
    last_day = _doc_date(doc.period)
    text = (f"Мы, нижеподписавшиеся, {seller['name']}, именуемое в дальнейшем Исполнитель, с одной стороны, и "
            f"{buyer['name']}, именуемое в дальнейшем Заказчик, с другой стороны, составили настоящий Акт о том, что "
            f"услуги за период с {doc.period:%d.%m.%Y} по {last_day:%d.%m.%Y} оказаны в полном объёме и в срок; "
            f"Заказчик претензий по объёму, качеству и срокам оказания услуг не имеет.")
    rate = _rate(prepared)
    products = []
    for line in prepared.lines:
        p = line.product or {}
        products.append({
            "OrdNo": line.ordno,
            "CatalogCode": p.get("mxik_code", ""),
            "CatalogName": p.get("mxik_name", ""),
            "Name": line.name,
            "MeasureId": None,
            "PackageCode": p.get("package_code", ""),
            "PackageName": p.get("package_name", ""),
            "Count": str(_count(line.count)),
            "Summa": _money(line.price),
            "TotalSumWithoutVat": _money(line.net),
            "VatRate": rate,
            "VatSum": _money(line.vat),
            "TotalSum": _money(line.amount),
            "WithoutVat": False,
        })
    return {
        "ActDoc": {"ActNo": documents.act_number(doc.year, doc.number), "ActDate": last_day.isoformat(),
                   "ActText": text},
        "ContractDoc": _contract(prepared),
        "SellerTin": seller["tax_id"],
        "SellerName": seller["name"],
        "SellerBranchCode": "",
        "SellerBranchName": "",
        "BuyerTin": buyer["tax_id"],
        "BuyerName": buyer["name"],
        "BuyerBranchCode": "",
        "BuyerBranchName": "",
        "ProductList": {"Tin": seller["tax_id"], "HasExcise": False, "HasVat": True, "Products": products},
    }


def build(session: Session, doc: ClosingDocument, kind: str = "esf", *, now: datetime | None = None
          ) -> dict[str, Any]:
    """The JSON (a dict) of ``kind`` (esf | act) of a closing document (:func:`make`), or
    :class:`EsfIncomplete`."""
    return make(session, doc, kind, now=now).data


def filename(doc: ClosingDocument, kind: str) -> str:
    prefix = "esf" if kind == "esf" else "act"
    return f"{prefix}-{DOC_TYPES[kind]}-{doc.year}-{doc.number:06d}-{doc.period:%Y-%m}.json"


def to_bytes(data: dict[str, Any]) -> bytes:
    return json.dumps(data, ensure_ascii=False, indent=2).encode("utf-8")


def document_export(session: Session, actor: Actor, doc_id, kind: str = "esf", *,
                    now: datetime | None = None) -> EsfFile:
    """The ЭСФ or act (:func:`make`) of one of the organisation's closing documents, for its Owner or
    Financial manager; NotFound for a foreign or missing id, EsfIncomplete naming what is missing.
    Its ``notes`` say which values were taken after the document was issued."""
    try:
        if kind not in DOC_TYPES:
            raise InvalidInput(f"kind is one of {', '.join(KINDS)}", field="kind", key="error.esf.kind")
        access = can_take_tax_documents(session, actor)
        doc = load_owned(session, access, ClosingDocument, doc_id, "document", key="error.billing.document_not_found")
        return make(session, doc, kind, now=now)
    finally:
        session.rollback()


def document_file(session: Session, actor: Actor, doc_id, kind: str = "esf") -> tuple[str, bytes]:
    """(file name, JSON) of :func:`document_export`."""
    made = document_export(session, actor, doc_id, kind)
    return made.filename, made.content


def find_document(session: Session, reference) -> ClosingDocument:
    """Operator lookup: a closing document by id (``42``) or number (``АКТ-2026-000042``,
    ``СФ-2026-000042``); InvalidInput/NotFound otherwise."""
    from noventiq_panel.services.core.errors import NotFound

    text = str(reference).strip()
    if text.isascii() and text.isdigit():
        doc = session.get(ClosingDocument, int(text)) if int(text) < 2**31 else None
    else:
        parts = text.replace("/", "-").split("-")
        if len(parts) != 3 or not all(p.isascii() and p.isdigit() for p in parts[1:]):
            raise InvalidInput(f"not a document id or number: {reference!r}", field="document",
                               key="error.billing.document_not_found")
        doc = session.exec(select(ClosingDocument).where(ClosingDocument.year == int(parts[1]),
                                                         ClosingDocument.number == int(parts[2]),
                                                         ClosingDocument.kind == documents.KIND)).first()
    if doc is None:
        raise NotFound("document not found", key="error.billing.document_not_found")
    return doc


def operator_export(session: Session, reference, kind: str = "esf", *, now: datetime | None = None) -> EsfFile:
    """The file of any organisation's document for the CLI (the system)."""
    try:
        return make(session, find_document(session, reference), kind, now=now)
    finally:
        session.rollback()


def operator_file(session: Session, reference, kind: str = "esf") -> tuple[str, bytes]:
    """(file name, JSON) for the CLI (the system: any organisation's document)."""
    made = operator_export(session, reference, kind)
    return made.filename, made.content


__all__ = [
    "DOC_TYPES",
    "KINDS",
    "EsfFile",
    "EsfIncomplete",
    "Missing",
    "MonthCheck",
    "act_json",
    "build",
    "check_month",
    "describe",
    "document_export",
    "document_file",
    "factura_json",
    "from_record",
    "make",
    "operator_export",
    "operator_file",
    "organisation_missing",
    "prepare",
    "product_missing",
    "seller_missing",
]
