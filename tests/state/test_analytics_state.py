"""/analytics state: filters from the URL, what the view exposes, forged events refused, downloads."""

from __future__ import annotations

from datetime import date

import pytest
from reflex.istate.data import ReflexURL, RouterData
from sqlmodel import Session

from noventiq_panel.models import Role
from noventiq_panel.services.identity import auth
from noventiq_panel.services.usage import usage_import
from noventiq_panel.state.analytics import AnalyticsState
from tests import factories
from tests.services.analytics_helpers import DATA, REF_A, REF_B, rate, spend, sub, utc

from tests.state.conftest import events, is_error_toast, is_redirect_to_login, new_state, signed_in

PW = "correct-horse-1"


@pytest.fixture
def db(sqlite_engine):
    with Session(sqlite_engine, expire_on_commit=False) as s:
        yield s


@pytest.fixture
def world(db):
    plans = factories.catalog(db)
    a = factories.org(db, "ООО «Альфа»", tax_id="300000011")
    b = factories.org(db, "ООО «Бета»", tax_id="300000022")
    h = auth.hash_password(PW)
    factories.user(db, a, Role.OWNER, email="owner@a.example", password_hash=h)
    factories.user(db, a, Role.FINANCE, email="finance@a.example", password_hash=h)
    factories.user(db, b, Role.OWNER, email="owner@b.example", password_hash=h)
    azure = sub(db, a, plans["azure-d"], "Azure Prod", REF_A)
    basic = sub(db, a, plans["basic-m"], "M365 Basic")
    foreign = sub(db, b, plans["azure-d"], "Azure B", REF_B)
    spend(db, a, "1000.50", utc(2025, 1, 5), subscription=basic)
    spend(db, a, "250.25", utc(2025, 1, 20), kind="usage", subscription=azure)
    spend(db, b, "99999.00", utc(2025, 1, 20), kind="usage", subscription=foreign)
    rate(db, date(2025, 1, 1))
    usage_import.import_file(db, DATA / "focus_1_0.csv")
    db.commit()
    return dict(a=a, b=b, azure=azure, basic=basic, foreign=foreign)


def at(state, query: str):
    state.router = RouterData(url=ReflexURL(f"http://localhost:3000/analytics?{query}"))


async def loaded(db, email: str, query: str = "period=custom&from=2025-01-01&to=2025-01-31"):
    state = new_state(AnalyticsState)
    signed_in(state, db, email, PW)
    at(state, query)
    result = await AnalyticsState.load.fn(state)
    return state, result


def redirect_target(result) -> str:
    text = " ".join(repr(e) for e in events(result))
    assert "/analytics?" in text, text
    return text


async def test_load_reads_the_filters_from_the_url_and_shows_the_ledger_figures(db, world):
    state, result = await loaded(db, "finance@a.example")
    assert not events(result)
    assert state.loaded and state.period == "custom"
    assert (state.date_from, state.date_to) == ("2025-01-01", "2025-01-31")
    assert state.total.replace("\xa0", " ") == "1 250,75 сум"
    assert {r["label"] for r in state.structure_rows} == {"Microsoft 365 Business Basic", "Microsoft Azure"}
    assert state.structure_fig["data"] and state.dynamics_fig["data"]
    # plain dicts as Plotly takes them; the page's component adds the theme's template
    assert state.structure_fig["data"][0]["type"] == "pie" and state.dynamics_fig["data"][0]["type"] == "bar"
    assert "template" not in state.dynamics_fig["layout"]
    # IaaS detail: the organisation's usage only (14.095678 USD at 12 000), never the other's.
    assert state.has_iaas and state.iaas_total.replace("\xa0", " ") == "169 148,14 сум"
    assert state.iaas_fig["data"] and state.movers
    assert "99" not in state.total
    # view data are strings, ids are not the ORM objects
    assert all(isinstance(v, str) for row in state.structure_rows for v in row.values())


async def test_a_filter_change_navigates_to_a_bookmarkable_url(db, world):
    state, _ = await loaded(db, "owner@a.example")
    target = redirect_target(await AnalyticsState.set_filter.fn(state, "product", "3"))
    assert "period=custom" in target and "from=2025-01-01" in target and "product=3" in target
    target = redirect_target(await AnalyticsState.set_period.fn(state, "last_month"))
    assert "period=last_month" in target and "from=" not in target
    # The URL brings the view back: product filter applied.
    state2, _ = await loaded(db, "owner@a.example", "period=custom&from=2025-01-01&to=2025-01-31&model=payg")
    assert state2.model == "payg" and state2.total.replace("\xa0", " ") == "250,25 сум"


async def test_forged_filter_values_are_refused(db, world):
    state, _ = await loaded(db, "owner@a.example")
    for name, value in (("product", "1 OR 1=1"), ("nonsense", "1"), ("subscription", "-5"),
                        ("service", "x" * 300)):
        result = await AnalyticsState.set_filter.fn(state, name, value)
        assert is_error_toast(result) and "/analytics?" not in repr(events(result))
    assert is_error_toast(await AnalyticsState.set_period.fn(state, "forever"))
    assert is_error_toast(await AnalyticsState.apply_custom.fn(state, {"from": "2025-02-30", "to": "2025-03-01"}))
    # dimension switches ignore unknown values
    await AnalyticsState.set_structure_dim.fn(state, "password_hash")
    assert state.structure_dim == "product"
    await AnalyticsState.set_structure_dim.fn(state, ["vendor"])
    assert state.structure_dim == "vendor" and state.structure_rows[0]["label"] == "Microsoft"


async def test_another_organisations_subscription_in_the_url_shows_nothing_of_it(db, world):
    state, result = await loaded(db, "owner@a.example",
                                 f"period=custom&from=2025-01-01&to=2025-01-31&subscription={world['foreign'].id}")
    assert "toast" in repr(events(result))  # the filter was dropped with a warning
    assert state.subscription == "" and "99" not in state.total.replace("\xa0", "")


async def test_bad_dates_in_the_url_fall_back_to_this_month(db, world):
    state, result = await loaded(db, "owner@a.example", "period=custom&from=2025-13-01&to=x")
    assert state.loaded and state.period == "this_month"
    assert "toast" in repr(events(result))


async def test_download_what_is_shown(db, world):
    state, _ = await loaded(db, "finance@a.example")
    result = await AnalyticsState.download.fn(state, "xlsx", "overview")
    [event] = events(result)
    text = repr(event)
    assert "analytics_2025-01-01_2025-01-31.xlsx" in text
    result = await AnalyticsState.download.fn(state, "csv", "iaas")
    assert "iaas-usage_2025-01-01_2025-01-31.csv" in repr(events(result)[0])
    assert is_error_toast(await AnalyticsState.download.fn(state, "exe", "overview"))
    assert is_error_toast(await AnalyticsState.download.fn(state, "csv", "passwords"))


async def test_signed_out_goes_to_sign_in(db, world):
    state = new_state(AnalyticsState)
    at(state, "period=year")
    assert is_redirect_to_login(await AnalyticsState.load.fn(state))
    assert not state.loaded and state.total == ""
    assert is_redirect_to_login(await AnalyticsState.download.fn(state, "csv", "overview"))


async def test_iaas_charts_are_drawn_once_their_section_comes_near_the_screen(db, world):
    state, _ = await loaded(db, "owner@a.example")
    assert state.iaas_charts is False and state.iaas_fig["data"]  # the data is there, the drawing waits
    for forged in ("true", 1, None, {"x": 1}):
        AnalyticsState.show_iaas_charts.fn(state, forged)
        assert state.iaas_charts is False
    AnalyticsState.show_iaas_charts.fn(state, True)
    assert state.iaas_charts is True
