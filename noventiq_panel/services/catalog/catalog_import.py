"""Import a catalog file (YAML or JSON): vendors, products and their plans, upserted by code.

The file::

    vendors:
      - code: microsoft
        name: Microsoft
        portal_url: https://admin.microsoft.com
    products:
      - code: m365-business-basic
        vendor: microsoft            # a vendor code from this file or already in the database
        name: Microsoft 365 Business Basic
        category: Офисные приложения
        description: ...
        activation_md: |
          ...Markdown...
        mxik_code: "10305001001000000"   # ИКПУ/MXIK, 17 digits (quoted); for the electronic invoices
        mxik_name: ...               # the classifier's name of that code
        package_code: "1545000"      # the code's package (unit), digits; with its package_name
        package_name: ...
        plans:
          - code: m365-bb-month
            name: Месяц, оплата сразу
            billing_type: license    # license | payg
            term: month              # month | year (license)
            billing_frequency: upfront   # upfront | monthly (license)
            granularity: null        # hour | day (payg)
            expected_monthly_cost: null  # payg: a first month's expected cost in currency (the deposit)
            price: "6.00"            # per seat per term, in currency
            currency: USD
            catalog_item_id: CFQ7TTC0LH18:0001:CFQ7TTC0K5DM   # the vendor's catalogue item (Partner Center)
            ...every other Plan field (see PlanIn)...

Everything is validated before anything is written (pydantic, then the cross references); an error
names the file's line, the path and the field (``catalog.yaml:42: products[3].plans[1].price: ...``).
Numbers are read as ``Decimal`` straight from the file's text, never through float. Importing the
same file twice changes nothing.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from sqlmodel import Session, select

from noventiq_panel.models import Plan, Product, Vendor
from noventiq_panel.services.core import requisites
from noventiq_panel.services.core.errors import InvalidInput

CODE_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,63}$"
MAX_PRICE = Decimal("1000000000000")


# --------------------------------------------------------------------------------------------
# The file's schema
# --------------------------------------------------------------------------------------------


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_float(cls, value):
        if isinstance(value, float):
            raise ValueError("write the number as a decimal string, not a float")
        return value


class VendorIn(_In):
    code: str = Field(pattern=CODE_PATTERN)
    name: str = Field(min_length=1, max_length=255)
    portal_url: str = Field(default="", max_length=500, pattern=r"^(https?://\S+)?$")


class PlanIn(_In):
    code: str = Field(pattern=CODE_PATTERN)
    name: str = Field(min_length=1, max_length=255)
    billing_type: Literal["license", "payg"] = "license"
    term: Optional[Literal["month", "year"]] = None
    billing_frequency: Optional[Literal["upfront", "monthly"]] = None
    granularity: Optional[Literal["hour", "day"]] = None
    price: Decimal = Field(default=Decimal("0"), ge=0, le=MAX_PRICE, decimal_places=6)
    currency: str = Field(default="USD", pattern=r"^[A-Z]{3}$")
    usage_markup_pct: Decimal = Field(default=Decimal("0"), ge=0, le=1000, decimal_places=6)
    # Pay-as-you-go only: the expected cost of a first month, in currency (the deposit a prepaid
    # organisation needs to order it; without it the PANEL_PAYG_DEPOSIT setting applies).
    expected_monthly_cost: Optional[Decimal] = Field(default=None, ge=0, le=MAX_PRICE, decimal_places=6)
    min_quantity: int = Field(default=1, ge=1, le=1_000_000)
    max_quantity: int = Field(default=300, ge=1, le=1_000_000)
    trial_days: int = Field(default=0, ge=0, le=365)
    trial_max_quantity: int = Field(default=25, ge=1, le=1_000_000)
    trial_converts_to: Optional[str] = Field(default=None, pattern=CODE_PATTERN)
    cancellation_window_hours: int = Field(default=168, ge=0, le=24 * 366)
    suspendable: bool = False
    allowed_changes: list[str] = Field(default_factory=list)
    is_active: bool = True
    sort_order: int = 0
    # the vendor's catalogue item a connector orders (Partner Center: product:SKU:availability)
    catalog_item_id: str = Field(default="", max_length=128)

    @field_validator("catalog_item_id")
    @classmethod
    def _catalog_item(cls, value: str) -> str:
        if value and not re.fullmatch(r"[A-Za-z0-9]{1,40}(:[A-Za-z0-9]{1,40}){0,2}", value):
            raise ValueError("a catalogue item id is letters and digits, up to three parts joined by ':' "
                             "(Partner Center: product:SKU:availability)")
        return value

    @model_validator(mode="after")
    def _billing_variant(self):
        if self.billing_type == "license":
            # A licence plan always has a term; the frequency defaults to upfront.
            if self.term is None:
                self.term = "month"
            if self.billing_frequency is None:
                self.billing_frequency = "upfront"
        return self


def _requisite(check, value):
    """A code checked by ``services.core.requisites`` as a pydantic error (the file's line and field)."""
    try:
        return check(value)
    except InvalidInput as exc:
        raise ValueError(exc.message.split(": ", 1)[-1]) from None


class ProductIn(_In):
    code: str = Field(pattern=CODE_PATTERN)
    vendor: str = Field(pattern=CODE_PATTERN)
    name: str = Field(min_length=1, max_length=255)
    category: str = Field(default="", max_length=128)
    description: str = ""
    activation_md: str = ""
    is_active: bool = True
    sort_order: int = 0
    # Electronic invoices: the ИКПУ/MXIK code (17 digits, quoted in YAML so leading zeros stay) with
    # its classifier name, and the package (unit) code with its name (services/core/requisites.py).
    mxik_code: str = ""
    mxik_name: str = Field(default="", max_length=500)
    package_code: str = ""
    package_name: str = Field(default="", max_length=255)
    plans: list[PlanIn] = Field(default_factory=list)

    @field_validator("mxik_code", mode="before")
    @classmethod
    def _mxik(cls, value):
        return _requisite(requisites.validate_mxik_code, value)

    @field_validator("package_code", mode="before")
    @classmethod
    def _package(cls, value):
        return _requisite(requisites.validate_package_code, value)

    @model_validator(mode="after")
    def _package_of_a_code(self):
        if self.package_code and not self.mxik_code:
            raise ValueError("package_code belongs to an mxik_code: give both")
        return self


class CatalogIn(_In):
    vendors: list[VendorIn] = Field(default_factory=list)
    products: list[ProductIn] = Field(default_factory=list)


# --------------------------------------------------------------------------------------------
# Errors with lines
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Issue:
    path: tuple  # ("products", 3, "plans", 1, "price")
    message: str
    line: Optional[int] = None  # 1-based

    @property
    def field(self) -> str:
        names = [p for p in self.path if isinstance(p, str)]
        return names[-1] if names else ""

    @property
    def where(self) -> str:
        out = ""
        for part in self.path:
            out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
        return out or "(file)"

    def format(self, filename: str = "") -> str:
        prefix = filename or "catalog"
        if self.line is not None:
            prefix += f":{self.line}"
        return f"{prefix}: {self.where}: {self.message}"


class CatalogError(InvalidInput):
    """The catalog file is invalid; ``issues`` lists every problem with its line and field."""

    key = "error.catalog_invalid"

    def __init__(self, issues: list[Issue], filename: str = ""):
        self.issues = issues
        self.filename = filename
        text = "\n".join(i.format(filename) for i in issues)
        first = issues[0] if issues else None
        super().__init__(f"invalid catalog file:\n{text}", field=first.field if first else None,
                         line=first.line if first else None, count=len(issues))

    def __str__(self) -> str:  # the CLI prints this
        return self.message


# --------------------------------------------------------------------------------------------
# Reading: data (Decimal numbers) and the line of every node
# --------------------------------------------------------------------------------------------


class _DecimalLoader(yaml.SafeLoader):
    """Safe YAML with floats read as Decimal from their text."""


def _construct_decimal(loader, node):
    text = loader.construct_scalar(node).replace("_", "")
    lowered = text.lower()
    if lowered in (".nan", ".inf", "-.inf", "+.inf"):
        return float(lowered.replace(".", "")) if "nan" not in lowered else float("nan")
    return Decimal(text)


_DecimalLoader.add_constructor("tag:yaml.org,2002:float", _construct_decimal)


def _node_lines(node, path=(), out=None) -> dict[tuple, int]:
    """Map each path in the document to the 1-based line of its key (mappings) or item (lists)."""
    if out is None:
        out = {}
    out.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            if key is None:
                continue
            out[path + (key,)] = key_node.start_mark.line + 1
            _node_lines(value_node, path + (key,), out)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            out[path + (index,)] = item.start_mark.line + 1
            _node_lines(item, path + (index,), out)
    return out


def _line_for(lines: dict[tuple, int], path: tuple) -> Optional[int]:
    """The line of ``path``, or of its nearest ancestor present in the file (a missing field)."""
    for end in range(len(path), -1, -1):
        if path[:end] in lines:
            return lines[path[:end]]
    return None


def detect_format(text: str, filename: str = "") -> str:
    suffix = Path(filename).suffix.lower()
    if suffix == ".json":
        return "json"
    if suffix in (".yaml", ".yml"):
        return "yaml"
    return "json" if text.lstrip().startswith(("{", "[")) else "yaml"


def _parse(text: str, fmt: str, filename: str) -> tuple[Any, dict[tuple, int]]:
    if fmt == "json":
        try:
            data = json.loads(text, parse_float=Decimal)
        except json.JSONDecodeError as exc:
            raise CatalogError([Issue((), f"not valid JSON: {exc.msg} (column {exc.colno})", exc.lineno)], filename)
        try:  # JSON is YAML's flow style: YAML's composer gives the lines of the nodes
            node = yaml.compose(text, Loader=yaml.SafeLoader)
            lines = _node_lines(node) if node is not None else {}
        except yaml.YAMLError:
            lines = {}
        return data, lines
    try:
        node = yaml.compose(text, Loader=_DecimalLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        raise CatalogError([Issue((), f"not valid YAML: {problem}", mark.line + 1 if mark else None)], filename)
    if node is None:
        return {}, {}
    loader = _DecimalLoader("")
    try:
        data = loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise CatalogError([Issue((), f"not valid YAML: {getattr(exc, 'problem', exc)}",
                                  mark.line + 1 if mark else None)], filename)
    finally:
        loader.dispose()
    return data, _node_lines(node)


def _clean_loc(loc: tuple) -> tuple:
    # pydantic adds the names of union members / validators to the loc: keep the data path.
    return tuple(p for p in loc if isinstance(p, int) or not re.match(r"^[a-z-]+\[", str(p)))


def _pydantic_issues(exc: ValidationError, lines: dict[tuple, int]) -> list[Issue]:
    issues = []
    for err in exc.errors(include_url=False):
        path = _clean_loc(tuple(err["loc"]))
        message = err["msg"]
        if message.startswith("Value error, "):
            message = message[len("Value error, "):]
        if err["type"] == "extra_forbidden":
            message = "unknown field"
        elif err["type"] == "missing":
            message = "field required"
        issues.append(Issue(path, message, _line_for(lines, path)))
    return issues


# --------------------------------------------------------------------------------------------
# Cross references (vendor codes, plan codes, billing variants)
# --------------------------------------------------------------------------------------------


def _check_references(session: Session | None, catalog: CatalogIn, lines: dict[tuple, int]) -> list[Issue]:
    issues: list[Issue] = []

    def issue(path: tuple, message: str):
        issues.append(Issue(path, message, _line_for(lines, path)))

    known_vendors = {v.code for v in catalog.vendors}
    known_plans: set[str] = set()
    if session is not None:
        known_vendors |= set(session.exec(select(Vendor.code)).all())
        known_plans |= set(session.exec(select(Plan.code)).all())

    seen: dict[str, tuple] = {}
    for i, v in enumerate(catalog.vendors):
        if v.code in seen:
            issue(("vendors", i, "code"), f"duplicate vendor code {v.code!r}")
        seen[v.code] = ("vendors", i)
    seen_products: set[str] = set()
    plan_paths: dict[str, tuple] = {}
    for i, p in enumerate(catalog.products):
        if p.code in seen_products:
            issue(("products", i, "code"), f"duplicate product code {p.code!r}")
        seen_products.add(p.code)
        if p.vendor not in known_vendors:
            issue(("products", i, "vendor"), f"unknown vendor {p.vendor!r}")
        for j, plan in enumerate(p.plans):
            path = ("products", i, "plans", j)
            if plan.code in plan_paths:
                issue(path + ("code",), f"duplicate plan code {plan.code!r}")
            plan_paths[plan.code] = path
    known_plans |= set(plan_paths)

    for code, path in plan_paths.items():
        i, j = path[1], path[3]
        plan = catalog.products[i].plans[j]
        if plan.billing_type == "payg":
            if plan.granularity is None:
                issue(path + ("granularity",), "a pay-as-you-go plan needs granularity: hour or day")
            if plan.term is not None:
                issue(path + ("term",), "a pay-as-you-go plan has no term")
            if plan.billing_frequency is not None:
                issue(path + ("billing_frequency",), "a pay-as-you-go plan has no billing_frequency")
            if plan.trial_days:
                issue(path + ("trial_days",), "a pay-as-you-go plan cannot be a trial")
        else:
            if plan.granularity is not None:
                issue(path + ("granularity",), "granularity is for pay-as-you-go plans only")
            if plan.expected_monthly_cost is not None:
                issue(path + ("expected_monthly_cost",), "expected_monthly_cost is for pay-as-you-go plans only")
            if plan.term == "month" and plan.billing_frequency == "monthly":
                issue(path + ("billing_frequency",), "a monthly term is billed upfront")
        if plan.min_quantity > plan.max_quantity:
            issue(path + ("min_quantity",), f"min_quantity {plan.min_quantity} > max_quantity {plan.max_quantity}")
        if plan.trial_days:
            if plan.price != 0:
                issue(path + ("price",), "a trial plan is free: price must be 0")
            if plan.trial_converts_to is None:
                issue(path + ("trial_converts_to",), "a trial plan names the paid plan it converts to")
        elif plan.trial_converts_to is not None:
            issue(path + ("trial_converts_to",), "only a trial plan (trial_days > 0) converts")
        if plan.trial_converts_to is not None:
            if plan.trial_converts_to not in known_plans:
                issue(path + ("trial_converts_to",), f"unknown plan {plan.trial_converts_to!r}")
            elif plan.trial_converts_to == code:
                issue(path + ("trial_converts_to",), "a trial cannot convert to itself")
        for k, target in enumerate(plan.allowed_changes):
            if target == code:
                issue(path + ("allowed_changes", k), "a plan cannot change to itself")
            elif target not in known_plans:
                issue(path + ("allowed_changes", k), f"unknown plan {target!r}")
    return issues


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def validate_catalog(text: str, *, filename: str = "", fmt: str | None = None,
                     session: Session | None = None) -> CatalogIn:
    """Parse and validate; raise CatalogError listing every problem (line, path, field)."""
    fmt = fmt or detect_format(text, filename)
    data, lines = _parse(text, fmt, filename)
    if not isinstance(data, dict):
        raise CatalogError([Issue((), "the file must be a mapping with 'vendors' and 'products'",
                                  _line_for(lines, ()))], filename)
    try:
        catalog = CatalogIn.model_validate(data)
    except ValidationError as exc:
        raise CatalogError(_pydantic_issues(exc, lines), filename) from None
    issues = _check_references(session, catalog, lines)
    if issues:
        raise CatalogError(issues, filename)
    return catalog


@dataclass
class ImportResult:
    created: dict[str, int] = field(default_factory=lambda: {"vendor": 0, "product": 0, "plan": 0})
    updated: dict[str, int] = field(default_factory=lambda: {"vendor": 0, "product": 0, "plan": 0})
    unchanged: dict[str, int] = field(default_factory=lambda: {"vendor": 0, "product": 0, "plan": 0})

    def summary(self) -> str:
        parts = []
        for kind in ("vendor", "product", "plan"):
            parts.append(f"{kind}s: {self.created[kind]} new, {self.updated[kind]} updated, "
                         f"{self.unchanged[kind]} unchanged")
        return "; ".join(parts)


def _upsert(session: Session, model, values: dict[str, Any], result: ImportResult, kind: str):
    row = session.exec(select(model).where(model.code == values["code"])).first()
    if row is None:
        row = model(**values)
        session.add(row)
        session.flush()
        # The ORM leaves a None out of an INSERT when the column has a default (Plan.term defaults to
        # "month"), so the default lands instead: read the row back and write such values again.
        session.refresh(row)
        for name, value in values.items():
            if getattr(row, name) != value:
                setattr(row, name, value)
        session.flush()
        result.created[kind] += 1
        return row
    changed = False
    for name, value in values.items():
        if getattr(row, name) != value:
            setattr(row, name, value)
            changed = True
    if changed:
        session.add(row)
        session.flush()
        result.updated[kind] += 1
    else:
        result.unchanged[kind] += 1
    return row


def apply_catalog(session: Session, catalog: CatalogIn) -> ImportResult:
    """Upsert a validated catalog (flushes, does not commit)."""
    result = ImportResult()
    vendor_ids: dict[str, int] = {}
    for v in catalog.vendors:
        vendor_ids[v.code] = _upsert(session, Vendor, v.model_dump(), result, "vendor").id
    for p in catalog.products:
        if p.vendor not in vendor_ids:
            vendor_ids[p.vendor] = session.exec(select(Vendor.id).where(Vendor.code == p.vendor)).one()
        values = p.model_dump(exclude={"plans", "vendor"})
        values["vendor_id"] = vendor_ids[p.vendor]
        product = _upsert(session, Product, values, result, "product")
        for plan in p.plans:
            plan_values = plan.model_dump()
            plan_values["product_id"] = product.id
            plan_values["allowed_changes"] = list(plan.allowed_changes)
            _upsert(session, Plan, plan_values, result, "plan")
    return result


def import_catalog(session: Session, text: str, *, filename: str = "", fmt: str | None = None) -> ImportResult:
    """Validate then upsert, in one transaction (committed). Nothing is written when invalid."""
    catalog = validate_catalog(text, filename=filename, fmt=fmt, session=session)
    try:
        result = apply_catalog(session, catalog)
        session.commit()
    except Exception:
        session.rollback()
        raise
    return result


def import_file(session: Session, path: str | Path) -> ImportResult:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise CatalogError([Issue((), f"not UTF-8 text: {exc.reason}")], str(path)) from None
    return import_catalog(session, text, filename=str(path))
