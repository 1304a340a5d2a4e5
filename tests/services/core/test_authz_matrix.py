"""Who may call what: every subscription, catalog and budget operation x {Owner, Administrator,
Financial manager, a user of another organisation, nobody}. Only the expected cells succeed, and a
refused call leaves the database exactly as it was.

"stranger" is the other organisation's owner acting in their own organisation on our ids (NotFound:
a foreign id looks missing); "intruder" is the same user claiming our organisation (Forbidden:
not a member). Organisation-wide operations (list, order, catalog) succeed for the stranger but
only ever see or touch the stranger's own organisation.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable

import pytest
from sqlmodel import select

from noventiq_panel.models import Budget, Subscription
from noventiq_panel.services.usage import budgets
from noventiq_panel.services.catalog import catalog
from noventiq_panel.services.subscriptions import cancellation, licence_count, lifecycle, listing, ordering, plan_change
from noventiq_panel.services.core.errors import Forbidden, NotAuthenticated, NotFound

from tests.services.subs_world import NOW, World, counts, world

D = timedelta(days=1)


def _sub(w: World, code: str = "basic-m", qty: int = 1, at=NOW) -> int:
    return ordering.order(w.session, w.a_owner, w.plan(code).id, qty, now=at).subscription_id


def _trial(w: World) -> int:
    """A trial row made directly: the once-per-product rule would stop a second real order."""
    plan = w.plan("basic-trial")
    sub = Subscription(org_id=w.org.id, plan_id=plan.id, status="trial", quantity=1, is_trial=True,
                       term_start=NOW, term_end=NOW + 30 * D, trial_ends_at=NOW + 30 * D, auto_renew=False)
    w.session.add(sub)
    w.session.commit()
    return sub.id


def _suspended(w: World) -> int:
    sid = _sub(w)
    lifecycle.suspend(w.session, w.a_owner, sid, now=NOW)
    return sid


def _scheduled(w: World) -> int:
    sid = _sub(w, qty=2, at=NOW - 8 * D)
    return licence_count.change_quantity(w.session, w.a_owner, sid, 1, now=NOW).scheduled_change_id


def _budgeted(w: World) -> int:
    sid = _sub(w, "azure-d")
    budgets.set_budget(w.session, w.a_owner, sid, amount="1000", recipient_user_ids=[w.owner.id])
    return sid


@dataclass(frozen=True)
class Op:
    name: str
    write: bool
    setup: Callable[[World], Any]
    call: Callable[[Any, Any, Any, World], Any]
    scope: str = "object"  # "object": works on one of our ids; "org": organisation-wide


OPS = [
    # reads
    Op("list_subscriptions", False, lambda w: _sub(w), lambda s, a, x, w: listing.list_subscriptions(s, a), "org"),
    Op("get_subscription", False, _sub, lambda s, a, x, w: listing.get_subscription(s, a, x, now=NOW)),
    Op("history", False, _sub, lambda s, a, x, w: listing.history(s, a, x)),
    Op("quote_order", False, lambda w: w.plan("basic-m").id, lambda s, a, x, w: ordering.quote_order(s, a, x, 2, now=NOW),
       "org"),
    Op("quote_quantity_change", False, _sub, lambda s, a, x, w: licence_count.quote_quantity_change(s, a, x, 3, now=NOW)),
    Op("quote_plan_change", False, _sub, lambda s, a, x, w: plan_change.quote_plan_change(s, a, x, "std-m", now=NOW)),
    Op("quote_cancel", False, _sub, lambda s, a, x, w: cancellation.quote_cancel(s, a, x, now=NOW)),
    Op("list_catalog", False, lambda w: None, lambda s, a, x, w: catalog.list_catalog(s, a, now=NOW), "org"),
    Op("get_budget", False, _budgeted, lambda s, a, x, w: budgets.get_budget(s, a, x)),
    Op("budget_form", False, _budgeted, lambda s, a, x, w: budgets.budget_form(s, a, x)),
    # writes
    Op("order", True, lambda w: w.plan("basic-m").id, lambda s, a, x, w: ordering.order(s, a, x, 1, now=NOW), "org"),
    Op("change_quantity", True, _sub, lambda s, a, x, w: licence_count.change_quantity(s, a, x, 2, now=NOW)),
    Op("set_auto_renew", True, _sub, lambda s, a, x, w: lifecycle.set_auto_renew(s, a, x, False, now=NOW)),
    Op("set_trial_convert", True, _trial, lambda s, a, x, w: lifecycle.set_trial_convert(s, a, x, True, now=NOW)),
    Op("suspend", True, _sub, lambda s, a, x, w: lifecycle.suspend(s, a, x, now=NOW)),
    Op("resume", True, _suspended, lambda s, a, x, w: lifecycle.resume(s, a, x, now=NOW + D)),
    Op("change_plan", True, _sub, lambda s, a, x, w: plan_change.change_plan(s, a, x, "std-m", now=NOW)),
    Op("cancel", True, _sub, lambda s, a, x, w: cancellation.cancel(s, a, x, now=NOW)),
    Op("cancel_scheduled_change", True, _scheduled,
       lambda s, a, x, w: cancellation.cancel_scheduled_change(s, a, x, now=NOW)),
    Op("set_budget", True, lambda w: _sub(w, "azure-d"),
       lambda s, a, x, w: budgets.set_budget(s, a, x, amount="500", recipient_user_ids=[],
                                              extra_emails=["cfo@romashka.uz"])),
    Op("remove_budget", True, _budgeted, lambda s, a, x, w: budgets.remove_budget(s, a, x)),
]

ACTORS = ("anonymous", "intruder", "stranger", "finance", "admin", "owner")


def _actor(w: World, who: str):
    return {"anonymous": None, "intruder": w.a_intruder, "stranger": w.a_stranger, "finance": w.a_finance,
            "admin": w.a_admin, "owner": w.a_owner}[who]


def _expected(op: Op, who: str):
    if who == "anonymous":
        return NotAuthenticated
    if who == "intruder":
        return Forbidden
    if who == "finance" and op.write:
        return Forbidden
    if who == "stranger" and op.scope == "object":
        return NotFound
    return None  # succeeds


@pytest.mark.parametrize("op", OPS, ids=[o.name for o in OPS])
def test_authorisation_matrix(world, op):
    w = world
    w.topup("100000000")
    w.topup("100000000", org=w.other_org)
    ours = set()
    for who in ACTORS:
        arg = op.setup(w)
        w.session.rollback()
        ours = {s.id for s in w.session.exec(select(Subscription).where(Subscription.org_id == w.org.id)).all()}
        before = counts(w.session)
        expected = _expected(op, who)
        if expected is not None:
            with pytest.raises(expected):
                op.call(w.session, _actor(w, who), arg, w)
            assert counts(w.session) == before, f"{op.name} by {who} changed the database"
            continue
        result = op.call(w.session, _actor(w, who), arg, w)
        if who == "stranger":  # organisation-wide: only the stranger's own organisation
            if op.name == "list_subscriptions":
                assert not {r["id"] for r in result[0]} & ours
            if op.name == "order":
                assert w.session.get(Subscription, result.subscription_id).org_id == w.other_org.id
            after = counts(w.session)
            assert after["balances"][w.org.id] == before["balances"][w.org.id]
            assert [s for s in after["subs"] if s[0] in ours] == [s for s in before["subs"] if s[0] in ours]
        elif op.write:
            assert counts(w.session) != before, f"{op.name} by {who} did nothing"


def test_matrix_covers_every_public_operation():
    """A new public operation must be added to the matrix above."""
    import inspect

    covered = {o.name for o in OPS}
    public = {name for module in (listing, ordering, licence_count, lifecycle, plan_change, cancellation)
              for name, fn in inspect.getmembers(module, inspect.isfunction)
              if fn.__module__ == module.__name__ and not name.startswith("_")
              and list(inspect.signature(fn).parameters)[:2] == ["session", "actor"]}
    public |= {name for name, fn in inspect.getmembers(budgets, inspect.isfunction)
               if fn.__module__ == budgets.__name__ and list(inspect.signature(fn).parameters)[:2] == ["session", "actor"]}
    public |= {"list_catalog"}
    assert public - covered == set()


def test_budget_of_another_organisation_is_not_even_readable(world):
    w = world
    w.topup("100000", w.other_org)  # the pay-as-you-go deposit
    sid = ordering.order(w.session, w.a_stranger, w.plan("azure-d").id, 1, now=NOW).subscription_id
    budgets.set_budget(w.session, w.a_stranger, sid, amount="100", recipient_user_ids=[w.stranger.id])
    with pytest.raises(NotFound):
        budgets.get_budget(w.session, w.a_owner, sid)
    assert len(w.session.exec(select(Budget)).all()) == 1
