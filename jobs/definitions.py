"""The jobs. Each is a plain function ``run(now) -> str`` over the services, runnable once from the
command line (``noventiq-panel jobs run NAME --now 2026-11-01T00:05``) and by the scheduler. Each
opens its own sessions; the services commit their own transactions."""

from __future__ import annotations

import logging
from datetime import date, datetime

from sqlmodel import Session

from noventiq_panel.db import get_engine
from noventiq_panel.services.billing import documents, esf, payme, postpaid
from noventiq_panel.services.core import cbu_rates, clock
from noventiq_panel.services.notify import mailer as mail_service
from noventiq_panel.services.reporting import monthly_reports
from noventiq_panel.services.subscriptions import credit_control
from noventiq_panel.services.subscriptions import provisioning as provisioning_service
from noventiq_panel.services.subscriptions import reminders as reminder_service
from noventiq_panel.services.subscriptions import renewals as renewal_service
from noventiq_panel.services.usage import anomalies as anomaly_service
from noventiq_panel.services.usage import budget_alerts
from noventiq_panel.services.usage import rating as rating_service

from .job import SCHEDULE_TZ, job

log = logging.getLogger("jobs")


def _session() -> Session:
    return Session(get_engine(), expire_on_commit=False)


def _fmt(result: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in result.items() if v not in (0, {}, [], "", None)) or "nothing to do"


# -- hourly -----------------------------------------------------------------------------------

@job("rating", schedule={"trigger": "cron", "minute": 5},
     description="Rate unbilled pay-as-you-go usage into the ledger, then credit control and budgets.")
def rating(now: datetime) -> str:
    with _session() as s:
        rated = rating_service.rate_usage(s, now=now)
    with _session() as s:
        credit = credit_control.check(s, now=now)
    with _session() as s:
        budgets = budget_alerts.check_budgets(s, now=now)
    return f"{rated}; {credit}; budgets: {budgets}"


@job("budgets", schedule=None, description="Budget thresholds (actual and forecast); runs after rating.")
def budgets(now: datetime) -> str:
    with _session() as s:
        return str(budget_alerts.check_budgets(s, now=now))


@job("renewals", schedule={"trigger": "cron", "minute": 15},
     description="Renew or end licence terms, bill monthly instalments, end or convert trials.")
def renewals(now: datetime) -> str:
    parts = []
    for func in (renewal_service.renew_due, renewal_service.bill_instalments_due, renewal_service.end_trials):
        with _session() as s:
            parts.append(f"{func.__name__}: {_fmt(func(s, now=now))}")
    return "; ".join(parts)


@job("rates", schedule={"trigger": "cron", "minute": 45},
     description="Exchange rates from the Central Bank of Uzbekistan (fetched until today's are stored).")
def rates(now: datetime) -> str:
    with _session() as s:
        return cbu_rates.fetch_if_missing(s, now)


@job("payme_timeouts", schedule={"trigger": "cron", "minute": "*/10"},
     description="Cancel Payme transactions not performed within 12 hours (reason 4).")
def payme_timeouts(now: datetime) -> str:
    with _session() as s:
        return f"cancelled {payme.expire_stale(s, now=now)}"


# -- daily ------------------------------------------------------------------------------------

@job("cost_anomalies", schedule={"trigger": "cron", "hour": 7, "minute": 20},
     description="Cost anomalies of the pay-as-you-go subscriptions (the last complete local days), by e-mail; "
                 "runs after the 07:05 rating.")
def cost_anomalies(now: datetime) -> str:
    with _session() as s:
        return str(anomaly_service.detect(s, now=now))


@job("provisioning_overdue", schedule={"trigger": "cron", "hour": 9, "minute": 30},
     description="Provisioning tasks open longer than PANEL_PROVISIONING_OVERDUE_HOURS, mailed to the support "
                 "address (once a day).")
def provisioning_overdue(now: datetime) -> str:
    with _session() as s:
        return f"{provisioning_service.report_overdue(s, now=now)} overdue tasks reported"


@job("reminders", schedule={"trigger": "cron", "hour": 9, "minute": 0},
     description="Expiry, renewal-without-funds, trial, low-balance and payment reminders.")
def reminders(now: datetime) -> str:
    with _session() as s:
        return str(reminder_service.send_reminders(s, now=now))


# -- monthly (run on the first days so that every time zone's month has closed) ---------------

def _previous_month(now: datetime) -> date:
    return clock.prev_month(clock.local_date(now, SCHEDULE_TZ))


@job("documents", schedule={"trigger": "cron", "day": "1-3", "hour": "2,14", "minute": 30}, run_when_new=False,
     description="Closing documents (acts with invoices) of the previous month.")
def closing_documents(now: datetime) -> str:
    month = _previous_month(now)
    with _session() as s:
        check = esf.check_month(s, month)  # logs each missing item; the acts are made all the same
        created = documents.generate_month(s, month, now=now)
    return f"closing documents of {month:%Y-%m}: {len(created)} created" + _esf_summary(check)


def _esf_summary(check) -> str:
    if check.ok:
        return "; ЭСФ complete"
    shown = "; ".join(check.lines()[:5]) + ("; ..." if len(check.missing) > 5 else "")
    return f"; ЭСФ: {len(check.missing)} missing ({shown}) — noventiq-panel documents check --month {check.month:%Y-%m}"


@job("esf_check", schedule={"trigger": "cron", "day": "25", "hour": 9, "minute": 0}, run_when_new=False,
     description="What the electronic invoices (ЭСФ) of the current month lack, before the month closes.")
def esf_check(now: datetime) -> str:
    month = clock.local_date(now, SCHEDULE_TZ).replace(day=1)
    with _session() as s:
        check = esf.check_month(s, month)
    return f"ЭСФ check of {month:%Y-%m} so far: {check.organisations} organisations" + _esf_summary(check)


@job("postpaid_invoices", schedule={"trigger": "cron", "day": "1-3", "hour": "3,15", "minute": 0},
     run_when_new=False, description="Invoices of postpaid organisations for the previous month.")
def postpaid_invoices(now: datetime) -> str:
    month = _previous_month(now)
    with _session() as s:
        created = postpaid.issue_postpaid_invoices(s, month, now=now)
    return f"postpaid invoices of {month:%Y-%m}: {len(created)} created"


@job("iaas_report", schedule={"trigger": "cron", "day": "1-2", "hour": "6,18", "minute": 0}, run_when_new=False,
     description="Monthly IaaS consumption report (XLSX) of each pay-as-you-go subscription, by e-mail.")
def iaas_report(now: datetime) -> str:
    month = _previous_month(now)
    with _session() as s:
        return f"IaaS reports of {month:%Y-%m}: {monthly_reports.send_iaas_reports(s, month, now)}"


# -- every minute -----------------------------------------------------------------------------

@job("mailer", schedule={"trigger": "interval", "minutes": 1},
     description="Send queued notifications over SMTP (retries with backoff).")
def mailer(now: datetime) -> str:
    return str(mail_service.send_due(_session, now=now))
