"""Issue 14: every CSV/XLSX the panel writes neutralises cells a spreadsheet would run."""

from __future__ import annotations

import io
from datetime import date, datetime, timezone
from decimal import Decimal

import pytest
from openpyxl import load_workbook

from noventiq_panel.models import Role
from noventiq_panel.services.billing import transactions
from noventiq_panel.services.core import ledger, spreadsheet

from tests import factories as f


@pytest.mark.parametrize("text", ["=HYPERLINK(\"http://x\",\"y\")", "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(A1)",
                                  "\tcmd", "\r=1"])
def test_text_a_spreadsheet_would_run_is_quoted(text):
    assert spreadsheet.safe_cell(text) == "'" + text


@pytest.mark.parametrize("value", ["-1500.50", "+12", "1e-5", "ООО «Ромашка»", "a=b", Decimal("-5"), -3, None,
                                   date(2026, 1, 1)])
def test_numbers_and_ordinary_text_stay_as_they_are(value):
    assert spreadsheet.safe_cell(value) == value


def test_the_transactions_export_neutralises_customer_text_in_csv_and_xlsx(session):
    o = f.org(session)
    u = f.user(session, o, Role.OWNER)
    ledger.post(session, org_id=o.id, kind="adjustment", amount=Decimal("-100.00"), idempotency_key="evil",
                description="=HYPERLINK(\"http://evil.example\",\"click\")",
                occurred_at=datetime(2026, 3, 1, tzinfo=timezone.utc))
    session.commit()
    _name, data = transactions.export_transactions(session, f.actor(u, o), "csv")
    text = data.decode("utf-8-sig")
    assert "'=HYPERLINK" in text and ";=HYPERLINK" not in text and ",=HYPERLINK" not in text
    assert "-100.00" in text  # a negative amount stays a number
    _name, data = transactions.export_transactions(session, f.actor(u, o), "xlsx")
    cells = [c.value for row in load_workbook(io.BytesIO(data)).active.iter_rows() for c in row]
    assert any(isinstance(c, str) and c.startswith("'=HYPERLINK") for c in cells)
    assert not any(isinstance(c, str) and c.startswith("=") for c in cells)
