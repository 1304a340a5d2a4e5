"""Benchmark of metered rating (services/usage/rating.py). Prints figures; not a test.

    .venv/bin/python bench/bench_rating.py                       # 1000 subs × 30 days × 24 h × 5 services
    .venv/bin/python bench/bench_rating.py --subs 50 --days 3    # a quick small run
    .venv/bin/python bench/bench_rating.py --db sqlite           # sqlite | pg | both (default both)

Data are generated with bulk inserts (executemany on SQLite, COPY on PostgreSQL), never ORM
objects. PostgreSQL runs in a throw-away database created on --pg-url and dropped at the end.
Figures: records/s of the first run from empty (aim ≥ 1 000 000/s on SQLite), seconds of a second
run with nothing new (aim ≤ 0.5 s), seconds of the next hour's run (one new hour of every
subscription), and after every run a check that every record was rated once and the ledger total
equals the priced usage recomputed here independently (Decimal, one figure per subscription, local
day and currency — the rule of rating: hourly and daily plans alike post one entry per local day).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import insert, text
from sqlmodel import Session

from noventiq_panel import models
from noventiq_panel.db import make_engine
from noventiq_panel.services.usage import rating

PG_ADMIN_URL = os.environ.get("PANEL_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
START = datetime(2026, 10, 1, tzinfo=UTC) - timedelta(hours=5)  # 1 Oct 00:00 in Tashkent
SERVICES = ("Virtual Machines", "Storage", "Bandwidth", "SQL Database", "Backup")
MARKUP = Decimal(15)
RATE = Decimal("12171.03")


def _ts(dt: datetime, pg: bool):
    return dt if pg else dt.replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")


def generate(engine, subs: int, days: int, services: int, granularity: str) -> int:
    """Insert the catalogue, organisations, subscriptions, rates and usage; return the number of records."""
    with Session(engine) as s:
        vendor = models.Vendor(code="ms", name="Microsoft")
        s.add(vendor)
        s.flush()
        product = models.Product(code="azure", vendor_id=vendor.id, name="Azure", category="IaaS")
        s.add(product)
        s.flush()
        plan = models.Plan(code="azure", product_id=product.id, name=f"Azure per {granularity}", billing_type="payg",
                           term=None, billing_frequency=None, granularity=granularity, currency="USD",
                           usage_markup_pct=MARKUP)
        s.add(plan)
        s.flush()
        plan_id = plan.id
        s.commit()
    orgs = max(1, subs // 10)
    now = datetime.now(UTC)
    # Core inserts: the columns not named here take the models' defaults.
    with engine.begin() as c:
        c.execute(insert(models.Organisation.__table__), [
            {"id": o, "name": f"Org {o}", "tax_id": f"{300000000 + o}", "billing_currency": "UZS",
             "timezone": "Asia/Tashkent", "created_at": now} for o in range(1, orgs + 1)])
        c.execute(insert(models.Subscription.__table__), [
            {"id": i, "org_id": (i - 1) % orgs + 1, "plan_id": plan_id, "name": f"Azure {i}", "status": "active",
             "created_at": now} for i in range(1, subs + 1)])
        c.execute(insert(models.ExchangeRate.__table__), [
            {"currency": "USD", "rate_date": date(2026, 9, 30) + timedelta(days=d), "rate": RATE + d, "source": "demo",
             "fetched_at": now} for d in range(days + 2)])
    return insert_usage(engine, subs, range(days * 24), services, first_id=1)


def insert_usage(engine, subs: int, hours: range, services: int, first_id: int) -> int:
    """Usage of every subscription for ``hours`` (hours after START): cost in micro-dollars,
    deterministic, a few cents to a few dollars. Returns the number of records."""
    pg = engine.dialect.name == "postgresql"
    orgs = max(1, subs // 10)
    now = _ts(datetime.now(UTC), pg)

    def rows():
        rid = first_id - 1
        for sub in range(1, subs + 1):
            org = (sub - 1) % orgs + 1
            for h in hours:
                ps = START + timedelta(hours=h)
                ps_db, pe_db = _ts(ps, pg), _ts(ps + timedelta(hours=1), pg)
                for k in range(services):
                    rid += 1
                    cost = 10_000 + (rid * 7919) % 3_000_000
                    yield (rid, org, sub, ps_db, pe_db, SERVICES[k % len(SERVICES)], "meter", "rg", f"/r/{sub}/{k}",
                           f"res{k}", 1_000_000, "1 Hour", cost, "USD", "bench", f"b{rid}", now)

    cols = ("id, org_id, subscription_id, period_start, period_end, service, meter, resource_group, resource_id, "
            "resource_name, quantity, unit, cost, currency, source, source_key, imported_at")
    raw = engine.raw_connection()
    cur = raw.cursor()
    if pg:
        with cur.copy(f"COPY usagerecord ({cols}) FROM STDIN") as copy:
            for r in rows():
                copy.write_row(r)
    else:
        cur.execute("BEGIN")
        cur.executemany(f"INSERT INTO usagerecord ({cols}) VALUES ({','.join(['?'] * 17)})", rows())
    raw.commit()
    if pg:
        cur.execute("ANALYZE")
        raw.commit()
    cur.close()
    raw.close()
    return subs * len(hours) * services


def expected_total(engine) -> Decimal:
    """The ledger total recomputed independently with Decimal, per (subscription, Tashkent day) — the
    billing period of hourly and daily plans alike — at the rate of that day: the marked-up cost
    to 6 decimals, times the rate, to the cent. Valid when each day was rated in one run (a later
    run of the same day rounds its own increment: the check says by how much at most)."""
    from decimal import ROUND_HALF_UP
    from zoneinfo import ZoneInfo

    tz = ZoneInfo("Asia/Tashkent")
    with engine.connect() as c:
        rate = {(r[0] if isinstance(r[0], date) else date.fromisoformat(r[0])): Decimal(r[1]).scaleb(-6)
                for r in c.execute(text("SELECT rate_date, rate FROM exchangerate WHERE currency='USD'"))}
        rows = c.execute(text("SELECT subscription_id, period_start, SUM(cost) FROM usagerecord "
                              "GROUP BY subscription_id, period_start"))
        periods: dict[tuple, int] = {}
        for sub, ps, cost in rows:
            ps = ps if isinstance(ps, datetime) else datetime.fromisoformat(ps).replace(tzinfo=UTC)
            local = ps.astimezone(tz)
            key = (sub, local.date())
            periods[key] = periods.get(key, 0) + int(cost)
        total = Decimal(0)
        factor = 1 + MARKUP / 100
        for (_sub, day), cost in periods.items():
            source = (Decimal(cost).scaleb(-6) * factor).quantize(Decimal("0.000001"), rounding=ROUND_HALF_UP)
            total += (source * rate[day]).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    return -total


def verify(engine) -> str:
    with engine.connect() as c:
        unrated = c.execute(text(
            "SELECT COUNT(*) FROM usagerecord u LEFT JOIN ratingwatermark w ON w.subscription_id = u.subscription_id "
            "WHERE u.id > COALESCE(w.last_record_id, 0)")).scalar()
        entries = c.execute(text("SELECT COUNT(*), COALESCE(SUM(amount), 0) FROM ledgerentry WHERE kind='usage'")).one()
        meta = "CAST(meta ->> 'records' AS bigint)" if engine.dialect.name == "postgresql" else \
            "json_extract(meta, '$.records')"
        counted = c.execute(text(f"SELECT COALESCE(SUM({meta}), 0) FROM ledgerentry WHERE kind='usage'")).scalar()
        records = c.execute(text("SELECT COUNT(*) FROM usagerecord")).scalar()
        # entries beyond one per (subscription, day, currency): later runs' increments of a day,
        # each rounded on its own (the marked-up cost to 6 decimals, the amount to the tiyin)
        days = c.execute(text("SELECT COUNT(*) FROM (SELECT DISTINCT subscription_id, period_start, source_currency "
                              "FROM ledgerentry WHERE kind='usage') x")).scalar()
    extra = entries[0] - days
    ledger = Decimal(int(entries[1])).scaleb(-2)
    expected = expected_total(engine)
    tolerance = Decimal(2 * extra).scaleb(-2)  # 0.5 tiyin + 0.5 micro-dollar × rate < 2 tiyin each
    ok = unrated == 0 and counted == records and abs(ledger - expected) <= tolerance
    return (f"{'OK' if ok else 'MISMATCH'}: unrated left {unrated}; usage entries {entries[0]}, counting "
            f"{counted:,} of {records:,} records; ledger total {ledger} UZS; expected total {expected} UZS"
            + (f" (± {tolerance}: {extra} later increments of a day, each rounded on its own)" if extra else ""))


def run(label: str, url: str, subs: int, days: int, services: int, batch: int, granularity: str,
        prebuild_rollup: bool = True) -> None:
    engine = make_engine(url)
    models.metadata.create_all(engine)
    t0 = time.perf_counter()
    total = generate(engine, subs, days, services, granularity)
    print(f"[{label}] generated {total:,} usage records in {time.perf_counter() - t0:.1f}s", flush=True)
    if prebuild_rollup:
        # The importer keeps the analytics roll-up current at import time; do the same (not timed).
        from noventiq_panel.services.usage import rollup

        t0 = time.perf_counter()
        with Session(engine) as s:
            rows = rollup.rebuild_rollup(s)
        print(f"[{label}] analytics roll-up built as the importer would: {rows:,} rows in "
              f"{time.perf_counter() - t0:.1f}s (not timed)", flush=True)
    now = START + timedelta(days=days, hours=1)
    with Session(engine) as s:
        t0 = time.perf_counter()
        first = rating.rate_usage(s, now=now, batch_subscriptions=batch)
        t1 = time.perf_counter() - t0
    print(f"[{label}] first run: {first.records:,} records, {first.entries:,} entries in {t1:.2f}s "
          f"= {first.records / t1:,.0f} records/s (roll-up rows rebuilt: {first.rollup_rows})", flush=True)
    print(f"[{label}]   phases (s): " + ", ".join(f"{k} {v:.2f}" for k, v in first.phases.items()), flush=True)
    with Session(engine) as s:
        t0 = time.perf_counter()
        second = rating.rate_usage(s, now=now, batch_subscriptions=batch)
        t2 = time.perf_counter() - t0
    print(f"[{label}] second run, nothing new: {second.records} records in {t2:.3f}s", flush=True)
    print(f"[{label}] check: {verify(engine)}", flush=True)
    # The hourly job's usual work: one new hour of usage for every subscription.
    new = insert_usage(engine, subs, range(days * 24, days * 24 + 1), services, first_id=total + 1)
    if prebuild_rollup:  # as the importer would (not timed)
        from noventiq_panel.services.usage import rollup

        with Session(engine) as s:
            rollup.refresh_daily_rollup(s, range(1, subs + 1), [(START + timedelta(days=days, hours=5)).date()])
            s.commit()
    with Session(engine) as s:
        t0 = time.perf_counter()
        third = rating.rate_usage(s, now=now + timedelta(hours=1), batch_subscriptions=batch)
        t3 = time.perf_counter() - t0
    print(f"[{label}] next hour: {third.records:,} of {new:,} new records, {third.entries:,} entries in {t3:.3f}s",
          flush=True)
    print(f"[{label}]   phases (s): " + ", ".join(f"{k} {v:.3f}" for k, v in third.phases.items()), flush=True)
    print(f"[{label}] check: {verify(engine)}", flush=True)
    engine.dispose()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--subs", type=int, default=1000)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--services", type=int, default=5)
    ap.add_argument("--batch", type=int, default=500, help="subscriptions per transaction")
    ap.add_argument("--db", choices=("sqlite", "pg", "both"), default="both")
    ap.add_argument("--granularity", choices=("hour", "day"), default="hour",
                    help="the plan's granularity (both are billed per local day: one entry per subscription and day)")
    ap.add_argument("--pg-url", default=PG_ADMIN_URL)
    ap.add_argument("--no-rollup", action="store_true",
                    help="do not pre-build the analytics roll-up (rating then builds it for every day)")
    args = ap.parse_args()
    print(f"rating benchmark: {args.subs} subscriptions × {args.days} days × 24 h × {args.services} services "
          f"= {args.subs * args.days * 24 * args.services:,} records, plans billed per {args.granularity}, "
          f"batches of {args.batch}", flush=True)
    if args.db in ("sqlite", "both"):
        with tempfile.TemporaryDirectory() as tmp:
            run("sqlite", f"sqlite:///{tmp}/bench.db", args.subs, args.days, args.services, args.batch,
                args.granularity, not args.no_rollup)
    if args.db in ("pg", "both"):
        from sqlalchemy import create_engine

        name = f"bench_rating_{uuid.uuid4().hex[:8]}"
        admin = create_engine(args.pg_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as c:
            c.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            run("postgresql", args.pg_url.rsplit("/", 1)[0] + "/" + name, args.subs, args.days, args.services,
                args.batch, args.granularity, not args.no_rollup)
        finally:
            with admin.connect() as c:
                c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()


if __name__ == "__main__":
    main()
