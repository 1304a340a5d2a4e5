"""Ordering a subscription, and its price before it is placed.

The first billing period is charged at once (the whole term when billed upfront, the first monthly
instalment of a yearly plan billed monthly), converted from the plan's currency at the day's rate,
which is stored on the ledger entry. Prepaid: only if the balance covers it, else
:class:`InsufficientFunds` with the shortfall (nothing is created); postpaid: balance plus credit
limit. Trials are free, up to ``plan.trial_max_quantity`` seats, once per product and organisation.
Pay-as-you-go subscriptions cost nothing at order: usage is rated later. A licence order opens the
first licence batch and its cancellation window.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import or_
from sqlmodel import Session, col, select

from noventiq_panel.models import Organisation, Plan, Subscription
from noventiq_panel.services.catalog import catalog
from noventiq_panel.services.core import audit, authz, clock, ledger, proration
from noventiq_panel.services.core.authz import Actor
from noventiq_panel.services.core.errors import Conflict
from noventiq_panel.services.core.money import parse_quantity
from noventiq_panel.services.identity import microsoft_tenant
from noventiq_panel.services.subscriptions import confirmation, credit_control, licences, provisioning
from noventiq_panel.services.vendors import connector as vendor_api
from noventiq_panel.services.subscriptions.context import (
    S, atomic, describe, mail_actor, parse_bool, post_money, seat_price, shortfall,
    to_org_currency, utc_now,
)
from noventiq_panel.services.subscriptions.quotes import OrderQuote, Outcome


def order_quantity(plan: Plan, quantity) -> int:
    """The seats of an order, within the plan's limits (a trial's own maximum)."""
    maximum = plan.trial_max_quantity if plan.trial_days > 0 else plan.max_quantity
    return parse_quantity(quantity, minimum=max(1, plan.min_quantity), maximum=maximum)


def _trial_used(session: Session, org_id: int, product_id: int) -> bool:
    """Has the organisation ever had a trial of this product (any status, converted included)? A
    trial ordered from a vendor without an API and cancelled before the vendor activated it (refused,
    or withdrawn while it waited) was never had."""
    row = session.exec(
        select(Subscription.id).join(Plan, Plan.id == Subscription.plan_id)
        .where(Subscription.org_id == org_id, Plan.product_id == product_id,
               or_(col(Subscription.trial_ends_at).is_not(None), Subscription.is_trial == True),  # noqa: E712
               or_(Subscription.status != S.CANCELLED, col(Subscription.activated_at).is_not(None)))
        .limit(1)
    ).first()
    return row is not None


def order_quote(session: Session, org: Organisation, info: catalog.PlanInfo, quantity: int, now: datetime) -> OrderQuote:
    """The price of ``quantity`` seats of the plan ordered at ``now`` by ``org`` (an organisation
    not stored yet for a guest); nothing is written."""
    plan, product, vendor = info.plan, info.product, info.vendor
    tz = org.timezone
    day = clock.local_date(now, tz)
    is_trial = plan.trial_days > 0
    is_payg = plan.billing_type == "payg"
    if is_trial and _trial_used(session, org.id, product.id):
        raise Conflict("a trial of this product was already used", key="error.trial_already_used",
                       product=product.name)
    term_end = next_billing = trial_ends = None
    price_now = recurring = Decimal("0.00")
    unit = Decimal("0")
    rate = Decimal(1)
    recurring_period = None
    renewal_date = None
    if is_trial:
        trial_ends = term_end = proration.trial_end(now, plan.trial_days, tz)
        renewal_date = clock.local_date(term_end, tz)
    elif not is_payg:
        term_end = proration.term_end(now, plan.term, tz)
        period = proration.billing_period(now, term_end, plan.term, plan.billing_frequency, now, tz)
        unit = seat_price(plan)
        price_now, _raw, rate = to_org_currency(session, unit * quantity, plan, org, day)
        recurring = price_now
        recurring_period = "month" if proration.is_billed_monthly(plan.term, plan.billing_frequency) \
            else (plan.term or "month")
        next_billing = proration.next_period_start(period, term_end)
        renewal_date = clock.local_date(term_end, tz)
    available = ledger.available(session, org)
    return OrderQuote(
        plan_id=plan.id, plan_code=plan.code, plan_name=plan.name, product_name=product.name,
        vendor_name=vendor.name, quantity=quantity, currency=org.billing_currency, plan_currency=plan.currency,
        unit_price=unit, price_now=price_now, recurring_price=recurring, recurring_period=recurring_period,
        fx_rate=rate, fx_date=day, term_start=now, term_end=term_end, renewal_date=renewal_date,
        next_billing_at=next_billing,
        next_charge_date=clock.local_date(next_billing, tz) if next_billing else (
            renewal_date if not is_trial and not is_payg else None),
        is_trial=is_trial, trial_ends_at=trial_ends,
        converts_to=plan.trial_converts_to, is_payg=is_payg, available=available,
        shortfall=shortfall(price_now, available), manual=provisioning.is_manual(vendor.code),
    )


def quote_order(session: Session, actor: Actor | None, plan_id, quantity, *, now: datetime | None = None) -> OrderQuote:
    """Price an order (nothing is written): price now, recurring price, renewal date, shortfall.
    Raises the same errors :func:`order` would, except for missing funds (reported as shortfall)."""
    access = authz.can_read(session, actor)
    now = utc_now(now)
    info = catalog.get_plan(session, plan_id)
    quantity = order_quantity(info.plan, quantity)
    org = session.get(Organisation, access.org_id)
    quote = order_quote(session, org, info, quantity, now)
    quote.tenant = microsoft_tenant.order_status(session, org.id, info.vendor.code)
    quote.quote_id = confirmation.issue(session, access, "order", _params(info.plan.id, quantity), quote.amount_due,
                                        org.billing_currency, now=now)
    session.commit()
    return quote


def _params(plan_id: int, quantity: int) -> dict:
    return {"plan_id": plan_id, "quantity": quantity}


def order(session: Session, actor: Actor | None, plan_id, quantity, *, trial_convert: bool = False,
          quote_id: str | None = None, amount=None, now: datetime | None = None, _paid: bool = False,
          tenant_later: bool = False) -> Outcome:
    """Order a subscription of ``quantity`` seats of the plan (Owner/Admin).

    The first billing period is charged at once; prepaid organisations need the balance to cover
    it (else InsufficientFunds with the shortfall and nothing is created). ``quote_id`` and
    ``amount`` are those of the preview (:func:`quote_order`): a changed price is refused, a second
    confirmation returns the first result (``confirmation``); the charge's key is
    ``op:<operation id>:charge``. Trials: ``trial_convert`` = become the paid plan when the trial
    ends. ``_paid``: a paid shortfall invoice completes the order (``pending_actions``).

    The first Microsoft order needs the organisation's Microsoft tenant (``microsoft_tenant``):
    refused without it, and refused through a connector until it is confirmed. An order that
    cannot wait for the customer (``_paid``: paid for already; ``tenant_later``: a visitor's first
    order) is not refused for it: it waits in the provisioning queue, where the operator confirms
    the tenant.
    """
    now = utc_now(now)
    with atomic(session):
        access = authz.can_write(session, actor)
        info = catalog.get_plan(session, plan_id)
        plan, product, vendor = info.plan, info.product, info.vendor
        quantity = order_quantity(plan, quantity)
        trial_convert = parse_bool(trial_convert, "trial_convert")
        org = ledger.lock_organisation(session, access.org_id)
        if (done := confirmation.confirmed_before(session, access, "order", quote_id, params=_params(plan.id, quantity))) is not None:
            return Outcome.replayed(done)
        quote = order_quote(session, org, info, quantity, now)
        # the first Microsoft order needs the tenant; an order already paid for (``_paid``) is not
        # refused for it but waits in the queue, where the operator confirms the tenant
        tenant = microsoft_tenant.order_status(session, org.id, vendor.code)
        if not (_paid or tenant_later):
            microsoft_tenant.require_for_order(tenant)
        credit_control.require_deposit(session, org, plan, quote.fx_date)
        op = confirmation.begin(session, access, "order", quote_id, amount, params=_params(plan.id, quantity),
                                amount_due=quote.amount_due, now=now, check_price=not _paid)
        if op.done is not None:
            return Outcome.replayed(op.done)
        key = op.key("charge")
        if _paid and (done := ledger.find(session, key)) is not None:  # a waiting action done before
            sub = session.get(Subscription, done.subscription_id)
            return Outcome(sub.id, "order", org.billing_currency, sub.status, sub.quantity,
                           charged=-done.amount, already_done=True)
        if _paid and (task := provisioning.order_task(session, key)) is not None:  # ... or queued before
            sub = session.get(Subscription, task.subscription_id)
            return Outcome(sub.id, "order", org.billing_currency, sub.status, sub.quantity, already_done=True)
        if quote.price_now > 0:
            ledger.require_funds(session, org, quote.price_now)
        is_trial = quote.is_trial
        sub = Subscription(
            org_id=org.id, plan_id=plan.id, name=product.name, status=S.PENDING, quantity=quantity,
            term_start=now, term_end=quote.term_end, next_billing_at=quote.next_billing_at,
            auto_renew=not is_trial and not quote.is_payg, is_trial=is_trial, trial_ends_at=quote.trial_ends_at,
            trial_convert=trial_convert if is_trial else False, created_at=now,
        )
        session.add(sub)
        session.flush()
        conn = None if tenant else vendor_api.connector_for(vendor.code)
        if conn is None:  # a vendor without an API: the provisioning queue, the price reserved
            return _queued(session, op, access, org, sub, plan, product, vendor, quote, now)
        result = conn.provision(vendor_api.ProvisionRequest(
            org_id=org.id, subscription_id=sub.id, vendor_code=vendor.code, product_code=product.code,
            plan_code=plan.code, quantity=quantity, is_trial=is_trial, request_key=op.key("provision"),
            catalog_item_id=plan.catalog_item_id or None,
            customer_tenant_id=microsoft_tenant.tenant_id_of(session, org.id) if microsoft_tenant.required_for(
                vendor.code) else None))
        sub.vendor_ref = result.vendor_ref
        if result.active:
            sub.status = S.TRIAL if is_trial else S.ACTIVE
            sub.activated_at = now
        if plan.billing_type == "license" and not is_trial:
            licences.add(session, sub.id, quantity, now, plan.cancellation_window_hours, "purchase")
        charged = Decimal("0.00")
        if quote.price_now > 0:
            period = proration.billing_period(now, quote.term_end, plan.term, plan.billing_frequency, now, org.timezone)
            charged = post_money(
                session, org=org, sub=sub, plan=plan, kind="charge",
                plan_amount=quote.unit_price * quantity, key=key,
                description=describe(product, plan, f"заказ, {quantity} шт."),
                quantity=quantity, now=now, period=(period.start, period.end), user_id=access.user_id,
                meta={"action": "order", "plan": plan.code},
            )
        session.add(sub)
        audit.record(session, access.actor, "subscription.ordered", subscription_id=sub.id, plan=plan.code,
                     quantity=quantity, amount=str(charged), currency=org.billing_currency, trial=is_trial)
        context = {"product": product.name, "plan": plan.name, "quantity": quantity, "amount": charged,
                   "currency": org.billing_currency, "subscription_id": sub.id}
        if is_trial:
            context["trial_ends_on"] = clock.local_date(quote.trial_ends_at, org.timezone)
        elif quote.term_end:
            context["period_end"] = clock.local_date(quote.term_end, org.timezone)
        mail_actor(session, access, "order_confirmed", context, now=now)
        outcome = Outcome(sub.id, "order", org.billing_currency, sub.status, sub.quantity, charged=charged)
        confirmation.finish(session, op, outcome.stored(), now=now)
    return outcome


def _queued(session: Session, op, access, org: Organisation, sub: Subscription, plan: Plan, product, vendor,
            quote: OrderQuote, now: datetime) -> Outcome:
    """The order of a manual vendor: the subscription waits (``pending``) for the operator, the
    first period's price is reserved, not charged (``provisioning``)."""
    reserved = quote.price_now if quote.price_now > 0 else Decimal("0.00")
    task = provisioning.request_order(
        session, access=access, org=org, sub=sub, plan=plan, vendor=vendor, reserved=reserved,
        plan_amount=quote.unit_price * sub.quantity if reserved else Decimal("0"), fx_date=quote.fx_date, now=now,
        request_key=op.key("charge"))
    audit.record(session, access.actor, "subscription.ordered", subscription_id=sub.id, plan=plan.code,
                 quantity=sub.quantity, amount="0.00", reserved=str(reserved), currency=org.billing_currency,
                 trial=sub.is_trial, provisioning_task=task.id)
    mail_actor(session, access, "provisioning_requested",
               {"product": product.name, "quantity": sub.quantity, "amount": reserved,
                "currency": org.billing_currency, "subscription_id": sub.id}, now=now)
    outcome = Outcome(sub.id, "order", org.billing_currency, sub.status, sub.quantity)
    confirmation.finish(session, op, outcome.stored(), now=now)
    return outcome
