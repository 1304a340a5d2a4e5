"""Review of the tenant step fixes (1698d86, 8d365c8, 7142693): sequences of legitimate calls that
break "a tenant id is confirmed for one organisation only" or that reserve (and later charge) a
visitor's paid Microsoft order twice. Each test FAILS on 7142693 for the reason its docstring gives.

The helpers are those of the order tests (``_org``, ``_microsoft``)."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

from sqlmodel import Session, col, func, select

from noventiq_panel.models import MicrosoftTenant, Payment, ProvisioningTask, Subscription
from noventiq_panel.services.identity import microsoft_tenant as mt
from noventiq_panel.services.subscriptions import ordering, pending_actions, provisioning

from tests import factories as f
from tests.services.identity.test_microsoft_tenant_order import _microsoft, _org
from tests.services.subscriptions.test_subscriptions import _race

AT = datetime(2026, 12, 6, 9, tzinfo=timezone.utc)
GUID = "6f1c2a0e-3b4d-4c5e-9f60-718293a4b5c6"


# --- 1. one tenant id confirmed for two organisations by two operators at once ----------------------


def test_a_tenant_id_is_not_confirmed_for_two_organisations_by_a_confirm_racing_a_complete(engine, manual_vendors):
    """1698d86 made "a tenant id is confirmed for one organisation only" a rule, but only as a read
    in ``confirm_locked`` ("is it verified for another org?") under the lock of the organisation
    being confirmed — a DIFFERENT row from the other organisation's — and there is no unique index
    on confirmed tenant ids. Org A and org B both claim the same GUID (claims lock nobody out).
    Operator 1 runs ``tenants confirm A --tenant-id GUID``; at the same moment operator 2 completes
    B's queued Microsoft order with ``provisioning complete --tenant-id GUID``. On PostgreSQL (READ
    COMMITTED) neither transaction sees the other's uncommitted confirmation, both pass the check
    and both commit: the tenant is confirmed for A and for B, and once Partner Center is configured
    both organisations' orders go into that one tenant (and B's account page shows it as B's).
    Expected: the second one is refused (a partial unique index on tenant_id where verified, or a
    lock on the tenant id) and GUID is confirmed for one organisation only.
    (SQLite serialises whole transactions, so the race is shown on PostgreSQL.)"""
    with Session(engine, expire_on_commit=False) as setup:
        plans = _microsoft(setup)
        org_a, owner_a = _org(setup, name="ООО «Ромашка»", tax_id="305111111")
        org_b, owner_b = _org(setup, "x@squat.uz", name="ООО «Сквоттер»", tax_id="305222222")
        mt.link(setup, owner_a, GUID, accepted=True, now=AT)
        mt.link(setup, owner_b, GUID, accepted=True, now=AT)
        f.topup(setup, org_b, "1000000")
        ordering.order(setup, owner_b, plans["basic-m"].id, 1, now=AT)  # queued, a claim is enough
        [task] = setup.exec(select(ProvisioningTask)).all()
        setup.commit()
    # operator 1 runs ``tenants confirm A``, operator 2 ``provisioning complete`` of B's order, at once
    # (threads: on PostgreSQL the unique index makes the second wait for the first, then refuses it)
    results = _race(engine, [
        lambda s: mt.confirm(s, org_a.id, GUID, operator="Оператор 1", now=AT + timedelta(hours=1)),
        lambda s: provisioning.complete(s, task.id, vendor_ref="X-1", operator="Оператор 2", tenant_id=GUID,
                                        now=AT + timedelta(hours=1)),
    ])
    outcome = [r for r in results if isinstance(r, Exception)]
    assert [getattr(r, "key", r) for r in outcome] == ["error.tenant.confirmed_elsewhere"], results
    with Session(engine) as check:
        confirmed = check.exec(select(MicrosoftTenant.org_id).where(
            MicrosoftTenant.tenant_id == GUID, col(MicrosoftTenant.verified_at).is_not(None))).all()
    assert len(confirmed) == 1, f"tenant {GUID} confirmed for organisations {sorted(confirmed)} ({outcome!r})"


# --- 2. a visitor's paid Microsoft order, its waiting action run again --------------------------------


def test_a_visitors_paid_microsoft_order_run_again_is_not_queued_and_reserved_twice(session, vendor_double):
    """A visitor's first Microsoft order always waits in the provisioning queue (the visitor has no
    tenant: ``_paid``/``tenant_later`` route it there, b29172b/8d365c8). Paid by invoice, the
    waiting action runs ``order(_paid=True)``, whose once-only guards are (a) the preview's
    confirmed quote and (b) ``ledger.find(op:<id>:charge)``.
    A visitor's action has NO quote (``quote_order`` by the system issues none:
    ``pending_action_for_order`` makes a bare operation id), and the queued route posts no
    ``op:<id>:charge`` entry (it reserves on a task): neither guard sees the first run. So the
    documented contract of ``complete_pending_action`` — "idempotent: calling it twice (a retried
    job) charges once" — fails on exactly this path: the action run again (a confirmation that
    raced a statement import, both seeing it ``waiting``; a crash between the order's commit and
    the action marked ``done``) creates a SECOND subscription and a second task reserving the
    price again. The visitor overpaid the transfer (credited in full), so the funds cover it;
    the operator, seeing two open orders, completes both and the visitor is charged twice for
    one order. Before the tenant step the same action went to the connector and (b) caught it;
    a signed-in customer's action is safe too (its preview's quote is marked confirmed).
    Expected: the second run is answered with the first one's result; one task, one reservation."""
    from noventiq_panel.services.billing import payments
    from noventiq_panel.services.subscriptions import guest_orders

    plans = _microsoft(session)
    f.usd_rate(session, date(2020, 1, 1))
    result = guest_orders.guest_order(session, email="ivan@newco.uz", name="Иван Петров", org_name="ООО «Новая»",
                                      tax_id="301234567", plan_id=plans["basic-m"].id, quantity=2, ip="10.0.0.1",
                                      now=AT)
    assert result.status == "waiting_payment"
    # the bank transfer carried twice the invoice (an over payment is credited in full)
    payments.confirm_payment(session, result.invoice_number, amount=str(result.invoice_amount * 2),
                             now=AT + timedelta(hours=1))
    payment = session.exec(select(Payment).where(Payment.number == result.invoice_number)).one()
    action = dict(payment.pending_action)
    assert action["status"] == "done"
    session.rollback()
    # the same waiting action run a second time (a retried job)
    again = None
    try:
        again = pending_actions.complete_pending_action(session, action, now=AT + timedelta(hours=1, minutes=1))
    except Exception as exc:  # noqa: BLE001 - a refusal would also keep it once
        again = exc
        session.rollback()
    subs = session.exec(select(Subscription).where(Subscription.org_id == result.org_id)).all()
    reserved = session.exec(select(func.coalesce(func.sum(ProvisioningTask.reserved), 0)).where(
        ProvisioningTask.org_id == result.org_id, ProvisioningTask.status == "open")).one()
    session.rollback()
    assert len(subs) == 1 and Decimal(reserved) == result.invoice_amount, (
        f"one paid order became {len(subs)} subscriptions with {reserved} reserved "
        f"(invoice {result.invoice_amount}; second run: {again!r})")
