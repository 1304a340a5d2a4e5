"""The vendors' usage exports: their formats, reading a row, and a row's identity.

Formats:
- FinOps FOCUS 1.0, 1.1, 1.2 and 1.3 (``ChargePeriodStart``, ``ChargePeriodEnd``, ``BilledCost``,
  ``BillingCurrency``, ``ServiceName``, ``ResourceId``, ``SubAccountId``, ``ChargeCategory``, ...).
  Followed: the FOCUS specification's column pages (github.com/FinOps-Open-Cost-and-Usage-Spec/
  FOCUS_Spec, ``specification/columns/*.md``: ``chargecategory.md`` for the allowed values, each
  page's "Allows nulls" for which columns may be null) and Microsoft's "FOCUS cost and usage details
  file schema" (learn.microsoft.com, cost-management-billing/dataset-schema/
  cost-usage-details-focus: the 1.0 and 1.2-preview column lists with the renamed ``x_`` columns).
  What changed between the versions, and how it is read here:

  - 1.1 added ``BillingAccountType``, ``SubAccountType``, ``CapacityReservationId``/``Status``,
    ``CommitmentDiscountQuantity``/``Unit``, ``ServiceSubcategory``, ``SkuMeter`` (was
    ``x_SkuMeterName`` at Microsoft), ``SkuPriceDetails``;
  - 1.2 added ``InvoiceId`` (was ``x_InvoiceId``), ``PricingCurrency`` (was ``x_PricingCurrency``)
    and ``PricingCurrencyContractedUnitPrice``/``EffectiveCost``/``ListUnitPrice``;
  - 1.3 added ``ServiceProviderName`` and ``HostProviderName`` (``ProviderName`` and
    ``PublisherName`` deprecated, still written), ``Allocated…`` (``AllocatedMethodId``,
    ``AllocatedMethodDetails``, ``AllocatedResourceId``/``Name``, ``AllocatedTags``) and
    ``ContractApplied``.

  The importer needs only ``ChargePeriodStart``/``End``, ``BilledCost``, ``BillingCurrency`` and
  ``SubAccountId`` (the account the row is matched by); every other column may be missing, empty or
  the literal ``NULL`` (any letter case: some exporters write SQL nulls so), and columns it does not
  know are ignored. Enumerated values are compared without regard to letter case. Every
  ``ChargeCategory`` is imported — Usage, Purchase, Credit, Adjustment (and a value the spec does
  not know, as written) — except *Tax*, which is skipped (the panel bills its own VAT) but counted
  and totalled in the report. A Credit is an ordinary record with a negative cost: rating nets it
  with the usage of its period (``rating``). Timestamps may carry a zone designator (``Z``,
  ``+05:00``, ``+0000``) or none (then UTC), with or without seconds (Microsoft's "1.0r2").
  ``x_ResourceGroupName`` is used when the resource id does not name a resource group.
- Azure cost-management export, actual or amortized cost, daily (``Date``, ``MeterCategory``,
  ``MeterName``, ``ResourceGroup``/``ResourceGroupName``, ``ResourceId``/``InstanceId``,
  ``CostInBillingCurrency``/``Cost``/``PreTaxCost``/``ExtendedCost``, ``BillingCurrency``/
  ``BillingCurrencyCode``/``Currency``, ``SubscriptionId``/``SubscriptionGuid``, ``ChargeType``,
  ...), in any letter case (newer exports write ``costInBillingCurrency``), dates as
  ``MM/DD/YYYY`` or ISO. Followed: Microsoft's cost-details schemas (learn.microsoft.com,
  cost-management-billing/dataset-schema: ``cost-usage-details-ea``, ``-mca``,
  ``-pay-as-you-go`` and the older ``usage-details-*`` versions). An amortized export has the
  actual export's columns (its cost columns hold the amortized figures), so both read alike; the
  same ``NULL`` and letter-case rules apply, and ``ChargeType`` *Tax* is skipped like FOCUS tax.

A UTF-8 byte-order mark is ignored; ``;`` and tab separated files are recognised by their header.
Figures are read to 6 decimals (half-up); a row that cannot be read raises :class:`BadRow` with
the reason the report shows.

Row identity (:class:`_RowKey`, issue 17). A line is the same line whatever spelling or FOCUS
version delivers it: ``line_key`` is a hash of the format and the line's *identity columns* only
(``FOCUS_IDENTITY``/``AZURE_IDENTITY``: period, account, currency, charge category and class,
service, resource, SKU, pricing and commitment ids, tags, ...), a null read as empty, enumerations
and ids in lower case, the currency in upper case, the account as ``normalise_ref`` reads it,
instants as UTC ISO (``Z``, ``+05:00``, no zone, no seconds read alike; Azure dates as the day).
A FOCUS line's identity holds only columns that **every supported version** has (FOCUS 1.0's, and
Microsoft's ``x_ResourceGroupName``, written in every version): a column a later version added
(1.1's ``ServiceSubcategory``, ``CapacityReservationId``, ``SkuMeter``) is filled in a 1.1+
delivery and absent from a 1.0 one, so with it the same line re-delivered in another version would
be a new line, recorded and charged twice. Names, provider names, the columns 1.1-1.3 added,
invoice ids, figures and unknown columns are not part of it. Records keyed while 1.1's columns
were part of it are matched by those keys too (``FOCUS_DROPPED_IDENTITY``, ``UsageCsv.alt_keys``).
``source_key`` hashes the same identity and the row's figures (cost and quantity to 6 decimals), so
a re-delivery in any spelling is a duplicate and a changed figure a correction (``usage_import``).
Records imported before this scheme carry the keys of :class:`LegacyRowKey` (every non-empty
column as written); the importer computes every such key (``UsageCsv.alt_keys``) and matches any,
so re-importing a file imported then still adds nothing.
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import operator
import re
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import IO

from noventiq_panel.services.core.errors import InvalidInput

FOCUS = "focus"
AZURE = "azure"
FORMATS = (FOCUS, AZURE)
MICRO = Decimal("0.000001")
MAX_VALUE = Decimal("1000000000000")  # |cost| or quantity above 10**12 is an input error

# Canonical field -> header names (lower case), in order of preference.
FOCUS_COLUMNS: dict[str, tuple[str, ...]] = {
    "start": ("chargeperiodstart",),
    "end": ("chargeperiodend",),
    "cost": ("billedcost",),
    "currency": ("billingcurrency",),
    "service": ("servicename",),
    "category": ("servicecategory",),
    "description": ("chargedescription",),
    "resource_id": ("resourceid",),
    "resource_name": ("resourcename",),
    "resource_group": ("x_resourcegroupname",),
    "subscription": ("subaccountid",),
    "quantity": ("consumedquantity",),
    "unit": ("consumedunit",),
    "charge_category": ("chargecategory",),
    "sku_meter": ("skumeter", "x_skumetername"),
}
FOCUS_REQUIRED = ("start", "end", "cost", "currency", "subscription")

AZURE_COLUMNS: dict[str, tuple[str, ...]] = {
    "date": ("date", "usagedate", "usagedatetime"),
    "service": ("metercategory",),
    "subcategory": ("metersubcategory",),
    "meter": ("metername",),
    "resource_group": ("resourcegroup", "resourcegroupname"),
    "resource_id": ("resourceid", "instanceid"),
    "resource_name": ("resourcename",),
    "quantity": ("quantity", "usagequantity", "consumedquantity"),
    "unit": ("unitofmeasure",),
    "cost": ("costinbillingcurrency", "cost", "pretaxcost", "extendedcost"),
    "currency": ("billingcurrency", "billingcurrencycode", "currency"),
    "subscription": ("subscriptionid", "subscriptionguid"),
    "charge_category": ("chargetype",),
}
AZURE_REQUIRED = ("date", "cost", "subscription")

# Columns that are figures of a line, not its identity (lower case; see "Row identity" above).
MEASURE_COLUMNS = frozenset({
    # FOCUS
    "billedcost", "effectivecost", "listcost", "contractedcost", "consumedquantity", "pricingquantity",
    "listunitprice", "contractedunitprice",
    # FOCUS 1.1-1.3: commitment and pricing-currency figures, the contract amounts applied (JSON)
    "commitmentdiscountquantity", "pricingcurrencycontractedunitprice", "pricingcurrencyeffectivecost",
    "pricingcurrencylistunitprice", "contractapplied",
    # Azure cost details (EA, MCA, legacy)
    "cost", "costinbillingcurrency", "costinusd", "costinpricingcurrency", "pretaxcost", "quantity",
    "usagequantity", "unitprice", "effectiveprice", "extendedcost", "paygprice", "paygcostinbillingcurrency", "paygcostinusd",
    "exchangeratepricingtobilling", "exchangeratedate", "resourcerate",
})
_MEASURE_PARTS = ("cost", "unitprice", "exchangerate")  # provider columns (x_…) holding figures
VOLATILE_COLUMNS = frozenset({"invoiceid", "x_invoiceid", "invoicesectionid", "x_invoicesectionid"})


def _is_measure(name: str) -> bool:
    return name in MEASURE_COLUMNS or (name.startswith("x_") and any(p in name for p in _MEASURE_PARTS))

_RG_IN_ID = re.compile(r"/resourcegroups/([^/]+)", re.IGNORECASE)
_CURRENCY = re.compile(r"[A-Z]{3}")


class BadRow(ValueError):
    """A row that cannot be imported; the message is the reason shown in the report."""



def _norm_header(name: str) -> str:
    return name.strip().lstrip("\ufeff").strip().strip('"').lower()


def detect_format(header: Iterable[str]) -> str | None:
    names = {_norm_header(h) for h in header}
    if {"chargeperiodstart", "billedcost"} <= names:
        return FOCUS
    has_cost = any(c in names for c in AZURE_COLUMNS["cost"])
    if has_cost and ("metercategory" in names or any(c in names for c in AZURE_COLUMNS["date"])):
        return AZURE
    return None


def _resolve(header: list[str], columns: dict[str, tuple[str, ...]]) -> dict[str, list[int]]:
    index: dict[str, int] = {}
    for i, h in enumerate(header):
        index.setdefault(_norm_header(h), i)
    return {name: [index[a] for a in aliases if a in index] for name, aliases in columns.items()}


def _decimal(raw: str, what: str, *, required: bool = True) -> Decimal:
    text = raw.strip()
    if not text:
        if required:
            raise BadRow(f"{what}: empty")
        return Decimal(0)
    try:
        value = Decimal(text)
    except InvalidOperation:
        try:  # "1 234,56" written by a spreadsheet in some locales
            value = Decimal(text.replace("\u00a0", "").replace(" ", "").replace(",", "."))
        except InvalidOperation:
            raise BadRow(f"{what}: not a number: {raw[:40]!r}") from None
    if not value.is_finite():
        raise BadRow(f"{what}: not a number: {raw[:40]!r}")
    value = value.quantize(MICRO, rounding=ROUND_HALF_UP)
    if abs(value) >= MAX_VALUE:
        raise BadRow(f"{what}: out of range: {raw[:40]!r}")
    return value


class _DateParser:
    """Cached date parsing (an export repeats the same few dates millions of times)."""

    def __init__(self):
        self._cache: dict[str, datetime] = {}

    def instant(self, raw: str, what: str) -> datetime:
        hit = self._cache.get(raw)
        if hit is not None:
            return hit
        text = raw.strip()
        if not text:
            raise BadRow(f"{what}: empty")
        try:
            if "/" in text:  # Azure: MM/DD/YYYY (optionally with a time)
                month, day, year = text.split(" ", 1)[0].split("/")
                value = datetime(int(year), int(month), int(day), tzinfo=timezone.utc)
            else:
                value = datetime.fromisoformat(text.replace(" UTC", "").replace("z", "Z"))
                value = value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)
        except (ValueError, TypeError):
            raise BadRow(f"{what}: not a date: {raw[:40]!r}") from None
        if not 1990 <= value.year <= 2200:
            raise BadRow(f"{what}: not a date: {raw[:40]!r}")
        if len(self._cache) > 50000:
            self._cache.clear()
        self._cache[raw] = value
        return value

    def day(self, raw: str, what: str) -> datetime:
        value = self.instant(raw, what)
        return value.replace(hour=0, minute=0, second=0, microsecond=0)


def normalise_ref(ref: str) -> str:
    ref = ref.strip().lower()
    if ref.startswith("/subscriptions/"):
        ref = ref[len("/subscriptions/"):].split("/", 1)[0]
    return ref



# The identity of a line (see "Row identity" above): canonical name -> (header names, lower case, in
# order of preference; how the value is normalised). Columns not listed here (names, provider names,
# FOCUS 1.3's new columns, figures, invoice ids, anything unknown) are not part of the identity.
_TEXT, _LOWER, _ENUM, _INSTANT, _DAY, _CURRENCY_CODE, _ACCOUNT, _CHARGE = (
    "text", "lower", "enum", "instant", "day", "currency", "account", "charge")
FOCUS_IDENTITY: dict[str, tuple[tuple[str, ...], str]] = {
    "start": (("chargeperiodstart",), _INSTANT),
    "end": (("chargeperiodend",), _INSTANT),
    "billing_period_start": (("billingperiodstart",), _INSTANT),
    "billing_period_end": (("billingperiodend",), _INSTANT),
    "account": (("subaccountid",), _ACCOUNT),
    "billing_account": (("billingaccountid",), _LOWER),
    "currency": (("billingcurrency",), _CURRENCY_CODE),
    "charge_category": (("chargecategory",), _CHARGE),
    "charge_class": (("chargeclass",), _ENUM),
    "charge_frequency": (("chargefrequency",), _ENUM),
    "description": (("chargedescription",), _TEXT),
    "service": (("servicename",), _TEXT),
    "service_category": (("servicecategory",), _ENUM),
    "resource_id": (("resourceid",), _LOWER),
    "resource_name": (("resourcename",), _TEXT),
    "resource_type": (("resourcetype",), _TEXT),
    "resource_group": (("x_resourcegroupname",), _LOWER),
    "region": (("regionid",), _LOWER),
    "availability_zone": (("availabilityzone",), _LOWER),
    "sku": (("skuid",), _LOWER),
    "sku_price": (("skupriceid",), _LOWER),
    "pricing_category": (("pricingcategory",), _ENUM),
    "pricing_unit": (("pricingunit",), _TEXT),
    "unit": (("consumedunit",), _TEXT),
    "commitment": (("commitmentdiscountid",), _LOWER),
    "commitment_category": (("commitmentdiscountcategory",), _ENUM),
    "commitment_status": (("commitmentdiscountstatus",), _ENUM),
    "commitment_type": (("commitmentdiscounttype",), _TEXT),
    "tags": (("tags",), _TEXT),
}
# Identity columns of the keys before FOCUS_IDENTITY was cut to the columns of every version: FOCUS
# 1.1's ServiceSubcategory, CapacityReservationId and SkuMeter (Microsoft's 1.0 x_SkuMeterName). A
# 1.0 export has none of them (another provider's not even x_SkuMeterName), so with them the same
# line delivered as 1.0 and as 1.1+ had two identities and was recorded, and charged, twice. The
# records imported then carry keys with them: a row that fills one of them is matched by those
# keys too (``UsageCsv.alt_keys``).
FOCUS_DROPPED_IDENTITY: dict[str, tuple[tuple[str, ...], str]] = {
    "service_subcategory": (("servicesubcategory",), _TEXT),
    "sku_meter": (("skumeter", "x_skumetername"), _TEXT),
    "capacity_reservation": (("capacityreservationid",), _LOWER),
}
AZURE_IDENTITY: dict[str, tuple[tuple[str, ...], str]] = {
    "date": (("date", "usagedate", "usagedatetime"), _DAY),
    "billing_period_start": (("billingperiodstartdate",), _DAY),
    "account": (("subscriptionid", "subscriptionguid"), _ACCOUNT),
    "billing_account": (("billingaccountid",), _LOWER),
    "billing_profile": (("billingprofileid",), _LOWER),
    "currency": (("billingcurrency", "billingcurrencycode", "currency"), _CURRENCY_CODE),
    "charge_category": (("chargetype",), _CHARGE),
    "service": (("metercategory",), _TEXT),
    "subcategory": (("metersubcategory",), _TEXT),
    "meter": (("metername",), _TEXT),
    "meter_id": (("meterid",), _LOWER),
    "meter_region": (("meterregion",), _LOWER),
    "location": (("resourcelocation",), _LOWER),
    "resource_group": (("resourcegroup", "resourcegroupname"), _LOWER),
    "resource_id": (("resourceid", "instanceid"), _LOWER),
    "resource_name": (("resourcename",), _TEXT),
    "unit": (("unitofmeasure",), _TEXT),
    "product": (("productname", "product"), _TEXT),
    "product_id": (("productid", "productorderid"), _LOWER),
    "part_number": (("partnumber",), _LOWER),
    "service_family": (("servicefamily",), _TEXT),
    "consumed_service": (("consumedservice",), _LOWER),
    "service_info1": (("serviceinfo1",), _TEXT),
    "service_info2": (("serviceinfo2",), _TEXT),
    "additional_info": (("additionalinfo",), _TEXT),
    "reservation": (("reservationid",), _LOWER),
    "benefit": (("benefitid",), _LOWER),
    "pricing_model": (("pricingmodel",), _ENUM),
    "frequency": (("frequency",), _ENUM),
    "publisher": (("publishername",), _TEXT),
    "plan": (("planname",), _TEXT),
    "offer": (("offerid",), _LOWER),
    "cost_center": (("costcenter",), _TEXT),
    "department": (("departmentname",), _TEXT),
    "tags": (("tags",), _TEXT),
}
KEY_VERSION = b"v2"  # keys of this scheme never equal a legacy key (``LegacyRowKey``)


class _RowKey:
    """The row's identity, as ``(source_key, line_key)``, from normalised values (see "Row
    identity" above): ``line_key`` is the first 32 hex digits of the sha256 of the format and the
    identity columns (``FOCUS_IDENTITY``/``AZURE_IDENTITY``: canonical names across versions, null
    read as empty, enumerations in lower case, ids in lower case, the currency in upper case,
    instants as UTC ISO); ``source_key`` the sha256 of the same and the row's figures (cost and
    quantity, read to 6 decimals)."""

    def __init__(self, fmt: str, header: list[str], cols: dict[str, list[int]], dates: "_DateParser"):
        spec = self._spec(fmt)
        resolved = _resolve(header, {name: aliases for name, (aliases, _) in spec.items()})
        self.fields = [(name, resolved[name], kind) for name, (_, kind) in sorted(spec.items()) if resolved[name]]
        self.prefix = KEY_VERSION + b"\x1f" + fmt.encode()
        self.cost, self.quantity = cols["cost"], cols["quantity"]
        self.dates = dates

    @staticmethod
    def _spec(fmt: str) -> dict[str, tuple[tuple[str, ...], str]]:
        return FOCUS_IDENTITY if fmt == FOCUS else AZURE_IDENTITY

    def _value(self, raw: str, kind: str) -> str:
        if not raw or kind == _TEXT:
            return raw
        if kind == _CHARGE:
            return charge_category(raw).lower()
        if kind == _CURRENCY_CODE:
            return raw.upper()
        if kind == _ACCOUNT:
            return normalise_ref(raw)
        if kind in (_INSTANT, _DAY):
            try:
                value = self.dates.day(raw, "") if kind == _DAY else self.dates.instant(raw, "")
            except BadRow:
                return raw
            return value.isoformat()
        return raw.lower()  # _LOWER, _ENUM

    def __call__(self, row: list[str]) -> tuple[str, str]:
        parts = []
        for name, idx, kind in self.fields:
            value = self._value(_first(row, idx), kind)
            if kind == _CHARGE and not value:
                value = "usage"  # an empty charge category is read as Usage
            if value:
                parts.append(f"{name}={value}")
        identity = "\x1f".join(parts)
        figures = []
        for what, idx in (("cost", self.cost), ("quantity", self.quantity)):
            try:
                figures.append(f"{what}={_decimal(_first(row, idx), what, required=False)}")
            except BadRow:
                figures.append(f"{what}={_first(row, idx)}")
        line = hashlib.sha256(self.prefix + b"\x1e" + identity.encode("utf-8")).hexdigest()[:32]
        source = hashlib.sha256(self.prefix + b"\x1f" + "\x1f".join([identity, *figures]).encode("utf-8")).hexdigest()
        return source, line


class _EarlierRowKey(_RowKey):
    """A FOCUS row's keys as imports made them while ``FOCUS_IDENTITY`` still held the columns of
    ``FOCUS_DROPPED_IDENTITY`` (they differ from :class:`_RowKey`'s only when one of those is filled)."""

    @staticmethod
    def _spec(fmt: str) -> dict[str, tuple[tuple[str, ...], str]]:
        return {**FOCUS_IDENTITY, **FOCUS_DROPPED_IDENTITY}


class LegacyRowKey:
    """The row's identity as computed before issue 17's review (the records imported then carry
    these keys; ``usage_import`` matches them too, so re-importing a file imported then adds
    nothing): ``(source_key, line_key)``, sha256 of the format and the non-empty
    ``column=value`` pairs, columns in name order (so the keys depend neither on the line number
    nor on the column order); every column for ``source_key``, the line's identity columns only
    (no figures, no invoice id) for ``line_key`` (its first 32 hex digits)."""

    def __init__(self, fmt: str, header: list[str]):
        named = sorted((_norm_header(h), i) for i, h in enumerate(header) if h.strip())
        identity = [(name, i) for name, i in named if not (_is_measure(name) or name in VOLATILE_COLUMNS)]
        self.prefix = fmt.encode()
        self.names = [f"{name}=" for name, _ in named]
        self.getter = self._getter([i for _, i in named])
        self.id_names = [f"{name}=" for name, _ in identity]
        self.id_getter = self._getter([i for _, i in identity])

    @staticmethod
    def _getter(indexes: list[int]):
        if not indexes:
            return lambda row: ()
        if len(indexes) == 1:
            return lambda row: (row[indexes[0]],)
        return operator.itemgetter(*indexes)

    def __call__(self, row: list[str]) -> tuple[str, str]:
        content = "\x1f".join([n + v for n, v in zip(self.names, self.getter(row)) if v])
        identity = "\x1f".join([n + v for n, v in zip(self.id_names, self.id_getter(row)) if v])
        return (hashlib.sha256(self.prefix + b"\x1f" + content.encode("utf-8")).hexdigest(),
                hashlib.sha256(self.prefix + b"\x1e" + identity.encode("utf-8")).hexdigest()[:32])


def _cell(value: str) -> str:
    """A cell stripped, with a null (``NULL`` in any letter case) read as empty."""
    value = value.strip()
    if len(value) == 4 and value.lower() == "null":
        return ""
    return value


def _first(row: list[str], idx: list[int]) -> str:
    """The first non-empty (non-null) cell of the columns ``idx``; "" when there is none."""
    if len(idx) == 1:  # the usual case, per cell of every row: kept short
        v = row[idx[0]].strip()
        return "" if len(v) == 4 and v.lower() == "null" else v
    for i in idx:
        if i < len(row):
            v = _cell(row[i])
            if v:
                return v
    return ""


# ChargeCategory (FOCUS) and ChargeType (Azure) values as the report writes them; matched without
# regard to letter case. Other values are kept as written.
CHARGE_CATEGORIES = {c.lower(): c for c in (
    "Usage", "Purchase", "Credit", "Adjustment", "Tax",  # FOCUS 1.0-1.3
    "Refund", "RoundingAdjustment", "UnusedReservation", "UnusedSavingsPlan")}  # Azure ChargeType
TAX = "Tax"


def charge_category(raw: str) -> str:
    """The canonical spelling of a charge category ("" when the cell is empty or null)."""
    value = _cell(raw)
    return CHARGE_CATEGORIES.get(value.lower(), value[:32])


def _skipped_tax(row: list[str], cols: dict[str, list[int]], cost_name: str) -> dict:
    """A tax row: not imported, but counted and totalled in the report. Read leniently: a figure that
    cannot be read counts as 0, so a tax row is never reported as bad."""
    try:
        cost = _decimal(_first(row, cols["cost"]), cost_name, required=False)
    except BadRow:
        cost = Decimal(0)
    currency = _first(row, cols["currency"]).upper()
    return {"skip": True, "charge_category": TAX, "cost": cost,
            "currency": currency if _CURRENCY.fullmatch(currency) else "?"}


def _resource_group(resource_id: str) -> str:
    m = _RG_IN_ID.search(resource_id)
    return m.group(1) if m else ""


# Row parsers: return the canonical values (without org/subscription) or raise BadRow;
# return None for a row that is skipped on purpose.


def _parse_focus(row: list[str], cols: dict[str, list[int]], dates: _DateParser) -> dict:
    category = charge_category(_first(row, cols["charge_category"])) or "Usage"
    if category == TAX:
        return _skipped_tax(row, cols, "BilledCost")
    start = dates.instant(_first(row, cols["start"]), "ChargePeriodStart")
    end = dates.instant(_first(row, cols["end"]), "ChargePeriodEnd")
    if end < start:
        raise BadRow("ChargePeriodEnd is before ChargePeriodStart")
    if end == start:
        end = start + timedelta(hours=1)
    currency = _first(row, cols["currency"]).upper()
    if not _CURRENCY.fullmatch(currency):
        raise BadRow(f"BillingCurrency: not a currency code: {currency[:10]!r}")
    resource_id = _first(row, cols["resource_id"])
    return {
        "period_start": start, "period_end": end,
        "cost": _decimal(_first(row, cols["cost"]), "BilledCost"),
        "currency": currency,
        "service": (_first(row, cols["service"]) or _first(row, cols["category"]))[:128],
        "meter": (_first(row, cols["description"]) or _first(row, cols["sku_meter"])
                  or _first(row, cols["category"]))[:255],
        "resource_id": resource_id[:500],
        "resource_name": (_first(row, cols["resource_name"]) or resource_id.rsplit("/", 1)[-1])[:255],
        "resource_group": (_resource_group(resource_id) or _first(row, cols["resource_group"]))[:255],
        "quantity": _decimal(_first(row, cols["quantity"]), "ConsumedQuantity", required=False),
        "unit": _first(row, cols["unit"])[:64],
        "charge_category": category,
    }


def _parse_azure(row: list[str], cols: dict[str, list[int]], dates: _DateParser) -> dict:
    category = charge_category(_first(row, cols["charge_category"])) or "Usage"
    if category == TAX:
        return _skipped_tax(row, cols, "Cost")
    start = dates.day(_first(row, cols["date"]), "Date")
    currency = _first(row, cols["currency"]).upper()
    if cols["currency"] and not _CURRENCY.fullmatch(currency):
        raise BadRow(f"BillingCurrency: not a currency code: {currency[:10]!r}")
    sub, name = _first(row, cols["subcategory"]), _first(row, cols["meter"])
    resource_id = _first(row, cols["resource_id"])
    return {
        "period_start": start, "period_end": start + timedelta(days=1),
        "cost": _decimal(_first(row, cols["cost"]), "Cost"),
        "currency": currency,  # "" when the export has no currency column: the plan's currency
        "service": _first(row, cols["service"])[:128],
        "meter": (f"{sub} / {name}" if sub and name and sub != name else (name or sub))[:255],
        "resource_id": resource_id[:500],
        "resource_name": (_first(row, cols["resource_name"]) or resource_id.rsplit("/", 1)[-1])[:255],
        "resource_group": (_first(row, cols["resource_group"]) or _resource_group(resource_id))[:255],
        "quantity": _decimal(_first(row, cols["quantity"]), "Quantity", required=False),
        "unit": _first(row, cols["unit"])[:64],
        "charge_category": category,
    }


def _sniff_delimiter(first_line: str) -> str:
    counts = {d: first_line.count(d) for d in (",", ";", "\t")}
    best = max(counts, key=counts.get)
    return best if counts[best] > 0 else ","



class UsageCsv:
    """A usage export opened for reading: its format (given, or detected from the header), its
    columns, and its data rows. An empty file, an unknown format or missing required columns raise
    ``InvalidInput`` here, before anything is read further."""

    def __init__(self, stream: IO[str], fmt: str | None = None):
        first_line = stream.readline()
        if not first_line.strip():
            raise InvalidInput("the file is empty", key="error.usage_empty")
        first_line = first_line.lstrip("\ufeff")
        self._reader = csv.reader(itertools.chain([first_line], stream), delimiter=_sniff_delimiter(first_line))
        header = next(self._reader)
        detected = detect_format(header)
        if fmt is None:
            fmt = detected
            if fmt is None:
                raise InvalidInput("unknown usage file format (neither FOCUS nor Azure cost export)",
                                   key="error.usage_format_unknown")
        fmt = fmt.lower()
        if fmt not in FORMATS:
            raise InvalidInput(f"unknown format {fmt!r}", field="format", key="error.usage_format_unknown")
        columns, required = (FOCUS_COLUMNS, FOCUS_REQUIRED) if fmt == FOCUS else (AZURE_COLUMNS, AZURE_REQUIRED)
        self._cols = _resolve(header, columns)
        missing = [columns[name][0] for name in required if not self._cols[name]]
        if missing:
            raise InvalidInput(f"missing columns for {fmt}: {', '.join(missing)}", key="error.usage_missing_columns",
                               columns=", ".join(missing), format=fmt)
        self.format = fmt
        self._parse = _parse_focus if fmt == FOCUS else _parse_azure
        self._ncols = len(header)
        self._dates = _DateParser()
        self.key = _RowKey(fmt, header, self._cols, self._dates)  # row -> (source_key, line_key)
        self.legacy_key = LegacyRowKey(fmt, header)  # the same row's keys as imports before issue 17's review made them
        dropped = _resolve(header, {n: a for n, (a, _) in FOCUS_DROPPED_IDENTITY.items()}) if fmt == FOCUS else {}
        self._dropped = [i for idx in dropped.values() for i in idx]  # their cells in this file
        self._earlier_key = _EarlierRowKey(fmt, header, self._cols, self._dates) if self._dropped else None

    def alt_keys(self, row: list[str]) -> list[tuple[str, str]]:
        """The ``(source_key, line_key)`` pairs earlier imports may have recorded this row under,
        besides :meth:`key`'s: the legacy keys (:class:`LegacyRowKey`), and for a FOCUS row that
        fills a column of ``FOCUS_DROPPED_IDENTITY`` the keys that still counted it."""
        keys = [self.legacy_key(row)]
        if self._earlier_key is not None and any(_first(row, [i]) for i in self._dropped if i < len(row)):
            keys.append(self._earlier_key(row))
        return keys

    def rows(self) -> Iterator[tuple[int, list[str]]]:
        """(line number, cells) of each data row that is not blank (a quoted cell may span lines:
        the number is the row's first line)."""
        line_end = self._reader.line_num
        for row in self._reader:
            line = line_end + 1
            line_end = self._reader.line_num
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            yield line, row

    def parse(self, row: list[str]) -> tuple[dict, str]:
        """(canonical values, subscription reference) of a data row; :class:`BadRow` when it cannot
        be read. The values carry ``charge_category``; a row the panel does not bill (tax) carries
        ``skip`` and only its category, cost and currency (its reference may be "")."""
        ncols = self._ncols
        if len(row) < ncols:
            raise BadRow(f"expected {ncols} columns, found {len(row)}")
        if len(row) > ncols and any(v.strip() for v in row[ncols:]):
            raise BadRow(f"expected {ncols} columns, found {len(row)}")
        values = self._parse(row, self._cols, self._dates)
        ref = _first(row, self._cols["subscription"])
        if values.get("skip"):
            return values, ref
        if not ref:
            raise BadRow("no subscription id")
        return values, ref

    def references(self, row: list[str]) -> Iterator[str]:
        """The row's subscription references as written, in order of preference (SubscriptionId,
        then SubscriptionGuid: EA exports carry both)."""
        for i in self._cols["subscription"]:
            if i < len(row) and _cell(row[i]):
                yield row[i]
