"""An order or licence increase waiting for a payment (the shortfall path).

When the balance does not cover an order or an increase, the page offers a shortfall invoice that
carries the operation as its ``Payment.pending_action`` (made here); once the invoice is paid,
``services.billing.payments`` calls :func:`complete_pending_action` (registered there with
``payments.on_payment_confirmed`` when this module is imported), which carries it out with every
rule checked again, at most once.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session

from noventiq_panel.models import Organisation
from noventiq_panel.services.billing import payments
from noventiq_panel.services.core import authz
from noventiq_panel.services.core.authz import Actor
from noventiq_panel.services.core.errors import DomainError, InvalidInput
from noventiq_panel.services.core.money import parse_quantity
from noventiq_panel.services.subscriptions import confirmation
from noventiq_panel.services.subscriptions.context import load_sub, utc_now
from noventiq_panel.services.subscriptions.licence_count import change_quantity
from noventiq_panel.services.subscriptions.ordering import order
from noventiq_panel.services.subscriptions.quotes import Outcome


def pending_action_for_order(actor: Actor, plan_id, quantity, *, trial_convert: bool = False,
                             quote_id: str | None = None) -> dict:
    """The ``Payment.pending_action`` of an order waiting for a shortfall invoice (see
    :func:`complete_pending_action`). Validates nothing but the shape; completion re-checks all.
    Its operation id is the preview's quote (server-issued), else a new one made here."""
    return {"type": "order", "version": 2, "org_id": actor.org_id, "user_id": actor.user_id,
            "plan_id": int(plan_id), "quantity": int(quantity), "trial_convert": bool(trial_convert),
            "operation_id": quote_id or confirmation.new_id()}


def pending_action_for_quantity(actor: Actor, sub_id, quantity, *, quote_id: str | None = None) -> dict:
    """The ``Payment.pending_action`` of a licence increase waiting for a shortfall invoice."""
    return {"type": "quantity", "version": 2, "org_id": actor.org_id, "user_id": actor.user_id,
            "subscription_id": int(sub_id), "quantity": int(quantity),
            "operation_id": quote_id or confirmation.new_id()}


def _action_actor(session: Session, org_id: int, user_id) -> Actor:
    """The user who asked, if still an Owner/Admin of the organisation; else the system."""
    if user_id is not None:
        candidate = Actor(user_id=int(user_id), org_id=org_id)
        try:
            authz.can_write(session, candidate)
            return candidate
        except DomainError:
            pass
    return Actor.system(org_id)


@payments.on_payment_confirmed
def complete_pending_action(session: Session, action: dict, now: datetime | None = None) -> Outcome:
    """Carry out the order or licence increase that waited for a paid shortfall invoice.

    ``action`` is what :func:`pending_action_for_order` / :func:`pending_action_for_quantity` made:

    - ``{"type": "order", "version": 2, "org_id": int, "user_id": int | None, "plan_id": int,
      "quantity": int, "trial_convert": bool, "operation_id": str}``
    - ``{"type": "quantity", "version": 2, "org_id": int, "user_id": int | None,
      "subscription_id": int, "quantity": int (the target count), "operation_id": str}``

    (Version 1 actions, made before operation ids, carry ``request_id``/``change_id``: they are
    completed under an operation id of their own.)

    It runs as the requesting user while they are still Owner/Admin, else as the system. It is
    idempotent: the money is keyed by the operation id, so calling it twice (a retried
    job) charges once; an increase already reached (the count is at or above the target) does
    nothing and returns ``already_done``. Every rule is checked again: a domain error
    (InsufficientFunds when the balance was spent meanwhile, Conflict, NotFound...) means it cannot
    be carried out now, nothing was changed, and the payment simply stays on the balance. Commits.
    """
    if not isinstance(action, dict) or action.get("type") not in ("order", "quantity"):
        raise InvalidInput("unknown pending action", field="action", key="error.invalid_pending_action")
    try:
        org_id = int(action["org_id"])
    except (KeyError, TypeError, ValueError):
        raise InvalidInput("pending action without organisation", field="action",
                           key="error.invalid_pending_action") from None
    now = utc_now(now)
    actor = _action_actor(session, org_id, action.get("user_id"))
    operation_id = action.get("operation_id") or confirmation.new_id()
    if action["type"] == "order":
        return order(session, actor, action.get("plan_id"), action.get("quantity"),
                     trial_convert=bool(action.get("trial_convert", False)), quote_id=operation_id, now=now,
                     _paid=True)
    access = authz.can_read(session, actor)
    sub = load_sub(session, access, action.get("subscription_id"), fresh=True)
    target = parse_quantity(action.get("quantity"), minimum=1)
    if sub.quantity >= target:
        session.rollback()
        org = session.get(Organisation, org_id)
        return Outcome(sub.id, "quantity", org.billing_currency, sub.status, sub.quantity, already_done=True)
    return change_quantity(session, actor, sub.id, target, quote_id=operation_id, now=now, _paid=True)
