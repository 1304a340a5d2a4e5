"""The jobs. Each is a plain function ``run(now) -> str`` over the services, runnable once from the
command line (``noventiq-panel jobs run NAME --now 2026-11-01T00:05``) and by the scheduler.

Other modules' services are imported inside the functions: a job of an area that is missing or
broken fails alone, and ``import jobs`` stays cheap.
"""

from __future__ import annotations

import inspect
import logging
from datetime import date, datetime

from sqlmodel import Session

from noventiq_panel.services.core import clock

from .job import SCHEDULE_TZ, job

log = logging.getLogger("jobs")


def _session() -> Session:
    from noventiq_panel.db import get_engine

    return Session(get_engine(), expire_on_commit=False)


def _fmt(result) -> str:
    if isinstance(result, dict):
        return ", ".join(f"{k} {v}" for k, v in result.items() if v not in (0, {}, [], "", None)) or "nothing to do"
    if isinstance(result, (list, tuple)):
        return f"{len(result)} created"
    return str(result)


def _call(func, session: Session, now: datetime, **kwargs):
    """Call ``func(session, now=now)`` whatever its exact signature (``now`` keyword or positional)."""
    params = inspect.signature(func).parameters
    if "now" in params:
        return func(session, now=now, **kwargs)
    return func(session, **kwargs)


# -- hourly -----------------------------------------------------------------------------------

@job("rating", schedule={"trigger": "cron", "minute": 5},
     description="Rate unbilled pay-as-you-go usage into the ledger, then check budgets.")
def rating(now: datetime) -> str:
    from noventiq_panel.services.usage import budget_alerts
    from noventiq_panel.services.usage import rating as rating_service

    with _session() as s:
        rated = rating_service.rate_usage(s, now=now)
    with _session() as s:
        budgets = budget_alerts.check_budgets(s, now=now)
    return f"{rated}; budgets: {budgets}"


@job("budgets", schedule=None, description="Budget thresholds (actual and forecast); runs after rating.")
def budgets(now: datetime) -> str:
    from noventiq_panel.services.usage import budget_alerts

    with _session() as s:
        return str(budget_alerts.check_budgets(s, now=now))


@job("renewals", schedule={"trigger": "cron", "minute": 15},
     description="Renew or end licence terms, bill monthly instalments, end or convert trials.")
def renewals(now: datetime) -> str:
    try:
        from noventiq_panel.services.subscriptions import renewals as svc
    except ImportError as exc:  # pragma: no cover - another module
        return f"services.subscriptions.renewals not available ({exc})"
    parts = []
    for name in ("renew_due", "bill_instalments_due", "end_trials"):
        func = getattr(svc, name, None)
        if func is None:
            parts.append(f"{name}: missing")
            continue
        with _session() as s:
            parts.append(f"{name}: {_fmt(_call(func, s, now))}")
    return "; ".join(parts)


@job("rates", schedule={"trigger": "cron", "minute": 45},
     description="Exchange rates from the Central Bank of Uzbekistan (fetched until today's are stored).")
def rates(now: datetime) -> str:
    from noventiq_panel.services.core import cbu_rates

    with _session() as s:
        return cbu_rates.fetch_if_missing(s, now)


# -- daily ------------------------------------------------------------------------------------

@job("reminders", schedule={"trigger": "cron", "hour": 9, "minute": 0},
     description="Expiry, renewal-without-funds, trial, low-balance and payment reminders.")
def reminders(now: datetime) -> str:
    from noventiq_panel.services.subscriptions import reminders as svc

    with _session() as s:
        return str(svc.send_reminders(s, now=now))


# -- monthly (run on the first days so that every time zone's month has closed) ---------------

def _previous_month(now: datetime) -> date:
    return clock.prev_month(clock.local_date(now, SCHEDULE_TZ))


@job("documents", schedule={"trigger": "cron", "day": "1-3", "hour": "2,14", "minute": 30}, run_when_new=False,
     description="Closing documents (acts with invoices) of the previous month.")
def documents(now: datetime) -> str:
    try:
        from noventiq_panel.services.billing import documents as svc
    except ImportError as exc:  # pragma: no cover
        return f"services.billing.documents not available ({exc})"
    month = _previous_month(now)
    with _session() as s:
        created = svc.generate_month(s, month, now=now)
    return f"closing documents of {month:%Y-%m}: {len(created)} created"


@job("postpaid_invoices", schedule={"trigger": "cron", "day": "1-3", "hour": "3,15", "minute": 0},
     run_when_new=False, description="Invoices of postpaid organisations for the previous month.")
def postpaid_invoices(now: datetime) -> str:
    try:
        from noventiq_panel.services.billing import payments as svc
    except ImportError as exc:  # pragma: no cover
        return f"services.billing.payments not available ({exc})"
    if not hasattr(svc, "issue_postpaid_invoices"):  # pragma: no cover
        return "services.billing.payments.issue_postpaid_invoices not available"
    month = _previous_month(now)
    with _session() as s:
        created = svc.issue_postpaid_invoices(s, month, now=now)
    return f"postpaid invoices of {month:%Y-%m}: {len(created)} created"


@job("iaas_report", schedule={"trigger": "cron", "day": "1-2", "hour": "6,18", "minute": 0}, run_when_new=False,
     description="Monthly IaaS consumption report (XLSX) of each pay-as-you-go subscription, by e-mail.")
def iaas_report(now: datetime) -> str:
    return send_iaas_reports(_previous_month(now), now)


def send_iaas_reports(month: date, now: datetime) -> str:
    from noventiq_panel.services.reporting import monthly_reports

    with _session() as s:
        return f"IaaS reports of {month:%Y-%m}: {monthly_reports.send_iaas_reports(s, month, now)}"


# -- every minute -----------------------------------------------------------------------------

@job("mailer", schedule={"trigger": "interval", "minutes": 1},
     description="Send queued notifications over SMTP (retries with backoff).")
def mailer(now: datetime) -> str:
    from noventiq_panel.services.notify import mailer as svc

    return str(svc.send_due(_session, now=now))
