"""The FOCUS export passes the FinOps Foundation's ``focus-validator`` (FOCUS 1.2 model), except the
rules listed in ``EXPECTED_FAILURES`` (README, "FOCUS export").

The validator (PyPI ``focus-validator==2.2.1``) needs Python 3.12; it is installed once per machine
into its own virtual environment outside the repository (``NOVENTIQ_FOCUS_VALIDATOR_HOME``, default
``~/.cache/noventiq-focus-validator``), with ``numpy>=2`` installed over its ``numpy<2`` pin (its
pyarrow needs NumPy 2). It runs from its ``site-packages`` folder (where it finds
``focus_validator/rules/currency_codes.csv``) with ``--block-download`` (the bundled 1.2 model). The
test is skipped, saying why, when there is no Python 3.12 or the installation fails (no network).
"""

from __future__ import annotations

import csv
import fcntl
import glob
import io
import os
import re
import shutil
import subprocess
import sys
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from sqlmodel import Session

from noventiq_panel.services.demo import azure_usage
from noventiq_panel.services.usage import focus_export, rating

from tests.services.analytics_helpers import rate, world

VALIDATOR = "focus-validator==2.2.1"
INSTALL_TIMEOUT = 600  # seconds, per pip step
# Rules the export cannot pass, and why (README, "FOCUS export"):
EXPECTED_FAILURES = {
    # The validator's StringHandling check is "ASCII only": a Cyrillic legal name cannot meet it.
    "BillingAccountName-C-002-M",  # the customer's legal name (ООО «…»)
    "ProviderName-C-002-M", "ProviderName-C-000-M",  # the seller's legal name (PANEL_SELLER_NAME)
    "InvoiceIssuerName-C-002-M", "InvoiceIssuerName-C-000-M",  # the same name
    # focus-validator 2.2.1 checks InvoiceId-C-004-C ("MUST be null when the charge is on no invoice")
    # and InvoiceId-C-005-C ("MUST NOT be null when it is") without their conditions, so a file with
    # an InvoiceId column fails one of them whatever it holds; usage on no invoice yet fails C-005.
    "InvoiceId-C-005-C",
}


def _home() -> Path:
    return Path(os.environ.get("NOVENTIQ_FOCUS_VALIDATOR_HOME") or Path.home() / ".cache" / "noventiq-focus-validator")


def _python312() -> str | None:
    found = shutil.which("python3.12")
    candidates = ([found] if found else []) + sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.12*/bin/python3.12")))
    for exe in candidates:
        try:
            out = subprocess.run([exe, "-c", "import sys; print(sys.version_info[:2] == (3, 12))"],
                                 capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if out.stdout.strip() == "True":
            return exe
    return None


def _run(cmd: list[str], timeout: int) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def focus_validator() -> tuple[str, str]:
    """(the focus-validator executable, its site-packages folder); installed on first use."""
    home = _home()
    venv = home / "venv"
    bindir = venv / ("Scripts" if sys.platform == "win32" else "bin")
    done = home / f".installed-{VALIDATOR}"
    home.mkdir(parents=True, exist_ok=True)
    with open(home / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one installation at a time (parallel test runs)
        if not done.exists():
            python = _python312()
            if python is None:
                pytest.skip("focus-validator needs Python 3.12, and there is no python3.12 on this machine")
            shutil.rmtree(venv, ignore_errors=True)
            steps = [[python, "-m", "venv", str(venv)],
                     [str(bindir / "python"), "-m", "pip", "install", "-q", VALIDATOR],
                     [str(bindir / "python"), "-m", "pip", "install", "-q", "numpy>=2"]]
            for cmd in steps:
                try:
                    out = _run(cmd, INSTALL_TIMEOUT)
                except subprocess.TimeoutExpired:
                    pytest.skip(f"installing {VALIDATOR} took longer than {INSTALL_TIMEOUT} s: {' '.join(cmd[-2:])}")
                # pip reports the numpy<2 pin it knowingly breaks on stderr but succeeds
                if out.returncode != 0:
                    pytest.skip(f"could not install {VALIDATOR} into {venv}: {(out.stderr or out.stdout)[-500:]}")
            done.write_text("ok\n")
    site = _run([str(bindir / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], 60)
    return str(bindir / "focus-validator"), site.stdout.strip()


def _rated_usage(session: Session):
    """About 350 hourly records of eight Azure meters over two days, rated like the demo's."""
    w = world(session, markup="3")
    anchor = datetime(2025, 1, 3, 12, tzinfo=timezone.utc)
    for day in range(5):
        rate(session, date(2024, 12, 30) + timedelta(days=day), f"{12000 + day * 7}.55")
    rows = azure_usage.usage_rows(w.org, w.azure, azure_usage.ROMASHKA_AZURE, anchor, granularity="hour", days=2)
    rows.append(azure_usage.credit_row(w.org, w.azure, anchor, days_ago=1, amount=Decimal("1.25"),
                                       service="Virtual Machines", description="SLA credit"))  # a Credit
    # and a credit above everything charged: rating caps it, the export adds an Adjustment row
    rows.append(azure_usage.credit_row(w.org, w.azure, anchor, days_ago=0, amount=Decimal("500"),
                                       service="Virtual Machines", description="Goodwill credit"))
    azure_usage.insert_usage(session, rows)
    session.commit()
    rating.rate_usage(session, now=anchor + timedelta(hours=2))
    return w


def test_focus_export_passes_the_finops_foundation_validator(sqlite_engine, focus_validator, tmp_path):
    exe, site_packages = focus_validator
    with Session(sqlite_engine, expire_on_commit=False) as session:
        w = _rated_usage(session)
        data = focus_export.export_focus_bytes(session, w.actor(), date(2025, 1, 1), date(2025, 1, 4))
    path = tmp_path / "focus.csv"
    path.write_bytes(data)
    assert 200 < data.count(b"\n") < 1000
    kept_back = [r for r in csv.DictReader(io.StringIO(data.decode("utf-8")))
                 if r["ChargeDescription"] == "Vendor credit above the charges, not given back"]
    assert [r["ChargeCategory"] for r in kept_back] == ["Adjustment"], kept_back
    out = subprocess.run(  # from its site-packages folder, where it finds rules/currency_codes.csv
        [exe, "--data-file", str(path), "--validate-version", focus_export.FOCUS_VERSION, "--block-download"],
        capture_output=True, text=True, timeout=300, cwd=site_packages)
    report = out.stdout + out.stderr
    totals = re.search(r"Total: (\d+) \| Pass: (\d+) \| Fail: (\d+) \| Skipped: (\d+)", report)
    assert totals, f"no validation result from focus-validator:\n{report[-3000:]}"
    failed = set(re.findall(r"^❌ (\S+): FAIL", report, flags=re.M))
    assert failed == EXPECTED_FAILURES, (
        f"unexpected: {sorted(failed - EXPECTED_FAILURES)}; now passing: {sorted(EXPECTED_FAILURES - failed)}\n"
        + "\n".join(line for line in report.splitlines() if line.startswith("❌")))
    assert int(totals.group(1)) == 578 and int(totals.group(3)) == len(EXPECTED_FAILURES)
