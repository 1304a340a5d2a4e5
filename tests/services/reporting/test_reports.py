"""Reports: the IaaS XLSX/CSV read back with openpyxl/csv carry the same totals as the analytics;
"download what is shown" equals the page's figures; access and formula injection."""

from __future__ import annotations

import csv
import io
from datetime import date
from decimal import Decimal

import pytest
from openpyxl import load_workbook

from noventiq_panel.services.reporting import reports
from noventiq_panel.services.reporting.filters import Filters
from noventiq_panel.services.reporting.iaas import iaas_detail
from noventiq_panel.services.reporting.spend import structure
from noventiq_panel.services.usage import usage_import
from noventiq_panel.services.core.errors import Forbidden, InvalidInput

from tests import factories as f
from tests.services.analytics_helpers import DATA, rate, spend, utc, world

JAN = (date(2025, 1, 1), date(2025, 2, 1))


def _usage(session, markup="0"):
    w = world(session, markup=markup)
    rate(session, date(2025, 1, 1), "12000")
    usage_import.import_file(session, DATA / "focus_1_0.csv")
    usage_import.import_file(session, DATA / "azure_mca.csv")
    return w


def _d(value) -> Decimal:
    return Decimal(str(value))


def test_iaas_xlsx_summary_and_daily_totals_match_the_detail(session):
    w = _usage(session, markup="10")
    data = reports.iaas_report_xlsx(session, w.actor(w.finance), *JAN, locale="en")
    wb = load_workbook(io.BytesIO(data))
    assert wb.sheetnames == ["Summary", "Daily detail"]
    summary, daily = wb["Summary"], wb["Daily detail"]
    assert summary["A2"].value == "ООО «Ромашка»"
    rows = list(summary.iter_rows(min_row=6, values_only=True))
    total_row = next(r for r in rows if r[0] == "Total")
    body = rows[:rows.index(total_row)]
    detail = iaas_detail(session, w.actor(), *JAN)
    assert _d(total_row[4]) == detail.total
    assert abs(sum(_d(r[4]) for r in body) - detail.total) <= Decimal("0.005") * len(body)
    assert {r[0] for r in body} == {"Azure Prod"}  # the other organisation's subscription is absent
    drows = list(daily.iter_rows(min_row=2, values_only=True))
    # Usage currency column: 10 % markup on 14.095678 + 5.325 USD (each roll-up row keeps 6 decimals).
    expected = (Decimal("14.095678") + Decimal("5.325")) * Decimal("1.1")
    assert abs(sum(_d(r[2]) for r in body) - expected) <= Decimal("0.0000005") * len(drows)
    assert sum(_d(r[8]) for r in drows).quantize(Decimal("0.01")) == detail.total
    assert {r[0].date() for r in drows} <= {date(2025, 1, d) for d in range(1, 32)}


def test_iaas_xlsx_for_one_subscription_and_in_russian(session):
    w = _usage(session)
    data = reports.iaas_report_xlsx(session, w.actor(), *JAN, subscription_id=w.azure.id)
    wb = load_workbook(io.BytesIO(data))
    assert wb.sheetnames == ["Сводка", "По дням"]
    with pytest.raises(Exception):  # a foreign subscription id looks missing
        reports.iaas_report_xlsx(session, w.actor(), *JAN, subscription_id=w.azure_other.id)


def test_iaas_csv_totals_and_bom(session):
    w = _usage(session)
    data = reports.iaas_report_csv(session, w.actor(), *JAN)
    assert data.startswith("\ufeff".encode("utf-8"))
    rows = list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"))))
    detail = iaas_detail(session, w.actor(), *JAN)
    assert sum(Decimal(r["cost_uzs"]) for r in rows).quantize(Decimal("0.01")) == detail.total
    assert sum(Decimal(r["cost"]) for r in rows) == Decimal("14.095678") + Decimal("5.325")


def test_reports_check_access(session):
    w = _usage(session)
    with pytest.raises(Forbidden):
        reports.iaas_report_xlsx(session, f.actor(w.stranger, w.org), *JAN)
    with pytest.raises(Forbidden):
        reports.analytics_export(session, f.actor(w.stranger, w.org), Filters(*JAN), "csv")


def test_analytics_export_xlsx_and_csv_equal_the_page(session):
    w = world(session)
    spend(session, w.org, "1000.50", utc(2025, 1, 5), subscription=w.basic)
    spend(session, w.org, "250.25", utc(2025, 1, 20), kind="usage", subscription=w.azure)
    spend(session, w.org, "100.00", utc(2025, 1, 21), kind="refund", subscription=w.basic)
    spend(session, w.org, "77.00", utc(2024, 12, 10), subscription=w.std)
    flt = Filters(*JAN, preset="last_month")
    s = structure(session, w.actor(), flt)
    name, data = reports.analytics_export(session, w.actor(w.finance), flt, "xlsx", locale="en")
    assert name == "analytics_2025-01-01_2025-01-31.xlsx"
    wb = load_workbook(io.BytesIO(data))
    ws = wb["Structure"]
    cells = [r for r in ws.iter_rows(values_only=True) if r and r[0] == "Total"]
    assert len(cells) == 4 and all(_d(r[1]) == s.total == Decimal("1150.75") for r in cells)
    dyn = wb["Dynamics"]
    header = [c.value for c in dyn[1]]
    last = [c.value for c in dyn[dyn.max_row]]
    assert header[-2:] == ["Total", "Previous period"]
    assert _d(last[-2]) == Decimal("1150.75") and _d(last[-1]) == Decimal("77.00")
    name, data = reports.analytics_export(session, w.actor(), flt, "csv", locale="ru")
    assert name.endswith(".csv")
    text = data.decode("utf-8-sig")
    assert "По продуктам" in text and "1150.75" in text and "Microsoft 365 Business Basic,900.50" in text
    with pytest.raises(InvalidInput):
        reports.analytics_export(session, w.actor(), flt, "pdf")


def test_iaas_section_of_the_export_is_the_iaas_report(session):
    w = _usage(session)
    name, data = reports.analytics_export(session, w.actor(), Filters(*JAN), "xlsx", section="iaas")
    assert name == "iaas-usage_2025-01-01_2025-01-31.xlsx"
    assert load_workbook(io.BytesIO(data)).sheetnames == ["Сводка", "По дням"]


def test_text_that_looks_like_a_formula_is_not_a_formula(session):
    w = world(session)
    w.basic.name = "=HYPERLINK(\"http://evil\")"
    session.add(w.basic)
    session.commit()
    spend(session, w.org, "10.00", utc(2025, 1, 5), subscription=w.basic)
    _, data = reports.analytics_export(session, w.actor(), Filters(*JAN), "xlsx")
    wb = load_workbook(io.BytesIO(data))
    values = [c.value for row in wb.worksheets[0].iter_rows() for c in row if isinstance(c.value, str)]
    assert "'=HYPERLINK(\"http://evil\")" in values
    assert not any(v.startswith("=") for v in values)
