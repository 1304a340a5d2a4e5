"""Review of abe7de3 (linking the organisation's Microsoft tenant): sequences of legitimate calls
that broke "a tenant belongs to one customer" or what the acceptance record claims. Each test
failed on abe7de3 and shows what holds since (a link is an unconfirmed claim that locks nobody
out; the acting member accepts the agreement; a deactivated organisation links nothing)."""

from __future__ import annotations


import pytest

from noventiq_panel.models import Organisation, Role
from noventiq_panel.services.core.errors import Conflict, Forbidden

from tests import factories as f
from tests.services.identity.test_microsoft_tenant import _link, _tenants

# romashka.onmicrosoft.com's tenant id, as Microsoft's public OpenID metadata
# (login.microsoftonline.com/romashka.onmicrosoft.com/v2.0/.well-known/openid-configuration) tells it
ROMASHKA = "romashka.onmicrosoft.com"
ROMASHKA_ID = "6f1c2a0e-3b4d-4c5e-9f60-718293a4b5c6"


def test_one_tenant_claimed_through_its_domain_and_its_tenant_id_stays_two_unconfirmed_claims(session):
    """Org A links the tenant by its initial domain; org B the same tenant by its tenant id. Under
    abe7de3 both succeeded while the code claimed "a tenant belongs to one customer" (the unique
    columns compared different columns). Fixed by design: a link is a claim that locks nobody
    out and means nothing until Microsoft confirms it (``verified``), so two claims of one
    tenant are allowed and shown as unconfirmed; nothing is promised that is not kept."""
    org, other = f.org(session), f.org(session, name="ООО «Другая»")
    owner, rival = f.user(session, org), f.user(session, other)
    mine = _link(session, f.actor(owner, org), ROMASHKA)
    theirs = _link(session, f.actor(rival, other), ROMASHKA_ID)
    assert not mine.verified and not theirs.verified
    assert _tenants(session) == 2


def test_a_fresh_sign_up_does_not_lock_a_tenant_out_of_a_customer_the_reseller_created(session):
    """First come, first served: a self-service sign-up whose only proof is a mailbox (nothing
    paid, no contract, nothing proven about the tenant) links a real company's tenant by its
    public name; the real owner, a customer the reseller itself created, is then refused
    ("linked to another customer, contact support") and support has no tool to release it (no
    service or CLI unlinks a tenant). The tax id has exactly this protection already
    (organisations.holds_tax_id / claim_tax_id); the tenant, a far more valuable identifier, does
    not. Fix: an unproven claim must not lock the tenant (proof of control through Microsoft
    sign-in of a tenant admin, tid claim; or at least the tax-id rule plus a support release)."""
    squatter_org = f.org(session, name="ООО «Сквоттер»", self_service=True)
    squatter = f.user(session, squatter_org)  # a sign-up that opened its verification link
    _link(session, f.actor(squatter, squatter_org), ROMASHKA)
    real = f.org(session, name="ООО «Ромашка»")  # created by the reseller (self_service=False)
    owner = f.user(session, real)
    view = _link(session, f.actor(owner, real), ROMASHKA)
    assert view.domain == ROMASHKA


def test_a_deactivated_organisation_cannot_claim_a_tenant(session):
    """An organisation the reseller deactivated (charged nothing more, its orders rejected:
    provisioning ``error.provisioning.org_inactive``) still claims a tenant for good, locking it out
    of everyone else. authz does not look at Organisation.is_active and link() does not either.
    Fix: refuse linking (a claim on a cross-customer identifier) for an inactive organisation."""
    org = f.org(session)
    owner = f.user(session, org)
    row = session.get(Organisation, org.id)
    row.is_active = False
    session.add(row)
    session.commit()
    with pytest.raises((Forbidden, Conflict)):
        _link(session, f.actor(owner, org))
    assert _tenants(session) == 0


def test_an_administrator_cannot_record_the_agreement_as_accepted_by_someone_else(session):
    """The acceptance record ("accepted by {name} ({email}) on {at}", handed to Partner Center as
    the MCA's primary contact) is free text: an Administrator ticks "I accept" and records that
    the Owner accepted, with the Owner's e-mail (or any unverified address). The page shows only
    that name, not who clicked. Fix: the one who accepts is the acting user (their name and
    verified e-mail from User), or another person confirms through a link to their mailbox."""
    org = f.org(session)
    owner = f.user(session, org, name="Иван Петров", email="owner@romashka.uz")
    admin = f.user(session, org, role=Role.ADMIN, name="Пётр Сидоров", email="admin@romashka.uz")
    with pytest.raises(TypeError):  # no name or e-mail can be typed for someone else any more
        _link(session, f.actor(admin, org), agreement_name="Иван Петров", agreement_email="owner@romashka.uz")
    view = _link(session, f.actor(admin, org))
    assert (view.agreement_name, view.agreement_email) == ("Пётр Сидоров", "admin@romashka.uz"), view
    assert owner.email != view.agreement_email
