"""Benchmark of the usage importer (prints figures; not a test).

Generates a FOCUS 1.0 CSV of ``--rows`` rows (35 columns, like a real Azure FOCUS export: long
resource ids, x_ columns) for ``--subs`` pay-as-you-go subscriptions, then imports it into a fresh
SQLite database and prints rows/s and the peak memory; then imports it a second time (every row a
duplicate, nothing added). Peak memory is the process's maximum resident set size
(``resource.getrusage``) before and after the import; with ``--tracemalloc`` a second fresh import
also reports the Python heap's peak (slower: tracemalloc hooks every allocation).

    .venv/bin/python bench/bench_import.py --rows 1000000
    .venv/bin/python bench/bench_import.py --rows 100000 --tracemalloc      # quick
"""

from __future__ import annotations

import argparse
import csv
import os
import resource
import sys
import time
import tracemalloc
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import insert  # noqa: E402
from sqlmodel import Session  # noqa: E402

from noventiq_panel import models  # noqa: E402
from noventiq_panel.db import make_engine  # noqa: E402
from noventiq_panel.services.usage import usage_import  # noqa: E402

HEADER = ["AvailabilityZone", "BilledCost", "BillingAccountId", "BillingAccountName", "BillingCurrency",
          "BillingPeriodEnd", "BillingPeriodStart", "ChargeCategory", "ChargeClass", "ChargeDescription",
          "ChargeFrequency", "ChargePeriodEnd", "ChargePeriodStart", "CommitmentDiscountCategory",
          "ConsumedQuantity", "ConsumedUnit", "EffectiveCost", "InvoiceIssuerName", "ListCost", "PricingQuantity",
          "PricingUnit", "ProviderName", "PublisherName", "RegionId", "RegionName", "ResourceId", "ResourceName",
          "ResourceType", "ServiceCategory", "ServiceName", "SkuId", "SubAccountId", "SubAccountName",
          "x_ResourceGroupName", "x_SkuMeterName"]
SERVICES = [("Virtual Machines", "Compute", "Microsoft.Compute/virtualMachines", "D2s v3", "Hours"),
            ("Storage", "Storage", "Microsoft.Storage/storageAccounts", "LRS Data Stored", "GB/Month"),
            ("SQL Database", "Databases", "Microsoft.Sql/servers/databases", "vCore", "Hours"),
            ("Bandwidth", "Networking", "Microsoft.Network/publicIPAddresses", "Data Transfer Out", "GB"),
            ("Azure App Service", "Web", "Microsoft.Web/sites", "P1 v3", "Hours")]
START = datetime(2025, 1, 1)


def ref(i: int) -> str:
    return f"{i:08x}-bbbb-4ccc-8ddd-{i:012x}"


def generate(path: Path, rows: int, subs: int) -> None:
    """Hourly records: row n -> subscription n % subs, resource (n // subs) % 10, hour n // (subs * 10)."""
    with open(path, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(HEADER)
        per_hour = subs * 10
        for n in range(rows):
            s, k, h = n % subs, (n // subs) % 10, n // per_hour
            start = START + timedelta(hours=h)
            svc, cat, rtype, meter, unit = SERVICES[k % len(SERVICES)]
            rid = f"/subscriptions/{ref(s)}/resourceGroups/rg-{k % 3}/providers/{rtype}/res-{k}"
            cost = f"{(n * 7919 % 99991) / 100000:.6f}"
            w.writerow(["", cost, "ba-1", "Contoso", "USD", "2025-02-01T00:00:00Z", "2025-01-01T00:00:00Z",
                        "Usage", "", f"{meter} usage", "Usage-Based",
                        (start + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                        start.strftime("%Y-%m-%dT%H:%M:%SZ"), "", "1", unit, cost, "Microsoft", cost, "1",
                        f"1 {unit}", "Microsoft", "Microsoft", "uzsouth", "UZ South", rid, f"res-{k}", rtype, cat,
                        svc, "DZH318Z0BQPS", f"/subscriptions/{ref(s)}", f"Sub {s}", f"rg-{k % 3}", meter])


def fresh_db(path: Path, subs: int):
    for p in (path, Path(str(path) + "-wal"), Path(str(path) + "-shm")):
        p.unlink(missing_ok=True)
    engine = make_engine(f"sqlite:///{path}")
    models.metadata.create_all(engine)
    created = datetime(2024, 1, 1, tzinfo=timezone.utc)
    # Core inserts: the columns not named here take the models' defaults.
    with engine.begin() as c:
        c.execute(insert(models.Vendor.__table__), [{"id": 1, "code": "ms", "name": "Microsoft"}])
        c.execute(insert(models.Product.__table__), [{"id": 1, "code": "azure", "vendor_id": 1, "name": "Azure",
                                                      "category": "IaaS"}])
        c.execute(insert(models.Plan.__table__), [{"id": 1, "code": "azure-h", "product_id": 1, "name": "Azure",
                                                   "billing_type": "payg", "term": None, "billing_frequency": None,
                                                   "granularity": "hour", "currency": "USD"}])
        c.execute(insert(models.ExchangeRate.__table__), [{"currency": "USD", "rate_date": date(2020, 1, 1),
                                                           "rate": Decimal("12000"), "source": "manual",
                                                           "fetched_at": created}])
        c.execute(insert(models.Organisation.__table__), [
            {"id": i + 1, "name": f"Org {i}", "billing_currency": "UZS", "timezone": "Asia/Tashkent",
             "created_at": created} for i in range(subs)])
        c.execute(insert(models.Subscription.__table__), [
            {"id": i + 1, "org_id": i + 1, "plan_id": 1, "name": "Azure", "status": "active", "vendor_ref": ref(i),
             "created_at": created} for i in range(subs)])
    return engine


def maxrss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--subs", type=int, default=200)
    ap.add_argument("--batch-size", type=int, default=5000)
    ap.add_argument("--file", default="/tmp/noventiq_bench_focus.csv")
    ap.add_argument("--db", default="/tmp/noventiq_bench_import.db")
    ap.add_argument("--tracemalloc", action="store_true", help="Also measure the Python heap peak (slower).")
    args = ap.parse_args()
    path = Path(args.file)
    t = time.perf_counter()
    generate(path, args.rows, args.subs)
    size = os.path.getsize(path)
    print(f"generated {args.rows} FOCUS rows, {size / 2**20:.0f} MiB, in {time.perf_counter() - t:.1f} s", flush=True)

    engine = fresh_db(Path(args.db), args.subs)
    rss0 = maxrss_mib()
    with Session(engine) as s:
        t = time.perf_counter()
        cpu = time.process_time()
        report = usage_import.import_file(s, path, batch_size=args.batch_size)
        took, cpu = time.perf_counter() - t, time.process_time() - cpu
    rss1 = maxrss_mib()
    print(f"import: {report.imported} rows in {took:.1f} s = {report.rows_read / took:,.0f} rows/s "
          f"({report.rows_read / cpu:,.0f} rows/s of CPU time); of which roll-up refresh {report.rollup_seconds:.1f} s "
          f"for {report.rollup_rows} roll-up rows; "
          f"totals {report.totals}")
    print(f"peak RSS: {rss0:.0f} MiB before, {rss1:.0f} MiB after (+{rss1 - rss0:.0f} MiB for a "
          f"{size / 2**20:.0f} MiB file)")
    with Session(engine) as s:
        t = time.perf_counter()
        again = usage_import.import_file(s, path, batch_size=args.batch_size)
        took = time.perf_counter() - t
    print(f"re-import: {again.imported} added, {again.duplicates} duplicates in {took:.1f} s "
          f"({again.rows_read / took:,.0f} rows/s)")
    engine.dispose()
    if args.tracemalloc:
        engine = fresh_db(Path(args.db), args.subs)
        tracemalloc.start()
        with Session(engine) as s:
            t = time.perf_counter()
            usage_import.import_file(s, path, batch_size=args.batch_size)
        current, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        print(f"tracemalloc: Python heap peak {peak / 2**20:.1f} MiB during a fresh import "
              f"({time.perf_counter() - t:.1f} s with tracing)")
        engine.dispose()
    _ = date  # noqa


if __name__ == "__main__":
    main()
