"""Benchmark of the analytics queries on a large SQLite database (prints figures; not a test).

Builds (or reuses) a database of ``--orgs`` organisations and about ``--rows`` usage records
(each organisation has two pay-as-you-go and two licence subscriptions, its usage spread over
``--days`` days, one record per resource and day), the ledger that rating and renewals would have
written (one usage entry per pay-as-you-go subscription and day, a licence charge per subscription
and month over two years, a monthly top-up), and the daily roll-up. Then it times, for one
organisation, the median of ``--runs`` runs of:

- 12-month structure + dynamics (the analytics page's default year view, previous year included);
- 90-day IaaS daily detail (by service, resource group and resource, movers, cumulative + budget);
- refresh_daily_rollup of that organisation's whole year (what the importer/rating call).

    .venv/bin/python bench/bench_analytics.py --orgs 2000 --rows 10000000
    .venv/bin/python bench/bench_analytics.py --orgs 50 --rows 250000      # quick

The data is generated inside SQLite with recursive CTEs (seconds per million rows), in the exact
storage format of the models (scaled integers, SQLAlchemy's datetime text).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from datetime import date, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import text  # noqa: E402
from sqlmodel import Session  # noqa: E402

from noventiq_panel import models  # noqa: E402
from noventiq_panel.db import make_engine  # noqa: E402
from noventiq_panel.services.core.authz import Actor  # noqa: E402
from noventiq_panel.services.reporting import iaas, spend  # noqa: E402
from noventiq_panel.services.usage import rollup  # noqa: E402
from noventiq_panel.services.reporting.filters import Filters  # noqa: E402

END = date(2026, 1, 1)  # the data ends here (exclusive); the benchmark's "today" is 31 Dec 2025
SERVICES = ["Virtual Machines", "Storage", "SQL Database", "Bandwidth", "Azure App Service", "Key Vault",
            "Log Analytics"]
RATE = 12000  # UZS per USD, integer so that the generated ledger is exact


def build(path: Path, orgs: int, rows: int, days: int) -> dict:
    if path.exists():
        path.unlink()
    for suffix in ("-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    url = f"sqlite:///{path}"
    engine = make_engine(url)
    models.metadata.create_all(engine)
    per_org = max(1, round(rows / orgs / days))  # resources per organisation
    start = END - timedelta(days=days)
    t0 = time.perf_counter()
    with engine.begin() as c:
        c.exec_driver_sql("PRAGMA cache_size=-400000")
        c.exec_driver_sql("INSERT INTO vendor (id, code, name, portal_url) VALUES (1, 'ms', 'Microsoft', '')")
        c.exec_driver_sql(
            "INSERT INTO product (id, code, vendor_id, name, category, description, activation_md, is_active, "
            "sort_order) VALUES (1, 'm365-basic', 1, 'Microsoft 365 Business Basic', 'Office', '', '', 1, 0),"
            "(2, 'm365-std', 1, 'Microsoft 365 Business Standard', 'Office', '', '', 1, 0),"
            "(3, 'azure', 1, 'Microsoft Azure', 'IaaS', '', '', 1, 0)")
        plan_cols = ("id, code, product_id, name, billing_type, term, billing_frequency, granularity, price, currency, "
                     "usage_markup_pct, min_quantity, max_quantity, trial_days, trial_max_quantity, "
                     "cancellation_window_hours, suspendable, allowed_changes, is_active, sort_order")
        c.exec_driver_sql(
            f"INSERT INTO plan ({plan_cols}) VALUES "
            "(1, 'basic-m', 1, 'Basic', 'license', 'month', 'upfront', NULL, 30000000000, 'UZS', 0, 1, 300, 0, 25, "
            "168, 0, '[]', 1, 0),"
            "(2, 'std-y', 2, 'Standard', 'license', 'year', 'monthly', NULL, 90000000000, 'UZS', 0, 1, 300, 0, 25, "
            "168, 0, '[]', 1, 0),"
            "(3, 'azure-d', 3, 'Azure', 'payg', NULL, NULL, 'day', 0, 'USD', 0, 1, 1, 0, 25, 168, 0, '[]', 1, 0)")
        c.exec_driver_sql(
            "INSERT INTO exchangerate (currency, rate_date, rate, source, fetched_at) "
            f"VALUES ('USD', '2020-01-01', {RATE * 10**6}, 'manual', '2020-01-01 00:00:00.000000')")
        c.exec_driver_sql(f"""
            WITH RECURSIVE o(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM o WHERE i < {orgs})
            INSERT INTO organisation (id, name, tax_id, address, phone, bank_details, billing_currency, timezone,
                                      billing_mode, credit_limit, is_active, created_at)
            SELECT i, 'Org ' || i, printf('%09d', 300000000 + i), '', '', '', 'UZS', 'Asia/Tashkent', 'prepaid', 0,
                   1, '2023-01-01 00:00:00.000000' FROM o""")
        # Subscriptions 4*i-3 .. 4*i: two Azure (pay-as-you-go), one Basic, one Standard.
        c.exec_driver_sql(f"""
            WITH RECURSIVE o(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM o WHERE i < {orgs}),
                 k(j) AS (SELECT 0 UNION ALL SELECT j + 1 FROM k WHERE j < 3)
            INSERT INTO subscription (id, org_id, plan_id, name, status, quantity, auto_renew, is_trial, trial_convert,
                                      vendor_ref, created_at, cancel_at_term_end)
            SELECT 4 * i - 3 + j, i, CASE j WHEN 0 THEN 3 WHEN 1 THEN 3 WHEN 2 THEN 1 ELSE 2 END,
                   CASE j WHEN 0 THEN 'Azure Prod' WHEN 1 THEN 'Azure Dev' WHEN 2 THEN 'M365 Basic'
                          ELSE 'M365 Standard' END,
                   'active', 10, 1, 0, 0,
                   CASE WHEN j < 2 THEN printf('%08x-0000-4000-8000-%012x', i, j) ELSE '' END,
                   '2023-01-01 00:00:00.000000', 0
            FROM o, k ORDER BY i, j""")
        services = " ".join(f"WHEN {n} THEN '{s}'" for n, s in enumerate(SERVICES))
        # Usage: one record per (organisation, resource, day), ordered by organisation for locality.
        c.exec_driver_sql(f"""
            WITH RECURSIVE o(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM o WHERE i < {orgs}),
                 r(k) AS (SELECT 0 UNION ALL SELECT k + 1 FROM r WHERE k < {per_org - 1}),
                 d(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM d WHERE n < {days - 1})
            INSERT INTO usagerecord (org_id, subscription_id, period_start, period_end, service, meter,
                                     resource_group, resource_id, resource_name, quantity, unit, cost, currency,
                                     source, source_key, imported_at)
            SELECT i, 4 * i - 3 + (k % 2),
                   datetime('{start.isoformat()}', '+' || n || ' days') || '.000000',
                   datetime('{start.isoformat()}', '+' || (n + 1) || ' days') || '.000000',
                   CASE k % {len(SERVICES)} {services} END, 'meter ' || k,
                   'rg-' || (k % 4),
                   printf('/subscriptions/%08x-0000-4000-8000-%012x/resourceGroups/rg-%d/providers/x/res-%d',
                          i, k % 2, k % 4, k),
                   'res-' || k, 24000000, 'Hours',
                   ((i * 7919 + k * 104729 + n * 7 * (k + 1)) % 9973 + 50) * 1000,
                   'USD', 'import', printf('b%06d-%03d-%05d', i, k, n),
                   '2026-01-01 00:00:00.000000'
            FROM o, r, d ORDER BY i, k, n""")
        n_usage = c.exec_driver_sql("SELECT count(*) FROM usagerecord").scalar()
        t1 = time.perf_counter()
        # The ledger: rating's usage entries (one per subscription and UTC day here), licence charges
        # for two years, monthly top-ups.
        c.exec_driver_sql(f"""
            INSERT INTO ledgerentry (org_id, kind, amount, currency, description, subscription_id, source_amount,
                                     source_currency, fx_rate, fx_date, idempotency_key, occurred_at, created_at,
                                     meta)
            SELECT org_id, 'usage', -((sum(cost) * {RATE} + 5000) / 10000), 'UZS', 'usage', subscription_id,
                   sum(cost), 'USD', {RATE * 10**6}, substr(period_start, 1, 10),
                   'usage:' || subscription_id || ':' || substr(period_start, 1, 10),
                   period_start, period_start, '{{}}'
            FROM usagerecord GROUP BY org_id, subscription_id, period_start ORDER BY org_id, period_start""")
        c.exec_driver_sql(f"""
            WITH RECURSIVE o(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM o WHERE i < {orgs}),
                 m(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM m WHERE n < 23),
                 k(j) AS (SELECT 2 UNION ALL SELECT 3)
            INSERT INTO ledgerentry (org_id, kind, amount, currency, description, subscription_id,
                                     idempotency_key, occurred_at, created_at, meta)
            SELECT i, 'charge', CASE j WHEN 2 THEN -30000000 ELSE -75000000 END, 'UZS', 'licences',
                   4 * i - 3 + j, 'lic:' || i || ':' || j || ':' || n,
                   datetime('{(END - timedelta(days=730)).isoformat()}', '+' || n || ' months', '+7 hours')
                       || '.000000',
                   '2026-01-01 00:00:00.000000', '{{}}'
            FROM o, m, k ORDER BY i, n""")
        c.exec_driver_sql(f"""
            WITH RECURSIVE o(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM o WHERE i < {orgs}),
                 m(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM m WHERE n < 23)
            INSERT INTO ledgerentry (org_id, kind, amount, currency, description, idempotency_key, occurred_at,
                                     created_at, meta)
            SELECT i, 'topup', 500000000, 'UZS', 'top-up', 'top:' || i || ':' || n,
                   datetime('{(END - timedelta(days=730)).isoformat()}', '+' || n || ' months', '+3 hours')
                       || '.000000', '2026-01-01 00:00:00.000000', '{{}}'
            FROM o, m ORDER BY i, n""")
        n_ledger = c.exec_driver_sql("SELECT count(*) FROM ledgerentry").scalar()
        t2 = time.perf_counter()
        # The roll-up, set-based (the records are daily at 00:00 UTC, 05:00 in Tashkent: same day).
        c.exec_driver_sql(f"""
            INSERT INTO usagedaily (org_id, subscription_id, day, service, resource_group, resource_id,
                                    resource_name, cost, currency, cost_org, org_currency, records, refreshed_at)
            SELECT org_id, subscription_id, date(period_start, '+18000 seconds'), service, resource_group,
                   resource_id, max(resource_name), sum(cost), currency, sum(cost) * {RATE}, 'UZS', count(*),
                   '2026-01-01 00:00:00.000000'
            FROM usagerecord GROUP BY org_id, subscription_id, date(period_start, '+18000 seconds'), service,
                                      resource_group, resource_id, currency
            ORDER BY org_id, 3""")
        n_rollup = c.exec_driver_sql("SELECT count(*) FROM usagedaily").scalar()
        c.exec_driver_sql(
            "INSERT INTO budget (org_id, subscription_id, amount, currency, thresholds, recipient_user_ids, "
            "extra_emails, created_at, updated_at) SELECT id, 4 * id - 3, 50000000000, 'UZS', '[]', '[]', '[]', "
            "'2025-01-01 00:00:00.000000', '2025-01-01 00:00:00.000000' FROM organisation")
    t3 = time.perf_counter()
    with engine.connect() as c:
        c.exec_driver_sql("ANALYZE")
    engine.dispose()
    return {"usage rows": n_usage, "ledger rows": n_ledger, "roll-up rows": n_rollup,
            "usage s": round(t1 - t0, 1), "ledger s": round(t2 - t1, 1), "roll-up s": round(t3 - t2, 1),
            "analyze s": round(time.perf_counter() - t3, 1)}


def timed(fn, runs: int) -> tuple[float, float, object]:
    """(median wall ms, median CPU ms, last result). The CPU time (this process: Python and the
    in-process SQLite) is what to compare on a machine shared with other work."""
    fn()  # warm-up (caches, statement compilation)
    walls, cpus = [], []
    result = None
    for _ in range(runs):
        t, c = time.perf_counter(), time.process_time()
        result = fn()
        walls.append((time.perf_counter() - t) * 1000)
        cpus.append((time.process_time() - c) * 1000)
    return statistics.median(walls), statistics.median(cpus), result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--orgs", type=int, default=2000)
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--db", default="/tmp/noventiq_bench_analytics.db")
    ap.add_argument("--reuse", action="store_true", help="Reuse an existing database file.")
    ap.add_argument("--org", type=int, default=None, help="Organisation to time (default: the middle one).")
    args = ap.parse_args()
    path = Path(args.db)
    if not (args.reuse and path.exists()):
        print(f"building {path}: {args.orgs} organisations, ~{args.rows} usage rows over {args.days} days ...",
              flush=True)
        info = build(path, args.orgs, args.rows, args.days)
        print("  " + ", ".join(f"{k}: {v}" for k, v in info.items()), flush=True)
    print(f"database file: {os.path.getsize(path) / 2**20:.0f} MiB; load average {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} CPUs")
    engine = make_engine(f"sqlite:///{path}")
    org_id = args.org or max(1, args.orgs // 2)
    actor = Actor.system(org_id)
    year = Filters(start=date(2025, 1, 1), end=date(2026, 1, 1), preset="year")
    d90 = (END - timedelta(days=90), END)
    with Session(engine) as s:
        n_org = s.execute(text("SELECT count(*) FROM usagerecord WHERE org_id = :o"), {"o": org_id}).scalar()
        n_led = s.execute(text("SELECT count(*) FROM ledgerentry WHERE org_id = :o"), {"o": org_id}).scalar()
        print(f"organisation {org_id}: {n_org} usage rows, {n_led} ledger rows")
        s.rollback()

        def overview():
            st = spend.structure(s, actor, year)
            dy = spend.dynamics(s, actor, year)
            s.rollback()  # end the read transaction as a request would
            return st, dy

        med, cpu, (st, dy) = timed(overview, args.runs)
        print(f"12-month structure + dynamics: median {med:.2f} ms wall, {cpu:.2f} ms CPU; total {st.total} "
              f"{st.currency}, {len(dy.buckets)} months, previous year {dy.previous_total}")
        med_s, cpu_s, _ = timed(lambda: (spend.structure(s, actor, year), s.rollback()), args.runs)
        med_d, cpu_d, _ = timed(lambda: (spend.dynamics(s, actor, year), s.rollback()), args.runs)
        print(f"  structure alone {med_s:.2f} ms ({cpu_s:.2f} CPU), dynamics alone {med_d:.2f} ms ({cpu_d:.2f} CPU)")

        def detail():
            r = iaas.iaas_detail(s, actor, *d90)
            s.rollback()
            return r

        med, cpu, det = timed(detail, args.runs)
        print(f"90-day IaaS daily detail (all subscriptions): median {med:.2f} ms wall, {cpu:.2f} ms CPU; total "
              f"{det.total}, {len(det.by_service)} services, {len(det.by_resource)} resource series, "
              f"{len(det.movers)} movers, budget {det.budget}")
        one = det.subscriptions[0][0]
        med, cpu, _ = timed(lambda: (iaas.iaas_detail(s, actor, *d90, subscription_id=one), s.rollback()),
                            args.runs)
        print(f"90-day IaaS daily detail (one subscription): median {med:.2f} ms wall, {cpu:.2f} ms CPU")

        # The roll-up refresh the importer and rating call (one organisation's year, both subscriptions).
        before = s.execute(text("SELECT sum(cost_org) FROM usagedaily WHERE org_id = :o"), {"o": org_id}).scalar()
        days = [END - timedelta(days=args.days) + timedelta(days=i) for i in range(args.days)]
        subs = [4 * org_id - 3, 4 * org_id - 2]
        t = time.perf_counter()
        written = rollup.refresh_daily_rollup(s, subs, days)
        s.commit()
        took = time.perf_counter() - t
        after = s.execute(text("SELECT sum(cost_org) FROM usagedaily WHERE org_id = :o"), {"o": org_id}).scalar()
        print(f"refresh_daily_rollup, 1 organisation x {args.days} days: {written} rows in {took * 1000:.0f} ms "
              f"({n_org / took:,.0f} usage rows/s); roll-up sum unchanged: {before == after}")
        t = time.perf_counter()
        rollup.refresh_daily_rollup(s, subs[:1], [END - timedelta(days=1)])
        s.commit()
        print(f"refresh_daily_rollup, 1 subscription x 1 day (what a rating batch adds): "
              f"{(time.perf_counter() - t) * 1000:.1f} ms")
        assert before == after, "the refreshed roll-up must equal the set-based one"
    engine.dispose()


if __name__ == "__main__":
    main()
