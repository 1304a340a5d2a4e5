"""The monthly IaaS report by e-mail: for every pay-as-you-go subscription with usage in a closed
month, the subscription's XLSX report (``reports.iaas_report_xlsx``) to its organisation's owners and
financial managers, once per subscription, month and user (the dedupe key
``iaas_monthly_report:<sub>:<yyyymm>:u<user>``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import func
from sqlmodel import Session, select

from noventiq_panel.models import LedgerEntry, Notification, Organisation, Plan, Product, Subscription
from noventiq_panel.services.core import clock
from noventiq_panel.services.core.authz import Actor
from noventiq_panel.services.notify import notifications
from noventiq_panel.services.reporting import reports

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


@dataclass
class Sent:
    mails: int = 0
    waiting: int = 0  # subscriptions whose month has not closed in their organisation's time zone yet

    def __str__(self) -> str:
        return f"{self.mails} mails" + (f"; {self.waiting} subscriptions wait for their month to close"
                                        if self.waiting else "")


def send_iaas_reports(session: Session, month: date, now: datetime) -> Sent:
    """Queue the reports of ``month`` (a closed month in each organisation's time zone). One
    transaction per subscription, committed here."""
    sent = Sent()
    month = clock.month_start(month)
    subs = session.exec(
        select(Subscription, Product, Organisation)
        .join(Plan, Plan.id == Subscription.plan_id).join(Product, Product.id == Plan.product_id)
        .join(Organisation, Organisation.id == Subscription.org_id)
        .where(Plan.billing_type == "payg", Organisation.is_active == True)  # noqa: E712
        .order_by(Subscription.id)).all()
    session.rollback()
    for sub, product, org in subs:
        start, end = clock.month_bounds(month, org.timezone)
        if now < end:
            sent.waiting += 1
            continue
        try:
            sent.mails += _send_one(session, sub, product, org, month, start, end, now)
            session.commit()
        except Exception:
            session.rollback()
            raise
    return sent


def _send_one(session: Session, sub: Subscription, product: Product, org: Organisation, month: date,
              start: datetime, end: datetime, now: datetime) -> int:
    key = f"iaas_monthly_report:{sub.id}:{month:%Y%m}"
    total = session.exec(select(func.sum(LedgerEntry.amount)).where(
        LedgerEntry.subscription_id == sub.id, LedgerEntry.kind == "usage",
        LedgerEntry.occurred_at >= start, LedgerEntry.occurred_at < end)).one()
    if total is None:
        return 0  # no usage that month
    pending = [u for u in notifications.recipients(session, org.id, ("owner", "finance"))
               if session.exec(select(Notification.id).where(Notification.dedupe_key == f"{key}:u{u.id}")).first() is None]
    if not pending:
        return 0
    next_month = clock.next_month(month)
    data = reports.iaas_report_xlsx(session, Actor.system(org.id), month, next_month, subscription_id=sub.id)
    name = reports.iaas_report_filename(month, next_month, "xlsx")
    context = {"product": product.name, "month": month, "amount": -Decimal(total),
               "currency": org.billing_currency, "subscription_id": sub.id}
    for user in pending:
        notifications.notify_user(session, user, "iaas_monthly_report", context, org_id=org.id,
                                  dedupe_key=f"{key}:u{user.id}", attachments=[(name, XLSX, data)], now=now)
    return len(pending)
