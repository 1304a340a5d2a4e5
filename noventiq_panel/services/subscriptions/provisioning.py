"""The provisioning queue: orders and changes of a vendor without a connector, carried out at the
vendor by an operator (``noventiq-panel provisioning ...``).

Which vendors: those with no connector registered (``services/vendors/connector.py``), Microsoft
too while Partner Center is not configured. For them:

- **An order** makes the subscription ``pending`` ("awaiting activation") and an open task. Its
  first period's price is **reserved**, not charged: the task holds it (``reserved``) and
  ``ledger.available`` is less by it, so the same money cannot pay for anything else. The operator
  orders at the vendor and **completes** the task with the vendor's reference: the reserved amount
  is charged then, once (ledger key ``provisioning:<task>:charge``), the term starts at activation
  (the customer pays for a whole period from the day the licence exists) and the customer is told
  by e-mail. **Rejected** (a reason the customer sees) or **cancelled by the customer** while open:
  the reservation is released, nothing is charged, the subscription is cancelled.
- **A change** (quantity, plan, suspend, resume, cancel) of such a subscription is a task for the
  operator to carry out at the vendor (auto-renewal is the panel's own for them: its renewal job
  asks the vendor to cancel at the term's end; a connector is told of the setting). What gives money back waits for the vendor:
  a decrease of seats inside their cancellation window and a cancellation with a refund change
  nothing when asked (the task holds ``refund: true``, the seats asked back and the quantity
  asked for); the customer keeps the seats and the subscription until the vendor has taken them
  back, and **completing** the task does the change then — the seats go, refunded for the rest of
  the billing period from that day (the seats were the customer's until then), counting the
  seats that were inside their window when the customer asked. **Rejected**: nothing changes
  and nothing is refunded; the reason is shown. While such a task is open, the subscription takes
  no other change of seats, plan or status (:func:`require_nothing_waiting`). Other changes
  (increases, charged at once; plan, suspend, resume, auto-renew) are done on the panel's side
  when the customer asks, as for any vendor.

Every step is audited; the operator's name is in the audit event and on the task. Two operators
completing one task at once: the task row is locked (``FOR UPDATE``; SQLite's write lock) and its
status checked, so one of them completes it and the other is told it is done already; the charge's
key makes a second charge impossible anyway. A task left open longer than
``PANEL_PROVISIONING_OVERDUE_HOURS`` is reported once a day to the support address
(:func:`report_overdue`, the ``provisioning_overdue`` job).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, col, select

from noventiq_panel.config import get_settings
from noventiq_panel.models import (
    Organisation,
    Plan,
    Product,
    ProvisioningTask,
    Subscription,
    TaskStatus,
    Vendor,
)
from noventiq_panel.services.core import audit, clock, ledger, proration
from noventiq_panel.services.catalog import catalog
from noventiq_panel.services.core.authz import Access, Actor
from noventiq_panel.services.core.errors import Conflict, InvalidInput, NotFound
from noventiq_panel.services.identity import microsoft_tenant
from noventiq_panel.services.notify import notifications
from noventiq_panel.services.subscriptions import lapse, licences
from noventiq_panel.services.subscriptions.context import (
    Ctx, S, atomic, cancel_pending, current_period, describe, mail_org, post_money, post_refund,
)
from noventiq_panel.services.vendors import connector as vendor_api

ACTIONS = ("order", "quantity", "plan", "suspend", "resume", "cancel", "auto_renew")
MAIL_ROLES = ("owner", "admin")
MAX_REASON = 1000
MAX_REF = 255


def is_manual(vendor_code: str | None) -> bool:
    return vendor_api.connector_for(vendor_code) is None


# -- asking -------------------------------------------------------------------------------------

def request_order(session: Session, *, access: Access, org: Organisation, sub: Subscription, plan: Plan,
                  vendor: Vendor, reserved: Decimal, plan_amount: Decimal, fx_date: date,
                  now: datetime, request_key: str | None = None) -> ProvisioningTask:
    """An order of a manual vendor: the open task holding ``reserved`` (the caller has checked the
    funds under the organisation's lock). ``request_key``: the order's operation (one task per
    operation: :func:`order_task`). Flushes only."""
    task = ProvisioningTask(
        org_id=org.id, subscription_id=sub.id, vendor_code=vendor.code, action="order",
        params={"plan": plan.code, "quantity": sub.quantity, "trial": bool(sub.is_trial)},
        reserved=reserved, currency=org.billing_currency, plan_amount=plan_amount, fx_date=fx_date,
        requested_at=now, requested_by=access.user_id, request_key=request_key)
    session.add(task)
    session.flush()
    audit.record(session, access.actor, "provisioning.requested", subscription_id=sub.id, task_id=task.id,
                 task_action="order", amount=str(reserved), currency=org.billing_currency, created_at=now)
    return task


def order_task(session: Session, request_key: str) -> ProvisioningTask | None:
    """The queued order of this operation, if it was queued already."""
    return session.exec(select(ProvisioningTask).where(ProvisioningTask.request_key == request_key)).first()


def tell_vendor(session: Session, sub: Subscription, vendor_code: str, action: str, *, now: datetime,
                requested_by: int | None = None, **params: Any) -> ProvisioningTask | None:
    """Tell the vendor of a change of ``sub``: its connector's call, or — a manual vendor — a task
    for the operator (returned). ``action``: quantity (``quantity=``), plan (``plan_code=``),
    suspend, resume, cancel, auto_renew (``enabled=``). A suspension and a resumption that meet in
    the queue cancel out (the open one is closed as ``superseded``, no task is added: nothing is to
    be done at the vendor). Flushes only."""
    if action not in ACTIONS[1:]:
        raise ValueError(f"unknown vendor action {action!r}")
    conn = vendor_api.connector_for(vendor_code)
    if conn is not None:
        if action == "quantity":
            conn.change_quantity(sub.vendor_ref, params["quantity"])
        elif action == "plan":
            conn.change_plan(sub.vendor_ref, params["plan_code"])
        elif action == "suspend":
            conn.suspend(sub.vendor_ref)
        elif action == "resume":
            conn.resume(sub.vendor_ref)
        elif action == "cancel":
            conn.cancel(sub.vendor_ref)
        elif action == "auto_renew":
            conn.set_auto_renew(sub.vendor_ref, params["enabled"])
        return None
    opposite = {"suspend": "resume", "resume": "suspend"}.get(action)
    if opposite is not None:
        pending = session.exec(select(ProvisioningTask).where(
            ProvisioningTask.subscription_id == sub.id, ProvisioningTask.action == opposite,
            ProvisioningTask.status == TaskStatus.OPEN)).first()
        if pending is not None:
            pending.status, pending.done_at, pending.done_by = TaskStatus.CANCELLED, now, "superseded"
            session.add(pending)
            audit.record(session, Actor(requested_by, sub.org_id) if requested_by else Actor.system(sub.org_id),
                         "provisioning.cancelled", subscription_id=sub.id, task_id=pending.id, superseded_by=action,
                         created_at=now)
            return None
    task = ProvisioningTask(org_id=sub.org_id, subscription_id=sub.id, vendor_code=vendor_code, action=action,
                            params={k: v for k, v in params.items() if v is not None},
                            requested_at=now, requested_by=requested_by)
    session.add(task)
    session.flush()
    audit.record(session, Actor(requested_by, sub.org_id) if requested_by else Actor.system(sub.org_id),
                 "provisioning.requested", subscription_id=sub.id, task_id=task.id, task_action=action,
                 created_at=now, **{k: v for k, v in params.items() if v is not None})
    return task


def refund_waits(vendor_code: str | None) -> bool:
    """Whether a refund of this vendor's subscription waits for the vendor's confirmation."""
    return is_manual(vendor_code)


def ask_take_back(session: Session, ctx: Ctx, *, seats: int, quantity: int) -> ProvisioningTask:
    """A decrease by ``seats`` to ``quantity`` that waits for the vendor (nothing changes yet)."""
    return tell_vendor(session, ctx.sub, ctx.vendor.code, "quantity", now=ctx.now, requested_by=ctx.access.user_id,
                       quantity=quantity, from_quantity=ctx.sub.quantity, seats=seats, refund=True)


def ask_cancel(session: Session, ctx: Ctx) -> ProvisioningTask:
    """A cancellation with a refund that waits for the vendor (nothing changes yet)."""
    return tell_vendor(session, ctx.sub, ctx.vendor.code, "cancel", now=ctx.now, requested_by=ctx.access.user_id,
                       refund=True)


def waiting_refund(session: Session, sub_id: int) -> ProvisioningTask | None:
    """The open task of ``sub_id`` whose change waits for the vendor's confirmation, if any."""
    for task in session.exec(select(ProvisioningTask).where(
            ProvisioningTask.subscription_id == sub_id, ProvisioningTask.status == TaskStatus.OPEN,
            col(ProvisioningTask.action).in_(("quantity", "cancel")))).all():
        if (task.params or {}).get("refund"):
            return task
    return None


def require_nothing_waiting(session: Session, sub_id: int) -> None:
    """Conflict while a decrease or cancellation of ``sub_id`` waits for the vendor: another
    change would be priced on seats the customer may no longer have."""
    if waiting_refund(session, sub_id) is not None:
        raise Conflict("a change of this subscription waits for the vendor's confirmation",
                       key="error.provisioning.waiting")


def open_order(session: Session, sub_id: int) -> ProvisioningTask | None:
    return session.exec(select(ProvisioningTask).where(
        ProvisioningTask.subscription_id == sub_id, ProvisioningTask.action == "order",
        ProvisioningTask.status == TaskStatus.OPEN)).first()


def cancel_order(session: Session, access: Access, sub: Subscription, now: datetime) -> ProvisioningTask | None:
    """The customer cancels a subscription whose order is still open: the task is cancelled (its
    reservation released). The caller holds the organisation's lock. Flushes only."""
    task = open_order(session, sub.id)
    if task is None:
        return None
    task.status, task.done_at, task.done_by = TaskStatus.CANCELLED, now, "customer"
    session.add(task)
    audit.record(session, access.actor, "provisioning.cancelled", subscription_id=sub.id, task_id=task.id,
                 created_at=now)
    return task


# -- the operator -------------------------------------------------------------------------------

@dataclass(frozen=True)
class TaskView:
    id: int
    org_id: int
    org_name: str
    subscription_id: int
    subscription_name: str
    vendor_code: str
    action: str
    params: dict
    status: str
    reserved: Decimal
    currency: str
    requested_at: datetime
    done_at: datetime | None
    done_by: str
    vendor_ref: str
    reason: str
    tenant: str = ""  # a Microsoft task: the organisation's tenant, as the operator must handle it


def _tenant_note(session: Session, t: ProvisioningTask, org: Organisation | None) -> str:
    if org is None or not microsoft_tenant.required_for(t.vendor_code):
        return ""
    view = microsoft_tenant.tenant_of_org(session, org.id)
    if view is None:
        return "none yet: the customer links or asks for it on the account page"
    name = view.domain or view.tenant_id
    if view.verified:
        return f"{name} ({view.tenant_id}), confirmed"
    what = (f"NEW: create {name} for {org.name!r}, tax id {org.tax_id}, {org.address}, phone {org.phone}"
            if view.is_new else f"{name}, claimed by the customer: check that they control it "
            "(their administrator accepted our reseller invitation)")
    return (f"{what}; agreement accepted by {view.agreement_name} <{view.agreement_email}> "
            f"{view.agreement_accepted_at:%Y-%m-%d %H:%M} UTC; complete with --tenant-id")


def _view(session: Session, t: ProvisioningTask) -> TaskView:
    org = session.get(Organisation, t.org_id)
    sub = session.get(Subscription, t.subscription_id)
    return TaskView(id=t.id, org_id=t.org_id, org_name=org.name if org else "", subscription_id=t.subscription_id,
                    subscription_name=(sub.name if sub else ""), vendor_code=t.vendor_code, action=t.action,
                    params=dict(t.params or {}), status=t.status, reserved=t.reserved, currency=t.currency,
                    requested_at=t.requested_at, done_at=t.done_at, done_by=t.done_by, vendor_ref=t.vendor_ref,
                    reason=t.reason, tenant=_tenant_note(session, t, org) if t.action == "order" else "")


def count_tasks(session: Session, *, status: str | None = TaskStatus.OPEN) -> int:
    """How many tasks ``list_tasks`` would list without its limit."""
    q = select(func.count()).select_from(ProvisioningTask)
    if status is not None:
        q = q.where(ProvisioningTask.status == status)
    total = session.exec(q).one()
    session.commit()
    return int(total)


def list_tasks(session: Session, *, status: str | None = TaskStatus.OPEN, limit: int = 200) -> list[TaskView]:
    """The queue, oldest first (``status`` None: every task, newest first); at most ``limit``
    (``count_tasks`` says how many there are)."""
    q = select(ProvisioningTask)
    if status is not None:
        if status not in {s.value for s in TaskStatus}:
            raise InvalidInput(f"unknown status {status!r}", field="status", key="error.provisioning.bad_status")
        q = q.where(ProvisioningTask.status == status).order_by(col(ProvisioningTask.requested_at),
                                                               col(ProvisioningTask.id))
    else:
        q = q.order_by(col(ProvisioningTask.id).desc())
    rows = session.exec(q.limit(limit)).all()
    out = [_view(session, t) for t in rows]
    session.commit()
    return out


def _task_id(raw) -> int:
    try:
        value = int(str(raw).strip())
    except (TypeError, ValueError):
        raise NotFound("no such task", key="error.provisioning.not_found") from None
    if value <= 0 or value > 2**62:
        raise NotFound("no such task", key="error.provisioning.not_found")
    return value


def get_task(session: Session, task_id) -> TaskView:
    task = session.get(ProvisioningTask, _task_id(task_id))
    if task is None:
        raise NotFound("no such task", key="error.provisioning.not_found")
    view = _view(session, task)
    session.commit()
    return view


def _locked_open(session: Session, task_id: int) -> tuple[ProvisioningTask, Organisation]:
    """The task, locked with its organisation, still open (else Conflict with what it is)."""
    task = session.get(ProvisioningTask, task_id)
    if task is None:
        raise NotFound("no such task", key="error.provisioning.not_found")
    org = ledger.lock_organisation(session, task.org_id)
    task = session.exec(select(ProvisioningTask).where(ProvisioningTask.id == task_id)
                        .with_for_update().execution_options(populate_existing=True)).one()
    if task.status != TaskStatus.OPEN:
        raise Conflict(f"task {task_id} is {task.status} already", key="error.provisioning.not_open",
                       status=task.status)
    return task, org


def _locked_step(session: Session, task_id: int
                 ) -> tuple[ProvisioningTask, Organisation, Subscription, Plan, Product]:
    """An operator's step on a task: the task, locked with its organisation and still open, and
    its subscription, plan and product (run it inside ``atomic``)."""
    task, org = _locked_open(session, task_id)
    sub = session.get(Subscription, task.subscription_id)
    plan = session.get(Plan, sub.plan_id)
    return task, org, sub, plan, session.get(Product, plan.product_id)


def _operator(name: str) -> str:
    name = (name or "").strip()
    if not name:
        raise InvalidInput("the operator's name is required", field="operator", key="error.provisioning.operator")
    return name[:255]


def complete(session: Session, task_id, *, vendor_ref: str = "", operator: str, tenant_id: str = "",
             now: datetime | None = None) -> TaskView:
    """The operator has done the task at the vendor. An order: the subscription becomes active
    with ``vendor_ref`` (required), its term starting now, the reserved amount is charged once and
    the licences' cancellation window opens; the customer is mailed. A Microsoft order also
    confirms the organisation's tenant the operator ordered into (``tenant_id``, required while the
    tenant is a claim). Commits; nothing changes on error."""
    now = clock.aware(now) if now else clock.utcnow()
    operator = _operator(operator)
    vendor_ref = (vendor_ref or "").strip()
    if len(vendor_ref) > MAX_REF:
        raise InvalidInput("vendor reference too long", field="vendor_ref", key="error.provisioning.vendor_ref")
    tid = _task_id(task_id)
    refunded = Decimal("0.00")
    with atomic(session):
        task, org, sub, plan, product = _locked_step(session, tid)
        if not org.is_active:  # a deactivated customer is charged nothing more: reject the task
            raise Conflict(f"organisation {org.id} is deactivated; reject the task",
                           key="error.provisioning.org_inactive")
        if task.action == "order":
            if not vendor_ref:
                raise InvalidInput("an order needs the vendor's reference", field="vendor_ref",
                                   key="error.provisioning.vendor_ref")
            if microsoft_tenant.required_for(task.vendor_code):
                _confirm_tenant(session, org, tenant_id, operator, now)
            _activate(session, task, org, sub, plan, product, vendor_ref, now)
        else:
            if vendor_ref and not sub.vendor_ref:
                sub.vendor_ref = vendor_ref
            if (task.params or {}).get("refund"):
                refunded = _confirmed(session, task, org, sub, now)
        task.status, task.done_at, task.done_by = TaskStatus.COMPLETED, now, operator
        task.vendor_ref = vendor_ref or sub.vendor_ref or ""
        session.add_all([task, sub])
        audit.record(session, Actor.system(org.id), "provisioning.completed", subscription_id=sub.id, task_id=task.id,
                     task_action=task.action, operator=operator, vendor_ref=task.vendor_ref, created_at=now)
        mail_org(session, org.id, MAIL_ROLES, "provisioning_done",
                 {"product": product.name, "action": task.action, "subscription_id": sub.id,
                  "quantity": sub.quantity, "amount": task.reserved if task.action == "order" else None,
                  "refunded": refunded or None, "currency": org.billing_currency},
                 dedupe_key=f"provisioning_done:{task.id}", now=now)
    return get_task(session, tid)


def _confirm_tenant(session: Session, org: Organisation, tenant_id: str, operator: str, now: datetime) -> None:
    """A Microsoft order went into the organisation's tenant: confirmed now, if it was a claim."""
    if not (tenant_id or "").strip():
        if microsoft_tenant.tenant_id_of(session, org.id):
            return
        raise InvalidInput("a Microsoft order confirms the organisation's tenant: give its tenant id",
                           field="tenant_id", key="error.provisioning.tenant_id")
    microsoft_tenant.confirm_locked(session, org.id, tenant_id, operator=operator, now=now)


def _confirmed(session: Session, task: ProvisioningTask, org: Organisation, sub: Subscription,
               now: datetime) -> Decimal:
    """The vendor took back what the customer asked (``ask_take_back``/``ask_cancel``): do it now,
    refunding the seats for the rest of the current billing period from today. The seats counted
    are those inside their cancellation window when the customer asked (the vendor confirmed the
    request made then). Refused — the operator rejects the task and the customer asks again, on the
    rules of the day — when the subscription is no longer in the state the request was made in:
    ended, suspended for want of funds, a payment due or in grace (its days would go unpaid:
    ``lapse``). A cancellation asked while the customer had paused it may complete paused.
    Returns the refund."""
    info = catalog.get_plan(session, sub.plan_id, active_only=False)
    paused = task.action == "cancel" and sub.status == S.SUSPENDED and sub.suspend_reason == "customer"
    if (sub.status != S.ACTIVE and not paused) or sub.grace_until is not None \
            or lapse.due(sub, info.plan, now) is not None:
        raise Conflict(f"subscription {sub.id} is {sub.status} now (or a payment is due); reject the task",
                       key="error.provisioning.not_active", status=sub.status)
    actor = Actor(task.requested_by, org.id) if task.requested_by else Actor.system(org.id)
    ctx = Ctx(Access(actor, None), org, sub, info.plan, info.product, info.vendor, now)
    asked_at = clock.aware(task.requested_at)
    in_window = licences.in_window(licences.held(session, sub.id), asked_at)
    period = current_period(sub, info.plan, org, now)
    old = sub.quantity
    if task.action == "cancel":
        refunded = Decimal("0.00")
        if in_window >= old > 0:
            refunded = post_refund(session, ctx, seats=old, period=period, key=f"provisioning:{task.id}:refund",
                                   what="отмена, подтверждена производителем, возврат остатка", action="cancel")
        cancel_pending(session, sub.id)
        licences.empty(session, [sub.id])
        sub.status, sub.cancelled_at, sub.auto_renew = S.CANCELLED, now, False
        sub.next_billing_at = None
        return refunded
    # a decrease: the seats above the quantity asked for (a renewal may have taken some already)
    seats = min(max(old - int(task.params["quantity"]), 0), in_window)
    if seats == 0:
        return Decimal("0.00")
    licences.take_back(session, sub.id, seats, asked_at)
    sub.quantity = old - seats
    return post_refund(session, ctx, seats=seats, period=period, key=f"provisioning:{task.id}:refund",
                       what=f"уменьшение {old} → {sub.quantity}, подтверждено производителем, возврат",
                       action="decrease")


def _activate(session: Session, task: ProvisioningTask, org: Organisation, sub: Subscription, plan: Plan,
              product: Product, vendor_ref: str, now: datetime) -> None:
    if sub.status != S.PENDING:
        raise Conflict(f"subscription {sub.id} is {sub.status}", key="error.provisioning.not_pending")
    tz = org.timezone
    sub.vendor_ref = vendor_ref
    sub.activated_at = sub.term_start = now
    if sub.is_trial:
        sub.status = S.TRIAL
        sub.trial_ends_at = sub.term_end = proration.trial_end(now, plan.trial_days, tz)
        return
    sub.status = S.ACTIVE
    if plan.billing_type == "payg":
        return
    sub.term_end = proration.term_end(now, plan.term, tz)
    period = proration.billing_period(now, sub.term_end, plan.term, plan.billing_frequency, now, tz)
    sub.next_billing_at = proration.next_period_start(period, sub.term_end)
    licences.add(session, sub.id, sub.quantity, now, plan.cancellation_window_hours, "purchase")
    if task.reserved > 0:
        post_money(session, org=org, sub=sub, plan=plan, kind="charge", plan_amount=task.plan_amount,
                   rate_day=task.fx_date, key=f"provisioning:{task.id}:charge",
                   description=describe(product, plan, f"заказ, {sub.quantity} шт."), quantity=sub.quantity,
                   now=now, period=(period.start, period.end), user_id=task.requested_by,
                   meta={"action": "order", "plan": plan.code, "provisioning_task": task.id})


def reject(session: Session, task_id, *, reason: str, operator: str, now: datetime | None = None) -> TaskView:
    """The vendor refused. An order: the subscription is cancelled and its reservation released
    (nothing was charged). ``reason`` is shown to the customer and mailed. Commits."""
    now = clock.aware(now) if now else clock.utcnow()
    operator = _operator(operator)
    reason = (reason or "").strip()
    if not reason or len(reason) > MAX_REASON:
        raise InvalidInput("a reason (up to 1000 characters) is required", field="reason",
                           key="error.provisioning.reason")
    tid = _task_id(task_id)
    with atomic(session):
        task, org, sub, _plan, product = _locked_step(session, tid)
        if task.action == "order" and sub.status == S.PENDING:
            sub.status = S.CANCELLED
            sub.cancelled_at = now
            sub.auto_renew = False
            sub.next_billing_at = None
        task.status, task.done_at, task.done_by, task.reason = TaskStatus.REJECTED, now, operator, reason
        session.add_all([task, sub])
        audit.record(session, Actor.system(org.id), "provisioning.rejected", subscription_id=sub.id, task_id=task.id,
                     task_action=task.action, operator=operator, reason=reason, created_at=now)
        mail_org(session, org.id, MAIL_ROLES, "provisioning_rejected",
                 {"product": product.name, "action": task.action, "subscription_id": sub.id, "reason": reason},
                 dedupe_key=f"provisioning_rejected:{task.id}", now=now)
    return get_task(session, tid)


# -- for the customer's pages -------------------------------------------------------------------

def open_tasks_of(session: Session, sub_id: int) -> list[dict[str, Any]]:
    """What is waiting at the vendor for this subscription (the caller checked access)."""
    rows = session.exec(select(ProvisioningTask).where(
        ProvisioningTask.subscription_id == sub_id, ProvisioningTask.status == TaskStatus.OPEN)
        .order_by(col(ProvisioningTask.id))).all()
    return [{"id": t.id, "action": t.action, "requested_at": t.requested_at, "reserved": t.reserved,
             "currency": t.currency, "params": dict(t.params or {})} for t in rows]


def last_rejection(session: Session, sub_id: int) -> dict[str, Any] | None:
    t = session.exec(select(ProvisioningTask).where(
        ProvisioningTask.subscription_id == sub_id, ProvisioningTask.status == TaskStatus.REJECTED)
        .order_by(col(ProvisioningTask.id).desc())).first()
    return None if t is None else {"action": t.action, "reason": t.reason, "at": t.done_at}


# -- the daily report ---------------------------------------------------------------------------

def report_overdue(session: Session, now: datetime | None = None) -> int:
    """Mail the support address the tasks open longer than ``PANEL_PROVISIONING_OVERDUE_HOURS``,
    once a day (a second run the same day mails nothing). Returns how many were reported."""
    now = clock.aware(now) if now else clock.utcnow()
    settings = get_settings()
    limit = now - timedelta(hours=settings.provisioning_overdue_hours)
    tasks = session.exec(select(ProvisioningTask).where(
        ProvisioningTask.status == TaskStatus.OPEN, ProvisioningTask.requested_at <= limit)
        .order_by(col(ProvisioningTask.requested_at))).all()
    due = [t for t in tasks if t.reported_at is None or now - t.reported_at >= timedelta(hours=23)]
    if not due:
        session.rollback()
        return 0
    lines = []
    for t in due:
        v = _view(session, t)
        lines.append({"id": v.id, "org": v.org_name, "subscription": v.subscription_name, "action": v.action,
                      "vendor": v.vendor_code, "requested_at": v.requested_at,
                      "hours": int((now - v.requested_at).total_seconds() // 3600)})
        t.reported_at = now
        session.add(t)
    notifications.enqueue(session, kind="provisioning_overdue", to_email=settings.support_email,
                          context={"tasks": lines, "count": len(lines)},
                          dedupe_key=f"provisioning_overdue:{now:%Y-%m-%d}", now=now)
    session.commit()
    return len(due)
