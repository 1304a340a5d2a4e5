"""The histories of the demo's two organisations, dated relative to the demo's anchor.

«ООО «Ромашка»» (prepaid) has subscriptions in every status and billing variant, a licence
increase inside its 168-hour window and a scheduled decrease, a cancellation refunded pro rata,
two trials, Azure pay-as-you-go usage with a budget and last month's alerts, a pending invoice and
the mail all of this sent. «ООО «Восток Трейд»» (postpaid) is the second tenant: a few licences
and Azure daily usage.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from sqlmodel import select

from noventiq_panel.models import Budget, BudgetAlert, LedgerEntry, Payment, ScheduledChange
from noventiq_panel.services.core import clock, ledger, proration
from noventiq_panel.services.demo.azure_usage import (
    ROMASHKA_AZURE, VOSTOK_AZURE, credit_row, insert_usage, rate_usage_daily, usage_rows)
from noventiq_panel.services.demo.builder import OrgBuilder, local_day_text, mail


# ---------------------------------------------------------------------------------------------
# «ООО «Ромашка»»
# ---------------------------------------------------------------------------------------------


def build_romashka(b: OrgBuilder) -> None:
    s = b.session
    tz = b.tz
    users = b.users
    today = b.today

    # Microsoft 365 Business Standard, a year paid upfront: 20 seats, +5 three days ago (still
    # inside the 168-hour window), a decrease back to 20 scheduled at renewal.
    first = b.midnight(-300) + timedelta(hours=11)
    b.microsoft_tenant("romashkauz.onmicrosoft.com", first - timedelta(minutes=30))
    bs = b.licence_history("m365-bs", "m365-bs-1y", quantity=25, first_quantity=20, first_start=first, terms=1)
    plan = b.plans["m365-bs-1y"]
    inc_at = b.at(-3, 14, 20)
    amount, remaining, total = b.pro_rata(bs, plan, 5, inc_at)
    b.charge(bs, plan, inc_at, amount, quantity=5, unit_price=plan.price, key="demo:romashka:m365-bs:inc:1",
             description=f"Microsoft 365 Business Standard: +5 лиц. (20 → 25), пропорционально за {remaining} из "
                         f"{total} дн.",
             period=(inc_at, bs.term_end), meta={"action": "increase", "remaining_days": remaining,
                                                 "total_days": total})
    b.batch(bs, 5, inc_at, "increase")
    b.audit("subscription.quantity_changed", inc_at, user="admin", sub=bs, old_quantity=20, new_quantity=25)

    # Microsoft 365 Business Basic, monthly, renewed five times; renews in 4 days; a decrease to
    # 10 seats is scheduled for the renewal.
    bb_first = clock.local_midnight(clock.add_months(b.day(4), -6), tz) + timedelta(hours=9, minutes=30)
    bb = b.licence_history("m365-bb", "m365-bb-1m", quantity=12, first_start=bb_first, terms=6)
    s.add(ScheduledChange(subscription_id=bb.id, kind="quantity", new_quantity=10, effective_at=bb.term_end,
                          created_by=users["admin"].id, created_at=b.at(-12, 16)))
    b.audit("subscription.decrease_scheduled", b.at(-12, 16), user="admin", sub=bb, old_quantity=12, new_quantity=10,
            effective_at=bb.term_end.isoformat())

    # Microsoft 365 Business Premium, a year billed monthly, started ~100 days ago.
    b.licence_history("m365-bp", "m365-bp-1y-m", quantity=5, first_start=b.midnight(-100) + timedelta(hours=12),
                      terms=1)

    # Exchange Online, monthly, auto-renew off: ends in 2 days.
    exo_first = clock.local_midnight(clock.add_months(b.day(2), -3), tz) + timedelta(hours=15)
    exo = b.licence_history("exo", "exo-p1-1m", quantity=8, first_start=exo_first, terms=3, auto_renew=False,
                            name="Exchange Online — почта склада")
    b.audit("subscription.auto_renew_off", b.at(-9, 10), user="admin", sub=exo)

    # Teams Essentials, monthly, suspended by the administrator 6 days ago.
    teams_first = clock.local_midnight(clock.add_months(b.day(10), -4), tz) + timedelta(hours=10)
    teams = b.licence_history("teams", "teams-ess-1m", quantity=10, first_start=teams_first, terms=4,
                              status="suspended", auto_renew=False, suspended_at=b.at(-6, 17, 45))
    b.audit("subscription.suspended", b.at(-6, 17, 45), user="admin", sub=teams, reason="manual")

    # Kaspersky, a year paid upfront in UZS: renews in 20 days.
    kes = b.licence_history("kes", "kes-cloud-1y", quantity=30, first_start=clock.local_midnight(
        clock.add_months(b.day(20), -12), tz) + timedelta(hours=11), terms=1)
    # Kaspersky has no API: the order went through the operator's queue, done within the hour
    b.provisioning_order(kes, requested_at=kes.term_start - timedelta(minutes=50), done_at=kes.term_start)

    # 1C in the cloud, a year paid upfront in UZS.
    b.licence_history("1c", "1c-fresh-1y", quantity=3, first_start=b.midnight(-150) + timedelta(hours=16), terms=1)

    # Adobe Creative Cloud, a year billed monthly, started 40 days ago.
    b.licence_history("adobe", "adobe-cc-1y-m", quantity=2, first_start=b.midnight(-40) + timedelta(hours=13),
                      terms=1)

    # Dropbox, monthly, auto-renew off: expired 15 days ago.
    drop_first = clock.local_midnight(clock.add_months(b.day(-15), -2), tz) + timedelta(hours=12)
    drop = b.licence_history("dropbox", "dropbox-std-1m", quantity=3, first_start=drop_first, terms=2,
                             status="expired", auto_renew=False)
    b.audit("subscription.expired", drop.term_end, user=None, sub=drop)

    # Zoom, ordered 45 days ago and cancelled the next day inside the cancellation window: refunded.
    zoom_plan = b.plans["zoom-pro-1m"]
    z_start = b.at(-45, 11)
    z_end = proration.term_end(z_start, "month", tz)
    zoom = b.subscription("zoom", "zoom-pro-1m", status="cancelled", quantity=2, term_start=z_start, term_end=z_end,
                          auto_renew=False, cancelled_at=b.at(-44, 9, 15))
    b.charge(zoom, zoom_plan, z_start + timedelta(minutes=5), zoom_plan.price * 2, quantity=2,
             unit_price=zoom_plan.price, key="demo:romashka:zoom:t1",
             description=f"Zoom Workplace Pro: 2 лиц., покупка на период {local_day_text(z_start, tz)}–"
                         f"{local_day_text(z_end, tz, True)}",
             period=(z_start, z_end), meta={"action": "order"})
    amount, remaining, total = b.pro_rata(zoom, zoom_plan, 2, zoom.cancelled_at)
    b.charge(zoom, zoom_plan, zoom.cancelled_at, amount, kind="refund", quantity=2, unit_price=zoom_plan.price,
             key="demo:romashka:zoom:refund",
             description=f"Zoom Workplace Pro: отмена подписки, возврат за {remaining} из {total} дн.",
             period=(zoom.cancelled_at, z_end), meta={"action": "cancel", "remaining_days": remaining,
                                                      "total_days": total})
    b.audit("subscription.ordered", z_start, sub=zoom, plan="zoom-pro-1m", quantity=2)
    b.audit("subscription.cancelled", zoom.cancelled_at, sub=zoom, refund_days=remaining)

    # Figma, ordered yesterday, waiting for the vendor's provisioning.
    figma = b.subscription("figma", "figma-pro-1m", status="pending", quantity=4, created_at=b.at(-1, 16, 40),
                           vendor_ref="")
    b.audit("subscription.ordered", figma.created_at, user="admin", sub=figma, plan="figma-pro-1m", quantity=4)
    b.provisioning_order(figma, requested_at=figma.created_at, user="admin")  # in the operator's queue

    # Two trials: Acronis converts to the paid plan in 6 days; Google Workspace ends in 20 days.
    for sub_key, code, qty, ends, convert in (("acronis-trial", "acronis-cp-trial", 5, 6, True),
                                              ("gws-trial", "gws-starter-trial", 5, 20, False)):
        t_start = b.at(ends - 30, 10, 10)
        t_end = proration.trial_end(t_start, 30, tz)
        trial = b.subscription(sub_key, code, status="trial", quantity=qty, term_start=t_start, term_end=t_end,
                               is_trial=True, trial_ends_at=t_end, trial_convert=convert, auto_renew=convert)
        b.batch(trial, qty, t_start, "purchase")
        b.audit("subscription.trial_started", t_start, user="admin", sub=trial, plan=code, quantity=qty)

    # Microsoft Azure, pay-as-you-go hourly, since 200 days; 120 days of usage; a budget.
    az_start = b.at(-200, 14)
    azure = b.subscription("azure", "azure-payg-hourly", status="active", quantity=1, term_start=az_start,
                           name="Microsoft Azure — интернет-магазин и ERP")
    b.audit("subscription.ordered", az_start, sub=azure, plan="azure-payg-hourly", quantity=1)
    rows = usage_rows(b.org, azure, ROMASHKA_AZURE, b.anchor, granularity="hour", seed="romashka")
    # the vendor's SLA credit for an outage of the web servers, nine days ago
    rows.append(credit_row(b.org, azure, b.anchor, days_ago=9, amount=Decimal("12.500000"),
                           service="Virtual Machines", description="SLA credit: Virtual Machines"))
    rate_usage_daily(b, azure, rows)
    b.after_money.append(lambda: insert_usage(s, rows))

    budget_amount = Decimal("8000000.00")
    budget = Budget(org_id=b.org.id, subscription_id=azure.id, amount=budget_amount, currency="UZS",
                    thresholds=[{"percent": "50", "type": "actual"}, {"percent": "80", "type": "actual"},
                                {"percent": "100", "type": "actual"}, {"percent": "100", "type": "forecast"}],
                    recipient_user_ids=[users["owner"].id, users["finance"].id], extra_emails=["it@romashka.uz"],
                    created_at=b.at(-75, 11), updated_at=b.at(-75, 11))
    s.add(budget)
    s.flush()
    b.audit("budget.set", budget.created_at, sub=azure, amount=str(budget_amount), currency="UZS")

    def budget_alerts() -> None:
        # Last month's actual thresholds, in the order the (planned) daily usage crossed them.
        month = clock.prev_month(today.replace(day=1))
        m_start, m_end = clock.month_bounds(month, tz)
        usage = sorted((m for m in b.money if m.kind == "usage" and m.fields.get("subscription_id") == azure.id
                        and m_start <= m.fields["period_start"] < m_end), key=lambda m: m.fields["period_start"])
        spent = Decimal(0)
        crossed: set[str] = set()
        for entry in usage:
            spent += -entry.amount
            for pct in ("50", "80", "100"):
                if pct not in crossed and spent >= budget_amount * Decimal(pct) / 100:
                    crossed.add(pct)
                    at = entry.fields["period_end"] + timedelta(hours=1)
                    shown = spent.quantize(Decimal("0.01"))
                    s.add(BudgetAlert(budget_id=budget.id, month=month, percent=pct, kind="actual", spent=shown,
                                      created_at=at))
                    for role in ("owner", "finance"):
                        mail(s, users[role], b.org, "budget_threshold", dict(
                            budget_name="Бюджет Azure", product="Microsoft Azure", threshold=Decimal(pct),
                            threshold_type="actual", budget_amount=budget_amount, spent=shown, currency="UZS",
                            month=month, subscription_id=azure.id), at, f"romashka:budget:{month}:{pct}:{role}")

    b.after_money.append(budget_alerts)

    # A top-up invoice waiting to be paid.
    number = "DEMO-ROM-INV-0001"
    if s.exec(select(Payment).where(Payment.number == number)).first() is None:
        s.add(Payment(org_id=b.org.id, number=number, kind="topup", method="bank_transfer",
                      amount=Decimal("20000000.00"), currency="UZS", status="pending",
                      purpose="Пополнение баланса по счёту", due_date=b.day(5), created_at=b.at(-1, 11, 5),
                      created_by=users["owner"].id))

    # People.
    b.audit("user.invited", b.at(-280, 12), user="owner", email="admin@demo.example", role="admin")
    b.audit("user.invited", b.at(-279, 15), user="owner", email="finance@demo.example", role="finance")

    def mails() -> None:
        org = b.org
        bal = ledger.balance(s, org.id)
        mail(s, users["owner"], org, "welcome", {"org_name": org.name}, first - timedelta(days=2),
             "romashka:welcome:owner")
        mail(s, users["admin"], org, "invite", {"org_name": org.name, "inviter_name": users["owner"].name,
                                                "role": "admin"}, b.at(-280, 12), "romashka:invite:admin")
        last_topup = s.exec(select(LedgerEntry).where(LedgerEntry.org_id == org.id, LedgerEntry.kind == "topup")
                            .order_by(LedgerEntry.occurred_at.desc())).first()
        if last_topup is not None:
            for role in ("owner", "finance"):
                mail(s, users[role], org, "payment_received", {
                    "amount": last_topup.amount, "currency": "UZS",
                    "balance": ledger.balance(s, org.id, until=last_topup.occurred_at + timedelta(seconds=1)),
                    "method": "bank_transfer"}, last_topup.occurred_at + timedelta(minutes=2),
                    f"romashka:payment:{last_topup.idempotency_key}:{role}")
        bb_price = b.plans["m365-bb-1m"].price * 10 * b.rate("USD", today)
        mail(s, users["owner"], org, "renewal_reminder", {
            "product": "Microsoft 365 Business Basic", "renew_on": clock.local_date(bb.term_end, tz),
            "amount": bb_price.quantize(Decimal("0.01")), "currency": "UZS", "balance": bal,
            "subscription_id": bb.id}, b.at(-3, 9), "romashka:renewal_reminder:m365-bb")
        mail(s, users["owner"], org, "expiry_reminder", {
            "product": "Exchange Online (план 1)", "expires_on": clock.local_date(exo.term_end, tz),
            "subscription_id": exo.id}, b.at(-5, 9), "romashka:expiry_reminder:exo")
        acr = b.subs["acronis-trial"]
        mail(s, users["admin"], org, "trial_reminder", {
            "product": "Acronis Cyber Protect Cloud", "trial_ends_on": clock.local_date(acr.trial_ends_at, tz),
            "converts": True, "amount": (b.plans["acronis-cp-1m"].price * 5 * b.rate("USD", today)).quantize(
                Decimal("0.01")), "currency": "UZS", "subscription_id": acr.id}, b.at(-1, 9),
            "romashka:trial_reminder:acronis", sent=False)
        mail(s, users["owner"], org, "suspended", {
            "product": "Microsoft Teams Essentials", "suspended_on": clock.local_date(teams.suspended_at, tz),
            "reason": "manual", "subscription_id": teams.id}, teams.suspended_at, "romashka:suspended:teams")
        mail(s, users["owner"], org, "expired", {
            "product": "Dropbox Standard для команд", "expired_on": clock.local_date(drop.term_end, tz),
            "subscription_id": drop.id}, drop.term_end, "romashka:expired:dropbox")
        mail(s, users["admin"], org, "licence_changed", {
            "product": "Microsoft 365 Business Standard", "old_quantity": 20, "new_quantity": 25,
            "amount": -s.exec(select(LedgerEntry.amount).where(
                LedgerEntry.idempotency_key == "demo:romashka:m365-bs:inc:1")).one(),
            "currency": "UZS", "subscription_id": bs.id}, inc_at, "romashka:licence_changed:m365-bs:inc")

    b.after_money.append(mails)
    b.post_money(cushion=Decimal("3000000"), step=Decimal("5000000"), final_min=Decimal("18000000"))


# ---------------------------------------------------------------------------------------------
# «ООО «Восток Трейд»»
# ---------------------------------------------------------------------------------------------


def build_vostok(b: OrgBuilder) -> None:
    s = b.session
    b.microsoft_tenant("vostoktrade.onmicrosoft.com", b.midnight(-130) + timedelta(hours=9, minutes=40))
    b.licence_history("m365-bb", "m365-bb-1y", quantity=15,
                      first_start=b.midnight(-130) + timedelta(hours=10), terms=1)
    b.licence_history("kes", "kes-cloud-1m", quantity=20,
                      first_start=clock.local_midnight(clock.add_months(b.day(12), -3), b.tz) + timedelta(hours=10),
                      terms=3)
    b.licence_history("y360", "y360-basic-1m", quantity=15,
                      first_start=clock.local_midnight(clock.add_months(b.day(8), -2), b.tz) + timedelta(hours=16),
                      terms=2)
    az_start = b.at(-60, 12)
    azure = b.subscription("azure", "azure-payg-daily", status="active", quantity=1, term_start=az_start,
                           name="Microsoft Azure — ERP")
    b.audit("subscription.ordered", az_start, sub=azure, plan="azure-payg-daily", quantity=1)
    rows = usage_rows(b.org, azure, VOSTOK_AZURE, b.anchor, granularity="day", days=60, seed="vostok")
    rate_usage_daily(b, azure, rows)
    b.after_money.append(lambda: insert_usage(s, rows))
    b.audit("user.invited", b.at(-125, 12), user="owner", email="admin@other.example", role="admin")

    def mails() -> None:
        mail(s, b.users["owner"], b.org, "welcome", {"org_name": b.org.name}, b.midnight(-131) + timedelta(hours=9),
             "vostok:welcome:owner")

    b.after_money.append(mails)
    b.post_money(cushion=Decimal(0), step=Decimal("1000000"), final_min=Decimal(0), postpaid=True)


BUILDERS = {"romashka": build_romashka, "vostok": build_vostok}
