"""Issue 14: Account → Activity — the organisation's audit trail, for every member, its own only,
filterable and exportable (cells neutralised)."""

from __future__ import annotations

import io
from datetime import date, datetime, timedelta, timezone

import pytest
from argon2 import PasswordHasher
from openpyxl import load_workbook

from noventiq_panel.models import Role
from noventiq_panel.services.core import audit
from noventiq_panel.services.core.authz import Actor
from noventiq_panel.services.core.errors import Forbidden, InvalidInput, NotFound
from noventiq_panel.services.identity import auth
from noventiq_panel.services.reporting import activity

from tests import factories as f

T0 = datetime(2026, 3, 10, 9, 0, tzinfo=timezone.utc)  # 14:00 in Tashkent


@pytest.fixture(autouse=True)
def fast_hasher(monkeypatch):
    monkeypatch.setattr(auth, "HASHER", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))


@pytest.fixture
def trail(session):
    org, other = f.org(session, name="ООО «Своя»"), f.org(session, name="ООО «Чужая»")
    owner = f.user(session, org, Role.OWNER, email="owner@own.uz", name="Олег",
                   password_hash=auth.hash_password("long enough 1"))
    finance = f.user(session, org, Role.FINANCE, email="fin@own.uz", name="Фаина")
    stranger = f.user(session, other, Role.OWNER, email="x@other.uz")
    auth.sign_in(session, "owner@own.uz", "long enough 1", ip="203.0.113.5", now=T0)
    audit.record(session, Actor(user_id=owner.id, org_id=org.id), "subscription.ordered", subscription_id=None,
                 created_at=T0 + timedelta(hours=1), plan="=HYPERLINK(\"http://evil\")")
    audit.record(session, Actor(user_id=owner.id, org_id=org.id), "budget.created", created_at=T0 + timedelta(days=2))
    audit.record(session, Actor(user_id=stranger.id, org_id=other.id), "budget.created", created_at=T0)
    session.commit()
    return org, owner, finance, other


def test_every_member_reads_their_own_organisations_trail_only(session, trail):
    org, owner, finance, other = trail
    rows, total = activity.list_activity(session, f.actor(finance, org))  # the read-only role too
    assert total == 3 and [r.action for r in rows] == ["budget.created", "subscription.ordered", "user.signed_in"]
    assert rows[2].ip == "203.0.113.5" and rows[2].user_name == "Олег"
    with pytest.raises(Forbidden):  # claiming another organisation
        activity.list_activity(session, Actor(user_id=finance.id, org_id=other.id))


def test_filters_by_period_category_and_member(session, trail):
    org, owner, finance, _other = trail
    actor = f.actor(owner, org)
    assert activity.list_activity(session, actor, category="sign_in")[1] == 1
    assert activity.list_activity(session, actor, category="organisation")[1] == 1
    assert activity.list_activity(session, actor, start=date(2026, 3, 11), end="2026-03-31")[1] == 1
    assert activity.list_activity(session, actor, user_id=finance.id)[1] == 0
    assert activity.list_activity(session, actor, user_id=str(owner.id))[1] == 3
    assert [name for _id, name in activity.members(session, actor)] == ["Олег"]


@pytest.mark.parametrize("kw", [{"category": "hacking"}, {"start": "yesterday"}, {"start": "2026-03-10", "end": "2026-03-01"},
                                {"start": "2020-01-01", "end": "2026-01-01"}, {"user_id": "1 OR 1=1"},
                                {"offset": -1}, {"limit": 100000}])
def test_bad_filters_get_a_clear_message(session, trail, kw):
    org, owner, _finance, _other = trail
    with pytest.raises((InvalidInput, NotFound)):  # a malformed member id is "not found", like a foreign one
        activity.list_activity(session, f.actor(owner, org), **kw)


def test_the_export_is_the_filtered_trail_with_neutralised_cells(session, trail):
    org, _owner, finance, _other = trail
    describe = lambda r: (r.action, str(r.details.get("plan", "")))  # noqa: E731
    name, data = activity.export_activity(session, f.actor(finance, org), "csv", describe, now=T0)
    text = data.decode("utf-8-sig")
    assert name == "activity-20260310.csv" and text.count("\r\n") == 4
    assert "'=HYPERLINK" in text and ",=HYPERLINK" not in text and "203.0.113.5" in text
    assert "ООО «Чужая»" not in text and "x@other.uz" not in text
    _name, data = activity.export_activity(session, f.actor(finance, org), "xlsx", describe, category="subscriptions")
    cells = [c.value for row in load_workbook(io.BytesIO(data)).active.iter_rows(min_row=2) for c in row]
    assert "subscription.ordered" in cells and not any(isinstance(c, str) and c.startswith("=") for c in cells)
    with pytest.raises(InvalidInput):
        activity.export_activity(session, f.actor(finance, org), "pdf", describe)
