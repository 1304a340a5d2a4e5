"""Benchmark of renewals (services/subscriptions/renewals.py, through the ``renewals`` job's functions). Prints figures.

    .venv/bin/python bench/bench_renewals.py                  # 10 000 subscriptions due at once
    .venv/bin/python bench/bench_renewals.py --subs 500 --db sqlite

Data are generated with bulk inserts (executemany): organisations with an owner and a top-up, and
licence subscriptions whose term ended an hour ago with auto-renew on. ``renew_due`` runs in a
session made as the job makes it (``expire_on_commit=False``). Figures: seconds of the first run
(aim ≤ 5 s), then a second run (it must charge nothing), and a check that each subscription was
charged exactly once.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import create_engine, text  # noqa: E402
from sqlmodel import Session  # noqa: E402

from noventiq_panel import models  # noqa: E402
from noventiq_panel.db import make_engine  # noqa: E402

PG_ADMIN_URL = os.environ.get("PANEL_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
NOW = datetime(2026, 11, 10, 7, 0, tzinfo=timezone.utc)
SUBS_PER_ORG = 10
PRICE = Decimal("30000")  # UZS per seat and month
SEATS = 2


def _ts(dt: datetime, pg: bool):
    return dt if pg else dt.replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")


def generate(engine, subs: int) -> int:
    pg = engine.dialect.name == "postgresql"
    with Session(engine) as s:
        vendor = models.Vendor(code="ms", name="Microsoft")
        s.add(vendor)
        s.flush()
        product = models.Product(code="m365", vendor_id=vendor.id, name="Microsoft 365 Business Basic")
        s.add(product)
        s.flush()
        plan = models.Plan(code="basic-m", product_id=product.id, name="Basic, month", term="month",
                           billing_frequency="upfront", price=PRICE, currency="UZS")
        s.add(plan)
        s.flush()
        plan_id = plan.id
        s.commit()
    orgs = max(1, (subs + SUBS_PER_ORG - 1) // SUBS_PER_ORG)
    raw = engine.raw_connection()
    cur = raw.cursor()
    if not pg:
        cur.execute("BEGIN")
    p = "%s" if pg else "?"
    created = _ts(NOW - timedelta(days=60), pg)
    cur.executemany(
        f"INSERT INTO organisation (id, name, tax_id, address, phone, bank_details, billing_currency, timezone, "
        f"billing_mode, credit_limit, is_active, created_at) VALUES ({','.join([p] * 12)})",
        [(o, f"Org {o}", f"{300000000 + o}", "", "", "", "UZS", "Asia/Tashkent", "prepaid", 0, True, created)
         for o in range(1, orgs + 1)])
    cur.executemany(
        f"INSERT INTO \"user\" (id, email, name, locale, is_active, created_at) VALUES ({','.join([p] * 6)})",
        [(o, f"owner{o}@bench.example", f"Owner {o}", "ru", True, created) for o in range(1, orgs + 1)])
    cur.executemany(
        f"INSERT INTO membership (user_id, org_id, role, is_active, awaiting_consent, created_at) "
        f"VALUES ({','.join([p] * 6)})",
        [(o, o, "owner", True, False, created) for o in range(1, orgs + 1)])
    cur.executemany(
        f"INSERT INTO ledgerentry (org_id, kind, amount, currency, description, idempotency_key, occurred_at, "
        f"created_at, meta) VALUES ({','.join([p] * 9)})",
        [(o, "topup", 100_000_000 * 100, "UZS", "bench top-up", f"bench-topup-{o}", created, created, "{}")
         for o in range(1, orgs + 1)])
    start, end = _ts(NOW - timedelta(days=30, hours=1), pg), _ts(NOW - timedelta(hours=1), pg)
    cur.executemany(
        f"INSERT INTO subscription (id, org_id, plan_id, name, status, quantity, term_start, term_end, auto_renew, "
        f"is_trial, trial_convert, vendor_ref, created_at, activated_at, cancel_at_term_end, suspend_reason) "
        f"VALUES ({','.join([p] * 16)})",
        [(i, (i - 1) // SUBS_PER_ORG + 1, plan_id, f"M365 {i}", "active", SEATS, start, end, True, False, False,
          f"ref-{i}", start, start, False, "") for i in range(1, subs + 1)])
    raw.commit()
    if pg:
        for table in ("organisation", "user", "subscription", "ledgerentry"):
            cur.execute(f"SELECT setval(pg_get_serial_sequence('\"{table}\"', 'id'), (SELECT MAX(id) FROM \"{table}\"))")
        cur.execute("ANALYZE")
        raw.commit()
    cur.close()
    raw.close()
    return subs


def charges(engine) -> tuple[int, Decimal]:
    with engine.connect() as c:
        n, total = c.execute(text("SELECT COUNT(*), COALESCE(SUM(amount), 0) FROM ledgerentry WHERE kind = 'charge'")).one()
    return int(n), Decimal(int(total)).scaleb(-2)


def run(label: str, url: str, subs: int) -> None:
    from noventiq_panel.services.subscriptions import renewals

    engine = make_engine(url)
    models.metadata.create_all(engine)
    t0 = time.perf_counter()
    generate(engine, subs)
    print(f"[{label}] generated {subs:,} subscriptions due at once in {time.perf_counter() - t0:.1f}s", flush=True)
    with Session(engine, expire_on_commit=False) as s:  # as jobs/definitions.py opens it
        t0 = time.perf_counter()
        first = renewals.renew_due(s, now=NOW)
        t1 = time.perf_counter() - t0
    n1, total1 = charges(engine)
    print(f"[{label}] first run: {first.get('renewed')} renewed in {t1:.2f}s "
          f"({subs / t1:,.0f} subscriptions/s); {n1} charges, {total1} UZS", flush=True)
    with Session(engine, expire_on_commit=False) as s:
        t0 = time.perf_counter()
        second = renewals.renew_due(s, now=NOW + timedelta(minutes=5))
        t2 = time.perf_counter() - t0
    n2, total2 = charges(engine)
    print(f"[{label}] second run: {second.get('renewed')} renewed in {t2:.2f}s; new charges: {n2 - n1}", flush=True)
    expected = -PRICE * SEATS * subs
    ok = n1 == subs and total1 == expected and n2 == n1
    print(f"[{label}] check: {'OK' if ok else 'MISMATCH'} (expected {subs} charges totalling {expected} UZS)",
          flush=True)
    engine.dispose()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--subs", type=int, default=10_000)
    ap.add_argument("--db", choices=("sqlite", "pg", "both"), default="both")
    ap.add_argument("--pg-url", default=PG_ADMIN_URL)
    args = ap.parse_args()
    print(f"renewals benchmark: {args.subs:,} licence subscriptions due at once", flush=True)
    if args.db in ("sqlite", "both"):
        with tempfile.TemporaryDirectory() as tmp:
            run("sqlite", f"sqlite:///{tmp}/bench.db", args.subs)
    if args.db in ("pg", "both"):
        name = f"bench_renewals_{uuid.uuid4().hex[:8]}"
        admin = create_engine(args.pg_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as c:
            c.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            run("postgresql", args.pg_url.rsplit("/", 1)[0] + "/" + name, args.subs)
        finally:
            with admin.connect() as c:
                c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()


if __name__ == "__main__":
    main()
