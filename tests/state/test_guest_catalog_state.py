"""/catalog without a session: the visitor sees the catalog, cannot reach the signed-in order
handlers, and the guest dialog orders only after a preview, once per confirmation."""

from __future__ import annotations

from datetime import date

import pytest
from reflex.istate.data import ReflexURL, RouterData
from sqlalchemy import func
from sqlmodel import Session, select

from noventiq_panel.models import Organisation, Subscription, User
from noventiq_panel.state.catalog import CatalogState
from noventiq_panel.state.guest_catalog import GuestOrderState
from tests import factories

from tests.state.conftest import new_state


@pytest.fixture
def db(sqlite_engine):
    with Session(sqlite_engine, expire_on_commit=False) as s:
        plans = factories.catalog(s)
        factories.usd_rate(s, date(2020, 1, 1))
        yield s, plans


def count(s, model) -> int:
    n = s.exec(select(func.count()).select_from(model)).one()
    s.commit()
    return n


async def run(gen):
    if hasattr(gen, "__aiter__"):
        return [x async for x in gen]
    return gen


async def test_visitor_sees_the_catalog_and_orders_once_after_a_preview(db):
    s, plans = db
    cat = new_state(CatalogState)
    cat.router = RouterData(url=ReflexURL("http://localhost:3000/catalog"))
    await CatalogState.load.fn(cat)
    assert cat.mode == "guest" and cat.loaded and cat.count == 3
    # the signed-in order handlers stay closed to a visitor
    CatalogState.open_order.fn(cat, str(plans["basic-m"].id))
    await CatalogState.preview_order.fn(cat)
    assert cat.order_step == "form" and cat.order_error  # not signed in: refused, nothing priced
    cat.order_step = "confirm"
    await run(CatalogState.confirm_order.fn(cat))  # forged confirmation as a visitor
    assert cat.order_step != "done"
    await CatalogState.load.fn(cat)  # (a refused call resets the page states; the visitor reloads)
    assert count(s, Subscription) == 0

    g = await cat.get_state(GuestOrderState)
    await GuestOrderState.open_order.fn(g, "999999")
    assert not g.open
    await GuestOrderState.open_order.fn(g, str(plans["basic-trial"].id))
    assert g.open and g.is_trial
    for name, value in (("email", "new@guest.uz"), ("name", "Гость"), ("org_name", "ООО «Гость»"),
                        ("tax_id", "301234567"), ("quantity", "2"), ("is_admin", "1")):
        GuestOrderState.set_field.fn(g, name, value)
    assert "is_admin" not in g.form
    await run(GuestOrderState.confirm_order.fn(g))  # forged: no preview yet
    assert count(s, Organisation) == 0
    await GuestOrderState.preview_order.fn(g)
    assert g.step == "confirm" and g.preview["now"]
    await run(GuestOrderState.confirm_order.fn(g))
    await run(GuestOrderState.confirm_order.fn(g))  # a replay after done
    assert g.step == "done" and g.done["email"] == "new@guest.uz" and g.done["trial"]
    # a trial waits for the proven mailbox (the set-password link): the customer, not yet the trial
    assert (count(s, Organisation), count(s, User), count(s, Subscription)) == (1, 1, 0)
    assert "link" not in str(g.done) and "/reset/" not in str(g.get_delta())
