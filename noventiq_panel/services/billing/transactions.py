"""The organisation's ledger as a list of transactions with a running balance, and its export.

The running balance is computed by the database over the WHOLE ledger of the organisation in
order (``SUM(amount) OVER (ORDER BY occurred_at, id)``, SQLite >= 3.25 and PostgreSQL), and only
then filtered and paged, so a row shows the balance right after it whatever the filters are and
the newest row's running balance equals ``ledger.balance``.

``group_usage``: metered usage is charged per hour, which makes a month of one subscription 720
lines. Grouped, the usage entries of one subscription and one local day of the organisation (with
the same description: billed, or not billed and why) are one row, dated at its last entry, with
their sum and the balance right after that last entry. Every other entry stays a row of its own.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from sqlalchemy import String, case, cast, func, literal
from sqlmodel import Session, select

from noventiq_panel.db import local_date
from noventiq_panel.services.core import spreadsheet
from noventiq_panel.models import EntryKind, LedgerEntry, Organisation, Payment, Plan, Product, Subscription
from noventiq_panel.models.types import utcnow
from noventiq_panel.services.core.authz import Actor, can_read
from noventiq_panel.services.core.clock import aware, local_midnight
from noventiq_panel.services.core.errors import InvalidInput

KINDS = tuple(k.value for k in EntryKind)
MAX_PAGE = 200
MAX_EXPORT_ROWS = 200_000

EXPORT_COLUMNS = ("date", "kind", "description", "subscription", "invoice", "amount", "currency", "running")


def page(offset, limit) -> tuple[int, int]:
    """The paging of the billing lists (transactions, invoices): whole numbers, ``offset >= 0``,
    ``limit >= 1`` (at most :data:`MAX_PAGE`)."""
    try:
        offset, limit = int(offset), int(limit)
    except (TypeError, ValueError):
        raise InvalidInput("offset and limit must be whole numbers", key="error.billing.paging") from None
    if offset < 0 or limit < 1:
        raise InvalidInput("offset must be >= 0 and limit >= 1", key="error.billing.paging")
    return offset, min(limit, MAX_PAGE)


@dataclass(frozen=True)
class TransactionRow:
    id: int
    occurred_at: datetime
    kind: str
    description: str
    subscription_id: int | None
    subscription_name: str
    payment_number: str | None
    amount: Decimal
    currency: str
    running_balance: Decimal
    action: str = ""  # what posted it (meta.action; usage / usage_<reason> / topup), for ``describe``
    quantity: Decimal | None = None
    period_start: datetime | None = None
    period_end: datetime | None = None
    entries: int = 1  # ledger entries this row stands for (usage of a day, grouped)


def describe(row: TransactionRow, locale: str, tz: str) -> str:
    """The row's description in ``locale``. Entries store theirs in Russian, the language of the
    closing documents, and that text is shown as it is in Russian; other languages get it
    rebuilt from what posted the entry, its quantity and period (the stored text where the
    entry's origin is not known, e.g. a manual adjustment)."""
    from noventiq_panel import i18n

    loc = i18n.normalize_locale(locale)
    key = f"billing.tx.action.{row.action}"
    stored = loc == "ru" and row.action != "usage_credit"  # a credit says so, whatever rating wrote
    if stored or not row.action or i18n.raw(key, loc) is None:
        parts = [row.description]
        if row.entries > 1 and row.period_start is not None and row.period_end is not None:
            parts.append(_period_text(row.period_start, row.period_end, loc, tz))
    else:
        parts = [i18n.t(key, loc, number=row.payment_number or "")]
        if row.quantity and row.kind in (EntryKind.CHARGE, EntryKind.REFUND):
            parts.append(i18n.t("billing.tx.quantity", loc, count=abs(Decimal(row.quantity)).normalize()))
        if row.period_start is not None and row.period_end is not None:
            parts.append(_period_text(row.period_start, row.period_end, loc, tz))
    text = ", ".join(parts)
    if row.entries > 1:
        text += f" ({i18n.tn('billing.tx.entries', row.entries, loc, count=row.entries)})"
    return text


def _period_text(start: datetime, end: datetime, loc: str, tz: str) -> str:
    from noventiq_panel.i18n import format as fmt

    first = fmt.format_date(start, loc, tz=tz, format="short")
    if end - start <= timedelta(hours=1):
        return f"{first} {fmt.format_time(start, tz, loc)}–{fmt.format_time(end, tz, loc)}"
    last = fmt.format_date(end - timedelta(microseconds=1), loc, tz=tz, format="short")
    return first if last == first else f"{first}–{last}"


def _action(kind: str, meta, amount=None) -> str:
    meta = (json.loads(meta) if isinstance(meta, str) else meta) or {}  # text where rows were grouped
    if kind == EntryKind.USAGE:
        if meta.get("not_billed"):
            return f"usage_{meta['not_billed']}"
        # usage netting positive: the vendor's credits, refunds or adjustments outweighed the usage
        return "usage_credit" if amount is not None and amount > 0 else "usage"
    if kind == EntryKind.TOPUP:
        return "topup"
    return str(meta.get("action") or "")


def _bound(value, org: Organisation, *, end: bool, field: str) -> datetime | None:
    """A filter bound: a date is a local day of the organisation (``end`` inclusive: up to the next
    midnight), an aware datetime is taken as it is, an ISO string is parsed."""
    if value in (None, ""):
        return None
    if isinstance(value, str):
        try:
            value = date.fromisoformat(value.strip()) if len(value.strip()) == 10 else datetime.fromisoformat(value)
        except ValueError:
            raise InvalidInput(f"{field}: not a date", field=field, key="error.billing.bad_date") from None
    if isinstance(value, datetime):
        return aware(value)
    if isinstance(value, date):
        return local_midnight(value + timedelta(days=1) if end else value, org.timezone)
    raise InvalidInput(f"{field}: not a date", field=field, key="error.billing.bad_date")


def _query(session: Session, org: Organisation, *, start=None, end=None, kind=None, subscription_id=None,
           group_usage: bool = False):
    """(rows subquery, conditions on it): one row per entry, or per group (``group_usage``)."""
    running = func.sum(LedgerEntry.amount).over(
        partition_by=LedgerEntry.org_id, order_by=(LedgerEntry.occurred_at, LedgerEntry.id))
    extra = []
    if group_usage:
        day = local_date(LedgerEntry.occurred_at, org.timezone, session.get_bind().dialect.name)
        extra.append(case(
            (LedgerEntry.kind == EntryKind.USAGE,
             literal("u") + cast(LedgerEntry.subscription_id, String) + ":" + day + ":" + LedgerEntry.description),
            else_=literal("e") + cast(LedgerEntry.id, String)).label("grp"))
    inner = (
        select(LedgerEntry.id, LedgerEntry.occurred_at, LedgerEntry.kind, LedgerEntry.description,
               LedgerEntry.subscription_id, LedgerEntry.payment_id, LedgerEntry.amount, LedgerEntry.currency,
               LedgerEntry.meta, LedgerEntry.quantity, LedgerEntry.period_start, LedgerEntry.period_end,
               running.label("running_balance"), *extra)
        .where(LedgerEntry.org_id == org.id)
        .subquery("entries")
    )
    conditions = []
    start_at = _bound(start, org, end=False, field="start")
    end_at = _bound(end, org, end=True, field="end")
    if start_at is not None:
        conditions.append(inner.c.occurred_at >= start_at)
    if end_at is not None:
        conditions.append(inner.c.occurred_at < end_at)
    if kind not in (None, ""):
        if kind not in KINDS:
            raise InvalidInput(f"unknown kind {kind!r}", field="kind", key="error.billing.transaction_kind_unknown")
        conditions.append(inner.c.kind == kind)
    if subscription_id not in (None, ""):
        try:
            subscription_id = int(subscription_id)
        except (TypeError, ValueError):
            raise InvalidInput("subscription must be an id", field="subscription_id",
                               key="error.billing.not_integer") from None
        conditions.append(inner.c.subscription_id == subscription_id)
    if not group_usage:
        return inner, conditions
    # The filters choose the entries; then each group's running balance is the one after its last.
    last = func.first_value(inner.c.running_balance, type_=inner.c.running_balance.type).over(
        partition_by=inner.c.grp, order_by=(inner.c.occurred_at.desc(), inner.c.id.desc()))
    chosen = select(inner, last.label("last_running")).where(*conditions).subquery("chosen")
    c = chosen.c
    grouped = (
        select(func.max(c.id).label("id"), func.max(c.occurred_at).label("occurred_at"), func.min(c.kind).label("kind"),
               func.min(c.description).label("description"), func.min(c.subscription_id).label("subscription_id"),
               func.min(c.payment_id).label("payment_id"), func.sum(c.amount).label("amount"),
               func.min(c.currency).label("currency"), func.min(cast(c.meta, String)).label("meta"),
               func.min(c.quantity).label("quantity"), func.min(c.period_start).label("period_start"),
               func.max(c.period_end).label("period_end"), func.max(c.last_running).label("running_balance"),
               func.count().label("entries"))
        .group_by(c.grp)
        .subquery("grouped")
    )
    return grouped, []


def _rows(session: Session, inner, conditions, offset: int | None, limit: int | None) -> list[TransactionRow]:
    sub_name = func.coalesce(func.nullif(Subscription.name, ""), Product.name, Plan.name)
    query = (
        select(inner, sub_name.label("subscription_name"), Payment.number)
        .select_from(inner)
        .outerjoin(Subscription, Subscription.id == inner.c.subscription_id)
        .outerjoin(Plan, Plan.id == Subscription.plan_id)
        .outerjoin(Product, Product.id == Plan.product_id)
        .outerjoin(Payment, Payment.id == inner.c.payment_id)
        .where(*conditions)
        .order_by(inner.c.occurred_at.desc(), inner.c.id.desc())
    )
    if offset:
        query = query.offset(offset)
    if limit is not None:
        query = query.limit(limit)
    result = []
    for r in session.execute(query).all():
        m = r._mapping
        result.append(TransactionRow(
            id=m["id"], occurred_at=m["occurred_at"], kind=m["kind"], description=m["description"] or "",
            subscription_id=m["subscription_id"], subscription_name=m["subscription_name"] or "",
            payment_number=m["number"], amount=m["amount"], currency=m["currency"],
            running_balance=m["running_balance"], action=_action(m["kind"], m["meta"], m["amount"]), quantity=m["quantity"],
            period_start=m["period_start"], period_end=m["period_end"], entries=int(m.get("entries", 1)),
        ))
    return result


def list_transactions(session: Session, actor: Actor, *, start=None, end=None, kind: str | None = None,
                      subscription_id: int | None = None, group_usage: bool = False, offset: int = 0,
                      limit: int = 50) -> tuple[list[TransactionRow], int]:
    """A page of the ledger, newest first, each row with the balance right after it, and the number
    of matching rows. ``start``/``end``: local dates (inclusive) or aware datetimes ([start, end));
    ``group_usage``: a day's usage of a subscription is one row (module documentation)."""
    access = can_read(session, actor)
    offset, limit = page(offset, limit)
    org = session.get(Organisation, access.org_id)  # exists: the access check read it
    inner, conditions = _query(session, org, start=start, end=end, kind=kind, subscription_id=subscription_id,
                               group_usage=group_usage)
    total = session.execute(select(func.count()).select_from(inner).where(*conditions)).scalar_one()
    return _rows(session, inner, conditions, offset, limit), int(total)


def export_transactions(session: Session, actor: Actor, fmt: str = "csv", *, start=None, end=None,
                        kind: str | None = None, subscription_id: int | None = None, group_usage: bool = False,
                        locale: str = "ru", now: datetime | None = None) -> tuple[str, bytes]:
    """(file name, bytes) of the filtered ledger, newest first: CSV (UTF-8 with BOM, so Excel
    reads Cyrillic) or XLSX (numbers as numbers with two decimals, dates as dates)."""
    access = can_read(session, actor)
    if fmt not in ("csv", "xlsx"):
        raise InvalidInput(f"unknown export format {fmt!r}", field="fmt", key="error.billing.export_format")
    from noventiq_panel import i18n

    loc = i18n.normalize_locale(locale)
    org = session.get(Organisation, access.org_id)
    inner, conditions = _query(session, org, start=start, end=end, kind=kind, subscription_id=subscription_id,
                               group_usage=group_usage)
    rows = _rows(session, inner, conditions, None, MAX_EXPORT_ROWS)
    zone = ZoneInfo(org.timezone)
    stamp = (now or utcnow()).astimezone(zone).strftime("%Y%m%d-%H%M")
    filename = f"transactions-{stamp}.{fmt}"
    headers = [i18n.t(f"billing.export.col.{c}", loc) for c in EXPORT_COLUMNS]
    kinds = {k: i18n.t(f"billing.tx.kind.{k}", loc) for k in ("topup", "charge", "usage", "refund", "adjustment")}
    if fmt == "csv":
        buffer = io.StringIO()
        # the list separator of a spreadsheet where the decimal comma is usual (ru, uz), else a comma
        writer = spreadsheet.writer(buffer, delimiter="," if loc == "en" else ";", lineterminator="\r\n")
        writer.writerow(headers)
        for r in rows:
            writer.writerow([
                r.occurred_at.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S"), kinds.get(r.kind, r.kind),
                describe(r, loc, org.timezone), r.subscription_name, r.payment_number or "", f"{r.amount:.2f}", r.currency,
                f"{r.running_balance:.2f}",
            ])
        return filename, ("\ufeff" + buffer.getvalue()).encode("utf-8")

    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Font, PatternFill
    from openpyxl.utils import get_column_letter

    wb = Workbook()
    ws = wb.active
    ws.title = i18n.t("billing.export.sheet", loc)
    ws.append(spreadsheet.safe_row(headers))
    for cell in ws[1]:
        cell.font = Font(bold=True)
        cell.fill = PatternFill("solid", fgColor="E8E8E8")
        cell.alignment = Alignment(vertical="center", wrap_text=True)
    for r in rows:
        ws.append(spreadsheet.safe_row([
            r.occurred_at.astimezone(zone).replace(tzinfo=None), kinds.get(r.kind, r.kind),
            describe(r, loc, org.timezone),
            r.subscription_name, r.payment_number or "", r.amount, r.currency, r.running_balance,
        ]))
    money_format = "#,##0.00"
    for row in ws.iter_rows(min_row=2):
        row[0].number_format = "DD.MM.YYYY HH:MM"
        row[5].number_format = money_format
        row[7].number_format = money_format
    for i, width in enumerate((18, 16, 50, 32, 18, 16, 8, 20), 1):
        ws.column_dimensions[get_column_letter(i)].width = width
    ws.freeze_panes = "A2"
    ws.auto_filter.ref = ws.dimensions
    out = io.BytesIO()
    wb.save(out)
    return filename, out.getvalue()


def subscription_options(session: Session, actor: Actor) -> list[tuple[int, str]]:
    """(id, name) of the organisation's subscriptions, for the transactions filter."""
    access = can_read(session, actor)
    name = func.coalesce(func.nullif(Subscription.name, ""), Product.name, Plan.name)
    rows = session.execute(
        select(Subscription.id, name)
        .select_from(Subscription)
        .outerjoin(Plan, Plan.id == Subscription.plan_id)
        .outerjoin(Product, Product.id == Plan.product_id)
        .where(Subscription.org_id == access.org_id)
        .order_by(name, Subscription.id)
    ).all()
    return [(int(r[0]), str(r[1] or f"#{r[0]}")) for r in rows]
