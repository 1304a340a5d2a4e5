"""The organisation's Microsoft tenant and the Microsoft Customer Agreement: who may link it, what a
tenant reference is, that a claim locks nobody out (no squatting, no "taken" answer to probe with),
one tenant per organisation also when two requests race, and that bad input changes nothing."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from sqlmodel import func, select

from noventiq_panel.models import AuditEvent, MicrosoftTenant, Role
from noventiq_panel.services.core.errors import Conflict, Forbidden, InvalidInput
from noventiq_panel.services.identity import microsoft_tenant as mt

from tests import factories as f
from tests.services.subscriptions.test_subscriptions import _race

AT = datetime(2026, 12, 6, 9, tzinfo=timezone.utc)
GUID = "6f1c2a0e-3b4d-4c5e-9f60-718293a4b5c6"


def _link(session, actor, reference="romashka.onmicrosoft.com", **kw):
    values = dict(accepted=True, now=AT)
    values.update(kw)
    return mt.link(session, actor, reference, **values)


def _tenants(session) -> int:
    n = session.exec(select(func.count()).select_from(MicrosoftTenant)).one()
    session.rollback()
    return n


def test_an_owner_links_the_tenant_and_the_acceptance_is_recorded_and_shown_to_every_role(session):
    org = f.org(session)
    owner = f.user(session, org, name="Иван Петров", email="boss@romashka.uz")
    finance = f.user(session, org, role=Role.FINANCE)
    view = _link(session, f.actor(owner, org), "  Romashka.OnMicrosoft.com ")
    assert (view.domain, view.tenant_id, view.verified) == ("romashka.onmicrosoft.com", "", False)
    # the one who accepts is the acting member: their name and verified e-mail
    assert (view.agreement_name, view.agreement_email, view.agreement_accepted_at) == (
        "Иван Петров", "boss@romashka.uz", AT)
    assert view.linked_by == "Иван Петров"
    assert mt.tenant_of(session, f.actor(finance, org)) == view
    assert mt.has_tenant(session, org.id)
    [event] = session.exec(select(AuditEvent).where(AuditEvent.action == "microsoft.tenant_linked")).all()
    assert event.org_id == org.id and event.details["agreement_email"] == "boss@romashka.uz"


def test_a_tenant_id_is_a_reference_too():
    assert mt.parse_reference(GUID.upper()) == (None, GUID)
    assert mt.parse_reference("a-b1.onmicrosoft.com") == ("a-b1.onmicrosoft.com", None)
    for odd in ("+" + GUID[1:], "{" + GUID[:-2] + "}", GUID.replace("-", "") + "abcd", "00000000-0000-0000-0000-000000000000"):
        with pytest.raises(InvalidInput):  # only the canonical spelling; never the nil GUID
            mt.parse_reference(odd)


@pytest.mark.parametrize("raw", ["", "   ", None, 42, "romashka", "romashka.com", "romashka.onmicrosoft.com.evil.com",
                                 "-x.onmicrosoft.com", "a b.onmicrosoft.com", "x" * 64 + ".onmicrosoft.com",
                                 "6f1c2a0e-3b4d-4c5e-9f60-718293a4b5cZ", "sub.romashka.onmicrosoft.com",
                                 "romashka.onmicrosoft.com\u202e", "x" * 300])
def test_what_is_not_a_tenant_reference_is_refused_and_nothing_is_written(session, raw):
    org = f.org(session)
    owner = f.user(session, org)
    with pytest.raises(InvalidInput) as info:
        _link(session, f.actor(owner, org), raw)
    assert info.value.key == "error.tenant.reference" and _tenants(session) == 0


@pytest.mark.parametrize("accepted", [False, "yes", "on", 1, None])
def test_the_agreement_must_be_accepted_explicitly(session, accepted):
    org = f.org(session)
    owner = f.user(session, org)
    with pytest.raises(InvalidInput) as info:
        _link(session, f.actor(owner, org), accepted=accepted)
    assert info.value.key == "error.tenant.agreement" and _tenants(session) == 0


def test_the_financial_manager_and_other_customers_cannot_link(session):
    org, other = f.org(session), f.org(session, name="ООО «Другая»")
    finance = f.user(session, org, role=Role.FINANCE)
    stranger = f.user(session, other)
    with pytest.raises(Forbidden):
        _link(session, f.actor(finance, org))
    with pytest.raises(Forbidden):
        _link(session, f.actor(stranger, org))  # naming an organisation they are no member of
    assert _tenants(session) == 0


def test_a_claim_locks_nobody_out_and_an_organisation_has_one_tenant(session):
    org, other = f.org(session), f.org(session, name="ООО «Другая»")
    owner, rival = f.user(session, org), f.user(session, other)
    _link(session, f.actor(owner, org), GUID)
    # another customer claiming the same tenant is neither refused nor told of the first claim:
    # neither claim is confirmed, and Microsoft decides (no squatting, no "taken" answer to probe)
    theirs = _link(session, f.actor(rival, other), GUID.upper())
    assert (theirs.tenant_id, theirs.verified) == (GUID, False)
    with pytest.raises(Conflict) as info:  # a second tenant for the same organisation
        _link(session, f.actor(owner, org), "second.onmicrosoft.com")
    assert info.value.key == "error.tenant.already_linked"
    assert _tenants(session) == 2


def test_one_organisation_linking_twice_at_once_keeps_one_tenant(engine, session):
    org = f.org(session)
    a = f.actor(f.user(session, org), org)
    b = f.actor(f.user(session, org, role=Role.ADMIN), org)
    session.rollback()
    results = _race(engine, [lambda s: _link(s, a, "first.onmicrosoft.com"),
                             lambda s: _link(s, b, "second.onmicrosoft.com")])
    assert sum(isinstance(r, mt.TenantView) for r in results) == 1, results
    assert [r.key for r in results if isinstance(r, Conflict)] == ["error.tenant.already_linked"], results
    assert _tenants(session) == 1
