"""Review of 29c1d87 (Microsoft tenant step, second part): sequences of legitimate calls that get a
customer another customer's Microsoft tenant confirmed (and orders placed into it), or that have a
new tenant created at Microsoft twice, or that keep the new tenant's one-time administrator password
in the page state. Each test FAILS on 29c1d87 for the reason its docstring gives.

The directory is the instant TEST DOUBLE (tests/doubles/instant_vendor.py, the autouse
``vendor_double``), which keeps the reseller's customers as Partner Center does."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from argon2 import PasswordHasher
from sqlmodel import select

from noventiq_panel.models import MicrosoftTenant, ProvisioningTask
from noventiq_panel.services.core.errors import Conflict, DomainError, NotFound
from noventiq_panel.services.identity import auth
from noventiq_panel.services.identity import microsoft_tenant as mt
from noventiq_panel.services.subscriptions import ordering, provisioning
from noventiq_panel.state.account import AccountState  # imported here: Reflex registers states at import

from tests import factories as f
from tests.services.identity.test_microsoft_tenant_order import _count, _microsoft
from tests.state.conftest import new_state, signed_in

AT = datetime(2026, 12, 6, 9, tzinfo=timezone.utc)
GUID = "6f1c2a0e-3b4d-4c5e-9f60-718293a4b5c6"
PW = "pw-123456789"
DETAILS = dict(address="г. Ташкент, ул. Амира Темура, 1", phone="+998 71 200 00 00")


def _org(session, name, email):
    org = f.org(session, name, **DETAILS)
    owner = f.user(session, org, name="Иван Петров", email=email)
    return org, f.actor(owner, org)


def _try(call):
    try:
        return call()
    except DomainError as exc:
        return exc


# --- 1. a directory lookup confirms whoever names a reseller's customer ----------------------------


def test_naming_another_customers_tenant_does_not_confirm_it_for_the_one_who_names_it(session, vendor_double):
    """link() confirms a claim as soon as Partner Center knows the tenant *among the reseller's
    customers* (``get_customer``). That proves the tenant is the reseller's customer — not that the
    claimant controls it. Org A creates romashka.onmicrosoft.com through the panel (confirmed, A's);
    a self-service sign-up B then links "romashka.onmicrosoft.com" (a public name) and gets it
    *confirmed* as its own, with A's tenant id; B's acceptance of the agreement is even sent to
    Microsoft for A's tenant in B's member's name. The module docstring promises a claim "means
    nothing until Microsoft confirms it" and "no 'taken' answer to probe with": here the lookup is
    both the confirmation and the probe. Fix: a directory lookup may confirm only a tenant that
    no other organisation holds and that the claimant proved control of (or leave it to the
    operator); never hand another customer's tenant id back."""
    org_a, owner_a = _org(session, "ООО «Ромашка»", "boss@romashka.uz")
    a = mt.create(session, owner_a, "romashka", accepted=True, now=AT).tenant
    assert a.verified
    org_b, owner_b = _org(session, "ООО «Сквоттер»", "x@squat.uz")
    sent_before = len(vendor_double.agreements)
    theirs = mt.link(session, owner_b, "romashka.onmicrosoft.com", accepted=True, now=AT)
    assert not theirs.verified, "B got A's tenant confirmed as its own"
    assert theirs.tenant_id != a.tenant_id, "B was handed A's tenant id"
    assert len(vendor_double.agreements) == sent_before, "B's acceptance was sent to Microsoft for A's tenant"


def test_a_customer_cannot_order_into_another_customers_tenant(session, vendor_double):
    """The consequence of the above: "a connector orders only into a confirmed tenant" is meant to
    ensure an order lands in the customer's own tenant. Org B links A's tenant by its public domain,
    is confirmed by the lookup, and its first Microsoft order goes straight to the connector with
    ``customer_tenant_id`` = A's tenant (Partner Center: a cart for A's customer). No operator ever
    looks at it (it is not in ``tenants list``). Expected: B's order is refused (its tenant is not
    confirmed) and nothing is provisioned into A's tenant."""
    plans = _microsoft(session)
    _org_a, owner_a = _org(session, "ООО «Ромашка»", "boss@romashka.uz")
    a = mt.create(session, owner_a, "romashka", accepted=True, now=AT).tenant
    org_b, owner_b = _org(session, "ООО «Сквоттер»", "x@squat.uz")
    f.topup(session, org_b, "1000000")
    mt.link(session, owner_b, "romashka.onmicrosoft.com", accepted=True, now=AT)
    outcome = _try(lambda: ordering.order(session, owner_b, plans["basic-m"].id, 1, now=AT))
    into_a = [r for r in vendor_double.requests if r.customer_tenant_id == a.tenant_id]
    assert into_a == [], f"B's order was provisioned into A's tenant ({outcome!r})"
    assert isinstance(outcome, Conflict) and outcome.key == "error.tenant.unconfirmed", outcome


def test_linking_a_tenant_id_does_not_reveal_whose_it_is(session, vendor_double):
    """A probe: any Owner/Administrator links a tenant GUID and the panel answers with the tenant's
    domain (``found.domain`` replaces what was typed) and whether it is one of the reseller's
    customers (``verified``) — the "taken"-style answer the first review removed. The view of org B
    shows A's initial domain, which B never typed and the GUID alone does not disclose.
    Expected: B's claim shows only what B typed, unconfirmed."""
    vendor_double.add_customer("romashka.onmicrosoft.com", GUID)  # a reseller's customer (org A's tenant)
    _org_b, owner_b = _org(session, "ООО «Сквоттер»", "x@squat.uz")
    view = mt.link(session, owner_b, GUID, accepted=True, now=AT)
    assert view.domain == "", f"B learned the domain of tenant {GUID}: {view.domain}"
    assert not view.verified


# --- 2. the operator confirms one tenant for two organisations --------------------------------------


def test_the_operator_cannot_confirm_for_a_second_organisation_a_tenant_confirmed_for_another(session, manual_vendors):
    """No directory: A's tenant GUID is confirmed for A (``tenants confirm``). Org B claims the same
    GUID (allowed: claims lock nobody out) and orders Microsoft; the task note tells the operator
    "claimed by the customer: check it is our customer" — it is (it is A's), so the operator
    completes B's order with ``--tenant-id GUID``. ``confirm_locked`` never looks at other
    organisations: the same tenant is now confirmed for A and B, B's account page shows it
    confirmed, and once Partner Center is configured B's orders go straight into A's tenant.
    Expected: Conflict (the tenant is confirmed for another organisation), B's order still open."""
    plans = _microsoft(session)
    org_a, owner_a = _org(session, "ООО «Ромашка»", "boss@romashka.uz")
    mt.link(session, owner_a, GUID, accepted=True, now=AT)
    mt.confirm(session, org_a.id, GUID, operator="Оператор", now=AT)
    org_b, owner_b = _org(session, "ООО «Сквоттер»", "x@squat.uz")
    f.topup(session, org_b, "1000000")
    mt.link(session, owner_b, GUID, accepted=True, now=AT)
    ordering.order(session, owner_b, plans["basic-m"].id, 1, now=AT)
    [task] = session.exec(select(ProvisioningTask)).all()
    session.rollback()
    result = _try(lambda: provisioning.complete(session, task.id, vendor_ref="X-1", operator="Оператор",
                                                tenant_id=GUID, now=AT + timedelta(hours=1)))
    assert isinstance(result, Conflict), f"GUID confirmed for org {org_a.id} and org {org_b.id} ({result!r})"
    assert not mt.tenant_of(session, owner_b).verified


# --- 3. a tenant created at Microsoft and recorded nowhere ------------------------------------------


def test_a_tenant_microsoft_created_is_recorded_even_when_the_agreement_call_fails(session, vendor_double,
                                                                                    monkeypatch):
    """create(): Partner Center creates the tenant, then ``_send_agreement`` posts the agreement.
    That call catches only VendorRefused/VendorUnavailable/Throttled; Partner Center also answers
    404 (NotFound, code 60003: a customer created a moment ago is not yet visible), 409 (Conflict,
    busy) or 600051 (InvalidInput, phone). Any of these rolls the whole transaction back: the tenant
    exists at Microsoft, the panel records nothing, the one-time administrator password is lost;
    the customer's retry is told the domain "is taken", and the next prefix creates a SECOND
    tenant at Partner Center. The docstring promises "a creation ... never created twice".
    Expected: the created tenant is kept (confirmed, the agreement left for the operator) and no
    second tenant is ever created."""
    org, owner = _org(session, "ООО «Ромашка»", "boss@romashka.uz")

    def not_visible_yet(tenant_id, *args):
        raise NotFound("customer not found at Partner Center (60003)", key="error.vendor_customer_not_found")

    monkeypatch.setattr(vendor_double, "accept_customer_agreement", not_visible_yet)
    first = _try(lambda: mt.create(session, owner, "romashka", accepted=True, now=AT))
    again = _try(lambda: mt.create(session, owner, "romashka", accepted=True, now=AT))
    other = _try(lambda: mt.create(session, owner, "romashka2", accepted=True, now=AT))
    created = [d.domain_prefix for d in vendor_double.created]
    assert created == ["romashka"], f"tenants created at Partner Center: {created} ({first!r}, {again!r}, {other!r})"
    assert _count(session, MicrosoftTenant) == 1


# --- 4. the one-time administrator password stays in the page state ------------------------------


async def test_the_new_tenants_administrator_password_is_not_kept_in_the_account_pages_state(session, vendor_double,
                                                                                             monkeypatch):
    """Created.admin_password is documented as "shown to the customer once and kept nowhere". The
    account page puts it into the public state var ``tenant_admin`` and nothing ever clears it
    (only the catalogue's order dialog resets it): it stays in the state manager (Redis in
    production) for the tab's lifetime and is shown again on every later visit of /account in
    that tab. Expected: the next load of the page no longer holds the password."""
    monkeypatch.setattr(auth, "HASHER", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    org = f.org(session, "ООО «Ромашка»", **DETAILS)
    f.user(session, org, name="Иван Петров", email="boss@romashka.uz", password_hash=auth.hash_password(PW))
    state = new_state(AccountState)
    signed_in(state, session, "boss@romashka.uz", PW)
    AccountState.set_tenant_mode.fn(state, "new")
    AccountState.set_tenant_prefix.fn(state, "romashka")
    async for _ in AccountState.submit_tenant.fn(state, {"accepted": "on"}):
        pass
    assert len(vendor_double.created) == 1
    assert "admin@romashka.onmicrosoft.com" in state.tenant_admin  # shown once, as it should be
    await AccountState.load.fn(state)  # the member comes back to the account page later
    assert state.tenant_admin == "", f"the tenant administrator's password is still held: {state.tenant_admin!r}"
