"""Downloadable reports: the IaaS consumption report (XLSX, CSV) and "download what is shown".

``iaas_report_xlsx`` is also the attachment of the monthly e-mailed consumption report (jobs).
Amounts in the organisation's billing currency are rounded to the currency's minor unit for
display; the totals are the rounded sums of the unrounded amounts.
"""

from __future__ import annotations

import io
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal

from openpyxl import Workbook
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter
from sqlmodel import Session

from noventiq_panel import i18n
from noventiq_panel.services.core import spreadsheet
from noventiq_panel.models import Organisation
from noventiq_panel.services.reporting import iaas, spend
from noventiq_panel.services.reporting.filters import OTHER, Filters
from noventiq_panel.services.core.authz import Actor, can_read
from noventiq_panel.services.core.errors import InvalidInput
from noventiq_panel.services.core.money import quantum

ZERO = Decimal("0")
MONEY_FORMAT = "#,##0.00"
PRICE_FORMAT = "#,##0.000000"
_BOLD = Font(bold=True)
_HEAD_FILL = PatternFill("solid", fgColor="DDE5F0")


def _t(key: str, locale: str, **params) -> str:
    return i18n.t(key, locale, **params)


def _money(value: Decimal | None, currency: str) -> Decimal | None:
    if value is None:
        return None
    return value.quantize(quantum(currency), rounding=ROUND_HALF_UP)


def _cell_text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, str):
        return spreadsheet.safe_cell(value)
    return str(value)


def _filename_part(start: date, end: date) -> str:
    last = end - timedelta(days=1)
    return f"{start.isoformat()}_{last.isoformat()}"


@dataclass
class _Summary:
    currency: str
    rows: list  # DailyRow
    by_sub_service: list[tuple[str, str, Decimal, str, Decimal | None]]  # sub, service, cost, cur, cost_org
    total_org: Decimal
    unconverted: dict[str, Decimal]


def _summarise(session: Session, actor: Actor, start: date, end: date, subscription_id: int | None) -> _Summary:
    currency, rows = iaas.iaas_rows(session, actor, start, end, subscription_id)
    acc: dict[tuple[str, str, str], list] = defaultdict(lambda: [ZERO, ZERO, False])
    total = ZERO
    unconverted: dict[str, Decimal] = defaultdict(lambda: ZERO)
    for r in rows:
        slot = acc[(r.subscription, iaas.CREDITS if r.is_credit else r.service, r.currency)]  # credits apart
        slot[0] += r.cost
        if r.cost_org is None:
            slot[2] = True
            unconverted[r.currency] += r.cost
        else:
            slot[1] += r.cost_org
            total += r.cost_org
    summary = sorted(
        ((sub, svc, cost, cur, None if missing and cost_org == 0 else cost_org)
         for (sub, svc, cur), (cost, cost_org, missing) in acc.items()),
        key=lambda x: (x[0], x[1] == iaas.CREDITS, -(x[4] or ZERO), x[1]))
    return _Summary(currency, rows, summary, total, dict(unconverted))


def _header(ws, row: int, values: list[str]) -> None:
    for col, value in enumerate(values, start=1):
        cell = ws.cell(row=row, column=col, value=value)
        cell.font = _BOLD
        cell.fill = _HEAD_FILL
        cell.alignment = Alignment(wrap_text=True, vertical="top")


def _widths(ws, widths: list[int]) -> None:
    for i, w in enumerate(widths, start=1):
        ws.column_dimensions[get_column_letter(i)].width = w


def iaas_report_xlsx(session: Session, actor: Actor, start: date, end: date, subscription_id: int | None = None,
                     *, locale: str = "ru") -> bytes:
    """XLSX: sheet "Summary" (by subscription and service, with the total) and sheet "Daily"
    (day, subscription, service, resource group, resource, cost in the usage currency and in the
    billing currency)."""
    access = can_read(session, actor)
    org = session.get(Organisation, access.org_id)
    s = _summarise(session, actor, start, end, subscription_id)
    cur = s.currency
    wb = Workbook()
    ws = wb.active
    ws.title = _t("analytics.report.sheet_summary", locale)[:31]
    ws["A1"] = _t("analytics.report.title", locale)
    ws["A1"].font = Font(bold=True, size=14)
    ws["A2"] = spreadsheet.safe_cell(org.name)
    ws["A3"] = _t("analytics.report.period", locale, start=start, end=end - timedelta(days=1))
    _header(ws, 5, [_t("analytics.col.subscription", locale), _t("analytics.col.service", locale),
                    _t("analytics.col.cost_usage", locale), _t("analytics.col.currency", locale),
                    _t("analytics.col.cost_org", locale, currency=cur)])
    r = 6
    for sub, svc, cost, ucur, cost_org in s.by_sub_service:
        ws.cell(row=r, column=1, value=spreadsheet.safe_cell(sub))
        ws.cell(row=r, column=2, value=_t("analytics.iaas.credits", locale) if svc == iaas.CREDITS
                else spreadsheet.safe_cell(svc or "—"))
        ws.cell(row=r, column=3, value=cost).number_format = PRICE_FORMAT
        ws.cell(row=r, column=4, value=ucur)
        ws.cell(row=r, column=5, value=_money(cost_org, cur)).number_format = MONEY_FORMAT
        r += 1
    ws.cell(row=r, column=1, value=_t("analytics.total", locale)).font = _BOLD
    total_cell = ws.cell(row=r, column=5, value=_money(s.total_org, cur))
    total_cell.number_format = MONEY_FORMAT
    total_cell.font = _BOLD
    if s.unconverted:
        r += 2
        ws.cell(row=r, column=1, value=_t("analytics.report.unconverted", locale))
        for ucur, amount in sorted(s.unconverted.items()):
            r += 1
            ws.cell(row=r, column=1, value=ucur)
            ws.cell(row=r, column=3, value=amount).number_format = PRICE_FORMAT
    _widths(ws, [34, 30, 16, 10, 20])
    ws.freeze_panes = "A6"

    wd = wb.create_sheet(_t("analytics.report.sheet_daily", locale)[:31])
    _header(wd, 1, [_t("analytics.col.day", locale), _t("analytics.col.subscription", locale),
                    _t("analytics.col.service", locale), _t("analytics.col.resource_group", locale),
                    _t("analytics.col.resource", locale), _t("analytics.col.resource_id", locale),
                    _t("analytics.col.cost_usage", locale), _t("analytics.col.currency", locale),
                    _t("analytics.col.cost_org", locale, currency=cur), _t("analytics.col.charge_category", locale)])
    for i, row in enumerate(s.rows, start=2):
        wd.cell(row=i, column=1, value=row.day).number_format = "yyyy-mm-dd"
        wd.cell(row=i, column=2, value=spreadsheet.safe_cell(row.subscription))
        wd.cell(row=i, column=3, value=spreadsheet.safe_cell(row.service))
        wd.cell(row=i, column=4, value=spreadsheet.safe_cell(row.resource_group))
        wd.cell(row=i, column=5, value=spreadsheet.safe_cell(row.resource_name))
        wd.cell(row=i, column=6, value=spreadsheet.safe_cell(row.resource_id))
        wd.cell(row=i, column=7, value=row.cost).number_format = PRICE_FORMAT
        wd.cell(row=i, column=8, value=row.currency)
        wd.cell(row=i, column=9, value=row.cost_org).number_format = PRICE_FORMAT
        wd.cell(row=i, column=10, value=spreadsheet.safe_cell(row.charge_category))
    _widths(wd, [12, 28, 24, 24, 28, 50, 16, 10, 18, 14])
    wd.freeze_panes = "A2"
    if s.rows:
        wd.auto_filter.ref = f"A1:J{len(s.rows) + 1}"
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


def iaas_report_csv(session: Session, actor: Actor, start: date, end: date, subscription_id: int | None = None,
                    *, locale: str = "ru") -> bytes:
    """CSV of the daily detail (one row per day, subscription, service, resource group, resource),
    UTF-8 with a byte-order mark so that spreadsheet programs read the Cyrillic right."""
    s = _summarise(session, actor, start, end, subscription_id)
    buf = io.StringIO()
    w = spreadsheet.writer(buf, lineterminator="\r\n")
    w.writerow(["day", "subscription", "service", "resource_group", "resource", "resource_id", "cost",
                "currency", f"cost_{s.currency.lower()}", "charge_category"])
    for row in s.rows:
        w.writerow([row.day.isoformat(), row.subscription, row.service, row.resource_group, row.resource_name,
                    row.resource_id, str(row.cost), row.currency, "" if row.cost_org is None else str(row.cost_org),
                    row.charge_category])
    return ("\ufeff" + buf.getvalue()).encode("utf-8")


def iaas_report_filename(start: date, end: date, fmt: str) -> str:
    return f"iaas-usage_{_filename_part(start, end)}.{fmt}"


# --------------------------------------------------------------------------------------------
# "Download what is shown" on the analytics page


def _label(slice_or_series, locale: str) -> str:
    if slice_or_series.key == OTHER:
        return _t("analytics.other", locale)
    return slice_or_series.label


def _model_label(key: str, locale: str) -> str:
    return _t(f"analytics.model.{key}", locale) if key != OTHER else _t("analytics.other", locale)


def _overview_tables(structure, dyn, locale: str):
    """[(title, header, rows)] of what the page shows."""
    cur = structure.currency
    tables = []
    for title_key, slices, model in (("analytics.by_product", structure.by_product, False),
                                     ("analytics.by_vendor", structure.by_vendor, False),
                                     ("analytics.by_subscription", structure.by_subscription, False),
                                     ("analytics.by_payment_model", structure.by_payment_model, True)):
        rows = [[_model_label(s.key, locale) if model else _label(s, locale), s.amount, s.share] for s in slices]
        rows.append([_t("analytics.total", locale), structure.total, Decimal("100.00") if structure.total else ZERO])
        tables.append((_t(title_key, locale),
                       [_t("analytics.col.name", locale), _t("analytics.col.amount", locale, currency=cur),
                        _t("analytics.col.share", locale)], rows))
    header = [_t("analytics.col.period", locale)] + [_label(s, locale) for s in dyn.series] + \
        [_t("analytics.total", locale), _t("analytics.col.previous", locale)]
    rows = []
    for i, bucket in enumerate(dyn.buckets):
        prev = dyn.previous_totals[i] if i < len(dyn.previous_totals) else None
        rows.append([bucket] + [s.values[i] for s in dyn.series] + [dyn.totals[i], prev])
    rows.append([_t("analytics.total", locale)] + [s.total for s in dyn.series] + [dyn.total, dyn.previous_total])
    tables.append((_t("analytics.dynamics", locale), header, rows))
    return tables


def analytics_export(session: Session, actor: Actor, filters: Filters, fmt: str, *, locale: str = "ru",
                     section: str = "overview") -> tuple[str, bytes]:
    """(file name, content) of what the analytics page shows for ``filters``.

    ``section="overview"``: structure and dynamics; ``section="iaas"``: the IaaS report of the
    period (the subscription filter applies). ``fmt`` is ``"csv"`` or ``"xlsx"``.
    """
    if fmt not in ("csv", "xlsx"):
        raise InvalidInput("format: csv or xlsx", field="format", key="error.analytics_format")
    f = filters.validated()
    if section == "iaas":
        maker = iaas_report_xlsx if fmt == "xlsx" else iaas_report_csv
        return iaas_report_filename(f.start, f.end, fmt), maker(session, actor, f.start, f.end, f.subscription_id,
                                                                 locale=locale)
    if section != "overview":
        raise InvalidInput("unknown section", field="section", key="error.analytics_filter")
    structure = spend.structure(session, actor, f)
    dyn = spend.dynamics(session, actor, f)
    tables = _overview_tables(structure, dyn, locale)
    name = f"analytics_{_filename_part(f.start, f.end)}.{fmt}"
    if fmt == "csv":
        buf = io.StringIO()
        w = spreadsheet.writer(buf, lineterminator="\r\n")
        for n, (title, header, rows) in enumerate(tables):
            if n:
                w.writerow([])
            w.writerow([title])
            w.writerow(header)
            for row in rows:
                w.writerow([_cell_text(v) for v in row])
        return name, ("\ufeff" + buf.getvalue()).encode("utf-8")
    wb = Workbook()
    ws = wb.active
    ws.title = _t("analytics.report.sheet_structure", locale)[:31]
    ws["A1"] = _t("analytics.title", locale)
    ws["A1"].font = Font(bold=True, size=14)
    ws["A2"] = _t("analytics.report.period", locale, start=f.start, end=f.end - timedelta(days=1))
    r = 4
    for title, header, rows in tables[:-1]:
        ws.cell(row=r, column=1, value=title).font = _BOLD
        _header(ws, r + 1, header)
        r += 2
        for row in rows:
            ws.cell(row=r, column=1, value=spreadsheet.safe_cell(row[0]))
            ws.cell(row=r, column=2, value=row[1]).number_format = MONEY_FORMAT
            ws.cell(row=r, column=3, value=row[2]).number_format = "0.00"
            r += 1
        r += 1
    _widths(ws, [40, 20, 12])
    title, header, rows = tables[-1]
    wd = wb.create_sheet(_t("analytics.report.sheet_dynamics", locale)[:31])
    _header(wd, 1, [spreadsheet.safe_cell(h) for h in header])
    for i, row in enumerate(rows, start=2):
        for j, v in enumerate(row, start=1):
            cell = wd.cell(row=i, column=j, value=spreadsheet.safe_cell(v))
            if isinstance(v, Decimal):
                cell.number_format = MONEY_FORMAT
            elif isinstance(v, date):
                cell.number_format = "yyyy-mm-dd" if dyn.granularity == "day" else "yyyy-mm"
    _widths(wd, [14] + [18] * (len(header) - 1))
    out = io.BytesIO()
    wb.save(out)
    return name, out.getvalue()


__all__ = ["iaas_report_xlsx", "iaas_report_csv", "iaas_report_filename", "analytics_export"]
