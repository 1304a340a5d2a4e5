"""The command-line tool: init, demo, create-customer, import-catalog, rates, outbox.

Hazards: a second ``demo`` duplicating rows or money; a broken catalog file imported half-way or
rejected without saying where; a new customer's owner left without a usable set-password link;
a mistyped manual rate stored.
"""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from click.testing import CliRunner
from sqlmodel import Session, select

from noventiq_panel import db as dbmod
from noventiq_panel.cli import main
from noventiq_panel.models import ExchangeRate, Notification, Plan, Vendor
from noventiq_panel.services.demo import demo as demo_service

from tests import factories as f

NOW = "2026-11-25T08:30:00"


def run(*args: str, ok: bool = True):
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, result.output
    return result


def snapshot() -> dict:
    with Session(dbmod.get_engine()) as session:
        return demo_service.describe(session)


def test_init_then_demo_twice_gives_the_same_data(db_url):
    first_init = run("init")
    assert "migrated" in first_init.output
    assert "up to date" in run("init").output
    out = run("demo", "--now", NOW).output
    for login in ("owner@demo.example", "admin@demo.example", "finance@demo.example", "owner@other.example"):
        assert login in out
    assert "demo12345" in out and "http" in out
    first = snapshot()
    assert first["counts"]["usagerecord"] > 10000
    assert first["counts"]["subscription"] >= 12
    again = run("demo", "--now", "2026-12-01T00:00:00").output  # another "now" changes nothing either
    assert "already loaded" in again
    assert snapshot() == first


def test_demo_on_an_empty_database_migrates_it_first(sqlite_url):
    run("demo", "--now", NOW)
    assert "up to date" in run("init").output


# --- import-catalog --------------------------------------------------------------------------

BROKEN_YAML = """\
vendors:
  - code: ms
    name: Microsoft
products:
  - code: m365
    vendor: ms
    name: Microsoft 365
    plans:
      - code: m365-1m
        name: Month
        price: "12.5O"
        term: month
"""


def _counts() -> tuple[int, int]:
    with Session(dbmod.get_engine()) as session:
        return len(session.exec(select(Vendor)).all()), len(session.exec(select(Plan)).all())


def test_import_catalog_with_a_broken_yaml_file_names_the_line_and_the_field(sqlite_url, tmp_path):
    run("init")
    path = tmp_path / "catalog.yaml"
    path.write_text(BROKEN_YAML, encoding="utf-8")
    result = run("import-catalog", str(path), ok=False)
    assert result.exit_code == 1
    assert re.search(r"catalog\.yaml:11: products\[0\]\.plans\[0\]\.price: .*decimal", result.output), result.output
    assert _counts() == (0, 0)  # the valid vendor above the error was not written either


def test_import_catalog_with_a_broken_json_file_names_the_line_and_the_field(sqlite_url, tmp_path):
    run("init")
    path = tmp_path / "catalog.json"
    path.write_text('{\n  "vendors": [{"code": "ms", "name": "Microsoft"}],\n  "products": [\n'
                    '    {"code": "p", "vendor": "ms", "name": "P",\n'
                    '     "plans": [{"code": "p-m", "name": "M", "max_quantity": "many"}]}\n  ]\n}\n',
                    encoding="utf-8")
    result = run("import-catalog", str(path), ok=False)
    assert result.exit_code == 1
    assert "catalog.json:5: products[0].plans[0].max_quantity" in result.output, result.output
    assert _counts() == (0, 0)


def test_import_catalog_with_a_yaml_syntax_error_names_the_line(sqlite_url, tmp_path):
    run("init")
    path = tmp_path / "catalog.yml"
    path.write_text("vendors:\n  - code: ms\n    name: [Microsoft\nproducts: []\n", encoding="utf-8")
    result = run("import-catalog", str(path), ok=False)
    assert result.exit_code == 1
    assert re.search(r"catalog\.yml:\d+: \(file\): not valid YAML", result.output), result.output


def test_import_catalog_twice_changes_nothing(sqlite_url):
    run("init")
    first = run("import-catalog", str(demo_service.DEMO_CATALOG)).output
    assert "44 new" in first or "new" in first
    counts = _counts()
    second = run("import-catalog", str(demo_service.DEMO_CATALOG)).output
    assert "0 new, 0 updated" in second and second.count("0 new, 0 updated") == 3, second
    assert _counts() == counts


def test_import_catalog_keeps_a_pay_as_you_go_plan_without_a_term(sqlite_url):
    # The ORM drops a None from an INSERT when the column has a default: term would become "month".
    run("init")
    run("import-catalog", str(demo_service.DEMO_CATALOG))
    with Session(dbmod.get_engine()) as session:
        plan = session.exec(select(Plan).where(Plan.code == "azure-payg-hourly")).one()
        assert (plan.billing_type, plan.term, plan.billing_frequency, plan.granularity) == ("payg", None, None, "hour")


# --- create-customer -------------------------------------------------------------------------


def test_create_customer_puts_a_welcome_mail_with_a_set_password_link_in_the_outbox(db_url):
    from noventiq_panel.services.identity import auth

    run("init")
    out = run("create-customer", "ООО «Новый клиент»", "301234567", "Boss@Client.example", "Иван Петров").output
    assert "boss@client.example" in out
    with Session(dbmod.get_engine()) as session:
        mail = session.exec(select(Notification).where(Notification.kind == "welcome")).one()
        assert mail.to_email == "boss@client.example" and mail.status == "queued"
        links = [f.mailed_token(session, mail)]  # kept apart from the stored mail until it is sent
        assert "/reset/" + links[0] not in mail.body_text
        info = auth.check_reset_token(session, links[0])  # the link works
        assert info.email == "boss@client.example"
    listed = run("outbox", "list", "--kind", "welcome").output
    assert "/reset/" + links[0] in listed


def test_create_customer_with_bad_input_is_refused_and_writes_nothing(sqlite_url):
    run("init")
    result = run("create-customer", "ООО «Клиент»", "301234567", "not-an-email", "Иван", ok=False)
    assert result.exit_code == 1 and "Error" in result.output
    result = run("create-customer", "ООО «Клиент»", "301234567", "a@b.example", "Иван", "--credit-limit", "1000",
                 ok=False)
    assert result.exit_code == 1
    with Session(dbmod.get_engine()) as session:
        assert session.exec(select(Notification)).all() == []


# --- rates -----------------------------------------------------------------------------------


def test_rates_set_stores_a_manual_rate_per_unit(sqlite_url):
    run("init")
    run("rates", "set", "usd", "2026-11-24", "12171.03")
    run("rates", "set", "KZT", "2026-11-24", "235.10", "--nominal", "10")
    with Session(dbmod.get_engine()) as session:
        rows = {r.currency: r for r in session.exec(select(ExchangeRate)).all()}
    assert rows["USD"].rate == Decimal("12171.03") and rows["USD"].source == "manual"
    assert rows["KZT"].rate == Decimal("23.51")


@pytest.mark.parametrize("args", [
    ("UZS", "2026-11-24", "1"),
    ("US", "2026-11-24", "12000"),
    ("USD", "24.11.2026", "12000"),
    ("USD", "2026-11-24", "-5"),
    ("USD", "2026-11-24", "12 000,5x"),
    ("USD", "2999-01-01", "12000"),
])
def test_rates_set_refuses_bad_input_and_stores_nothing(sqlite_url, args):
    run("init")
    result = run("rates", "set", *args, ok=False)
    assert result.exit_code == 2, result.output
    with Session(dbmod.get_engine()) as session:
        assert session.exec(select(ExchangeRate)).all() == []


def test_provisioning_commands_list_complete_and_reject_the_queue(sqlite_url):
    """A vendor without an API: the operator lists the queue, completes one order (charged then,
    once) and rejects another (released); bad input and a second completion are refused."""
    from noventiq_panel.models import LedgerEntry, ProvisioningTask
    from noventiq_panel.services.subscriptions import ordering
    from noventiq_panel.services.vendors import connector
    from tests.services.subs_world import NOW as AT, make_world

    connector.unregister("*")  # no connector: the queue
    run("init")
    with Session(dbmod.get_engine(), expire_on_commit=False) as s:
        w = make_world(s)
        w.topup("100000")
        first = ordering.order(s, w.a_owner, w.plan("basic-m").id, 1, now=AT).subscription_id
        second = ordering.order(s, w.a_owner, w.plan("basic-m").id, 2, now=AT).subscription_id
        t1, t2 = (s.exec(select(ProvisioningTask.id).where(ProvisioningTask.subscription_id == i)).one()
                  for i in (first, second))
    listed = run("provisioning", "list").output
    assert f"#{t1}" in listed and f"#{t2}" in listed and "reserved 60000.00 UZS" in listed
    one = run("provisioning", "list", "--limit", "1").output  # never cut short silently
    assert f"#{t1}" in one and f"#{t2}" not in one and "showing 1 of 2 tasks" in one
    refused = run("provisioning", "complete", str(t1), "--operator", "Ivan", ok=False)
    assert refused.exit_code == 1 and "vendor's reference" in refused.output
    assert run("provisioning", "complete", "abc", "--operator", "Ivan", "--vendor-ref", "X", ok=False).exit_code == 1
    done = run("provisioning", "complete", str(t1), "--operator", "Ivan", "--vendor-ref", "KAS-1").output
    assert done.startswith("completed:") and "by Ivan" in done
    again = run("provisioning", "complete", str(t1), "--operator", "Olga", "--vendor-ref", "KAS-2", ok=False)
    assert again.exit_code == 1 and "completed already" in again.output
    assert run("provisioning", "reject", str(t2), "--operator", "Ivan", "--reason", "not sold here").exit_code == 0
    assert run("provisioning", "list").output.strip() == "no open tasks"
    shown = run("provisioning", "show", str(t2)).output
    assert "rejected" in shown and "reason: not sold here" in shown
    with Session(dbmod.get_engine()) as s:
        charges = s.exec(select(LedgerEntry).where(LedgerEntry.subscription_id.in_([first, second]))).all()
        assert [(e.subscription_id, e.amount) for e in charges] == [(first, Decimal("-30000.00"))]
