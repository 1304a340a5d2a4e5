"""The Microsoft tenant in the first Microsoft order: a new tenant asked for (its domain checked and
created through the tenant directory, or left to the operator), an existing one confirmed by the
directory or by the operator, and orders that go only where the tenant allows. The directory here
is the instant TEST DOUBLE (tests/doubles/instant_vendor.py, the autouse ``vendor_double``); the
Partner Center connector against its HTTP DOUBLE is at the end. Nothing here met Microsoft."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from click.testing import CliRunner
from sqlmodel import func, select

from noventiq_panel.models import AuditEvent, LedgerEntry, MicrosoftTenant, ProvisioningTask, Role, Subscription, Vendor
from noventiq_panel.services.core.errors import Conflict, Forbidden, InvalidInput, NotFound, VendorUnavailable
from noventiq_panel.services.identity import microsoft_tenant as mt
from noventiq_panel.services.subscriptions import ordering, provisioning
from noventiq_panel.services.vendors import connector

from tests import factories as f

AT = datetime(2026, 12, 6, 9, tzinfo=timezone.utc)
GUID = "6f1c2a0e-3b4d-4c5e-9f60-718293a4b5c6"
DETAILS = dict(tax_id="305123456", address="г. Ташкент, ул. Амира Темура, 1", phone="+998 71 200 00 00")


def _org(session, email="boss@romashka.uz", **kw):
    org = f.org(session, **{**DETAILS, **kw})
    owner = f.user(session, org, name="Иван Петров", email=email)
    return org, f.actor(owner, org)


def _microsoft(session) -> dict:
    """The factories' catalogue, its vendor being Microsoft's code (``connector.MICROSOFT``)."""
    plans = f.catalog(session)
    vendor = session.exec(select(Vendor)).one()
    vendor.code = connector.MICROSOFT
    session.add(vendor)
    session.commit()
    return plans


def _count(session, model) -> int:
    n = session.exec(select(func.count()).select_from(model)).one()
    session.rollback()
    return n


# --- a new tenant ---------------------------------------------------------------------------------


def test_a_new_tenant_is_checked_created_with_the_organisations_details_and_confirmed(session, vendor_double):
    org, owner = _org(session)
    assert mt.domain_status(session, owner, "Romashka2") == "available"
    assert mt.domain_status(session, owner, "contoso") == "taken"
    created = mt.create(session, owner, " Romashka2 ", accepted=True, now=AT)
    view = created.tenant
    assert (view.domain, view.verified, view.is_new, view.agreement_confirmed) == (
        "romashka2.onmicrosoft.com", True, True, True)
    assert view.tenant_id in vendor_double.customers
    [sent] = vendor_double.created
    assert (sent.domain_prefix, sent.company_name, sent.tax_id, sent.phone, sent.email, sent.city) == (
        "romashka2", org.name, "305123456", "+998 71 200 00 00", "boss@romashka.uz", "Ташкент")
    assert (sent.first_name, sent.last_name) == ("Иван", "Петров")
    # the administrator account Microsoft made is returned once and kept nowhere
    assert created.admin_user == "admin@romashka2.onmicrosoft.com" and created.admin_password
    [event] = session.exec(select(AuditEvent).where(AuditEvent.action == "microsoft.tenant_created")).all()
    assert created.admin_password not in str(event.details) and event.details["verified"] is True
    assert vendor_double.agreements[0][:4] == (view.tenant_id, "Иван", "Петров", "boss@romashka.uz")
    # now it is taken, also for another customer, who is told so by the directory
    other, rival = _org(session, "it@other.uz", name="ООО «Другая»", tax_id="305999999")
    with pytest.raises(InvalidInput) as info:
        mt.create(session, rival, "romashka2", accepted=True, now=AT)
    assert info.value.key == "error.tenant.domain_taken"
    assert len(vendor_double.created) == 1 and _count(session, MicrosoftTenant) == 1


@pytest.mark.parametrize("prefix", ["", "ro-mashka", "romashka.com", "ромашка", "x" * 64, None, 7, "a b"])
def test_a_bad_domain_prefix_is_refused_before_asking_anyone(session, vendor_double, prefix):
    _org_, owner = _org(session)
    for call in (lambda: mt.create(session, owner, prefix, accepted=True, now=AT),
                 lambda: mt.domain_status(session, owner, prefix)):
        with pytest.raises(InvalidInput) as info:
            call()
        assert info.value.key == "error.tenant.prefix"
    assert vendor_double.calls == [] and _count(session, MicrosoftTenant) == 0


@pytest.mark.parametrize("missing", ["tax_id", "address", "phone"])
def test_microsoft_needs_the_tax_id_address_and_phone_for_a_new_tenant(session, vendor_double, missing):
    _org_, owner = _org(session, **{missing: ""})
    with pytest.raises(InvalidInput) as info:
        mt.create(session, owner, "romashka", accepted=True, now=AT)
    assert info.value.key == "error.tenant.details_missing" and missing in info.value.params["missing"]
    assert vendor_double.created == [] and _count(session, MicrosoftTenant) == 0


def test_the_financial_manager_asks_for_nothing_and_checks_nothing(session, vendor_double):
    org, _owner = _org(session)
    finance = f.actor(f.user(session, org, role=Role.FINANCE), org)
    for call in (lambda: mt.create(session, finance, "romashka", accepted=True, now=AT),
                 lambda: mt.domain_status(session, finance, "romashka")):
        with pytest.raises(Forbidden):
            call()
    assert vendor_double.calls == [] and _count(session, MicrosoftTenant) == 0


class _Silent:
    """A directory whose creation never answers (a timeout after Microsoft may have created it)."""

    def __init__(self, inner):
        self.inner, self.creates = inner, 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def domain_available(self, prefix):
        return self.inner.domain_available(prefix)

    def create_customer(self, details):
        self.creates += 1
        self.inner.create_customer(details)
        raise VendorUnavailable("no answer")

    def get_customer(self, key):
        return self.inner.get_customer(key)

    def accept_customer_agreement(self, *args):
        return self.inner.accept_customer_agreement(*args)


def test_a_creation_without_an_answer_is_kept_for_the_operator_and_never_repeated(session, vendor_double):
    silent = _Silent(vendor_double)
    for name in ("provision", "change_quantity", "change_plan", "suspend", "resume", "cancel", "set_auto_renew"):
        setattr(silent, name, getattr(vendor_double, name))
    connector.register(connector.MICROSOFT, silent)
    try:
        org, owner = _org(session)
        created = mt.create(session, owner, "romashka", accepted=True, now=AT)
        assert (created.tenant.verified, created.tenant.is_new, created.admin_user) == (False, True, "")
        with pytest.raises(Conflict):  # one tenant per organisation: no second creation
            mt.create(session, owner, "romashka", accepted=True, now=AT)
        assert silent.creates == 1
        [claim] = mt.unconfirmed(session)
        assert (claim.org_id, claim.domain, claim.is_new) == (org.id, "romashka.onmicrosoft.com", True)
    finally:
        connector.unregister(connector.MICROSOFT)


def test_without_a_directory_the_operator_creates_the_tenant(session, manual_vendors):
    org, owner = _org(session)
    assert mt.domain_status(session, owner, "romashka") == "unknown"
    created = mt.create(session, owner, "romashka", accepted=True, now=AT)
    assert (created.tenant.verified, created.tenant.is_new, created.tenant.tenant_id) == (False, True, "")
    claim = mt.confirm(session, org.id, GUID.upper(), operator="Оператор", now=AT + timedelta(hours=2))
    assert (claim.tenant_id, claim.domain) == (GUID, "romashka.onmicrosoft.com")
    assert mt.tenant_of(session, owner).verified and mt.unconfirmed(session) == []
    # confirmed once: the same id again is no change, another id is refused
    mt.confirm(session, org.id, GUID, operator="Оператор")
    with pytest.raises(Conflict):
        mt.confirm(session, org.id, "11111111-2222-4333-8444-555555555555", operator="Оператор")
    for bad in ("", "not-a-guid", "00000000-0000-0000-0000-000000000000"):
        with pytest.raises(InvalidInput):
            mt.confirm(session, org.id, bad, operator="Оператор")
    with pytest.raises(NotFound):
        mt.confirm(session, 10**9, GUID, operator="Оператор")


# --- an existing tenant ---------------------------------------------------------------------------


def test_an_existing_tenant_stays_a_claim_even_when_the_directory_knows_it(session, vendor_double):
    """Being one of the reseller's customers does not show that this customer controls the tenant."""
    vendor_double.add_customer("romashka.onmicrosoft.com", GUID)
    _org_, owner = _org(session)
    view = mt.link(session, owner, "Romashka.onmicrosoft.com", accepted=True, now=AT)
    assert (view.tenant_id, view.verified, view.agreement_confirmed) == ("", False, False)
    assert vendor_double.calls == []  # not even asked: the answer would tell whose tenant it is


def test_an_existing_tenant_the_directory_does_not_know_stays_a_claim(session, vendor_double):
    _org_, owner = _org(session)
    view = mt.link(session, owner, "unknown.onmicrosoft.com", accepted=True, now=AT)
    assert (view.tenant_id, view.verified, view.agreement_confirmed) == ("", False, False)
    assert vendor_double.agreements == []


# --- the first Microsoft order --------------------------------------------------------------------


def test_the_first_microsoft_order_needs_the_tenant_and_goes_into_it(session, vendor_double):
    plans = _microsoft(session)
    org, owner = _org(session)
    f.topup(session, org, "1000000")
    q = ordering.quote_order(session, owner, plans["basic-m"].id, 2, now=AT)
    assert q.tenant == "missing"
    with pytest.raises(Conflict) as info:
        ordering.order(session, owner, plans["basic-m"].id, 2, now=AT)
    assert info.value.key == "error.tenant.required"
    assert _count(session, Subscription) == 0 and vendor_double.requests == []
    # a claim the directory cannot confirm: still no order through the connector
    mt.link(session, owner, "unknown.onmicrosoft.com", accepted=True, now=AT)
    assert ordering.quote_order(session, owner, plans["basic-m"].id, 2, now=AT).tenant == "unconfirmed"
    with pytest.raises(Conflict) as info:
        ordering.order(session, owner, plans["basic-m"].id, 2, now=AT)
    assert info.value.key == "error.tenant.unconfirmed"
    assert _count(session, LedgerEntry) == 1  # the top-up only
    # confirmed by the operator: the order goes to the connector with the tenant's id
    mt.confirm(session, org.id, GUID, operator="Оператор", now=AT)
    assert ordering.quote_order(session, owner, plans["basic-m"].id, 2, now=AT).tenant == ""
    out = ordering.order(session, owner, plans["basic-m"].id, 2, now=AT)
    assert out.status == "active"
    [request] = vendor_double.requests
    assert request.customer_tenant_id == GUID


def test_other_vendors_need_no_tenant(session, vendor_double):
    plans = f.catalog(session)  # vendor "ms": not Microsoft's catalogue code
    org, owner = _org(session)
    f.topup(session, org, "1000000")
    assert ordering.quote_order(session, owner, plans["basic-m"].id, 1, now=AT).tenant == ""
    ordering.order(session, owner, plans["basic-m"].id, 1, now=AT)
    assert vendor_double.requests[0].customer_tenant_id is None


def test_an_order_already_paid_for_is_not_refused_for_the_tenant_but_waits_for_the_operator(session, vendor_double):
    plans = _microsoft(session)
    org, owner = _org(session)
    f.topup(session, org, "1000000")
    out = ordering.order(session, owner, plans["basic-m"].id, 2, now=AT, _paid=True)
    assert out.status == "pending" and vendor_double.requests == []
    [task] = session.exec(select(ProvisioningTask)).all()
    assert task.reserved == Decimal("60000.00")
    assert "none yet" in provisioning.get_task(session, task.id).tenant
    with pytest.raises(NotFound):  # the customer has not named the tenant: nothing to confirm yet
        provisioning.complete(session, task.id, vendor_ref="X-1", operator="Оператор", tenant_id=GUID, now=AT)
    mt.create(session, owner, "romashka", accepted=True, now=AT)  # created by the directory
    done = provisioning.complete(session, task.id, vendor_ref="X-1", operator="Оператор", now=AT)
    assert done.status == "completed"
    assert session.get(Subscription, out.subscription_id).status == "active"


def test_the_operator_completes_the_first_microsoft_order_into_the_tenant_and_confirms_it(session, manual_vendors):
    plans = _microsoft(session)
    org, owner = _org(session)
    f.topup(session, org, "1000000")
    mt.create(session, owner, "romashka", accepted=True, now=AT)
    out = ordering.order(session, owner, plans["basic-m"].id, 2, now=AT)  # a claim is enough for the queue
    [task] = session.exec(select(ProvisioningTask)).all()
    note = provisioning.get_task(session, task.id).tenant
    assert "NEW: create romashka.onmicrosoft.com" in note and "305123456" in note and "boss@romashka.uz" in note
    with pytest.raises(InvalidInput) as info:  # the tenant ordered into must be named
        provisioning.complete(session, task.id, vendor_ref="X-1", operator="Оператор", now=AT)
    assert info.value.key == "error.provisioning.tenant_id"
    assert session.get(Subscription, out.subscription_id).status == "pending"
    provisioning.complete(session, task.id, vendor_ref="X-1", operator="Оператор", tenant_id=GUID, now=AT + timedelta(hours=1))
    view = mt.tenant_of(session, owner)
    assert (view.verified, view.tenant_id) == (True, GUID)
    assert session.get(Subscription, out.subscription_id).status == "active"
    charges = session.exec(select(LedgerEntry).where(LedgerEntry.kind == "charge")).all()
    assert [c.amount for c in charges] == [Decimal("-60000.00")]


def test_the_tenants_commands_list_and_confirm(session, manual_vendors, monkeypatch):
    from noventiq_panel.cli import main

    org, owner = _org(session)
    mt.link(session, owner, "romashka.onmicrosoft.com", accepted=True, now=AT)
    session.close()
    runner = CliRunner()
    listed = runner.invoke(main, ["tenants", "list"])
    assert listed.exit_code == 0 and "romashka.onmicrosoft.com" in listed.output and str(org.id) in listed.output
    bad = runner.invoke(main, ["tenants", "confirm", str(org.id), "--tenant-id", "nope", "--operator", "Оператор"])
    assert bad.exit_code != 0 and "GUID" in bad.output
    ok = runner.invoke(main, ["tenants", "confirm", str(org.id), "--tenant-id", GUID, "--operator", "Оператор"])
    assert ok.exit_code == 0 and GUID in ok.output, ok.output
    assert "no tenants to confirm" in runner.invoke(main, ["tenants", "list"]).output


# --- through the Partner Center connector (its HTTP DOUBLE) -----------------------------------------


@pytest.fixture
def partner_center():
    """The Partner Center connector for Microsoft, talking to the local DOUBLE of Partner Center."""
    from noventiq_panel.services.vendors import partner_center as pc
    from tests.doubles.partner_center import PartnerCenterDouble

    double = PartnerCenterDouble().start()
    settings = pc.PartnerCenterSettings("partner-tenant", "app-id", "secret", base_url=double.base_url, timeout=2,
                                        max_retries=1)
    conn = pc.PartnerCenterConnector(settings, token_provider=lambda: "app", user_token_provider=lambda: "user",
                                     sleep=lambda s: None, jitter=lambda: 0.0)
    connector.register(connector.MICROSOFT, conn)
    yield double
    connector.unregister(connector.MICROSOFT)
    conn.close()
    double.stop()


def test_a_new_tenant_and_the_first_order_through_partner_center(session, partner_center):
    plans = _microsoft(session)
    plans["basic-m"].catalog_item_id = "CFQ7TTC0LH18:0001:CFQ7TTC0K971"
    session.add(plans["basic-m"])
    session.commit()
    org, owner = _org(session)
    f.topup(session, org, "1000000")
    created = mt.create(session, owner, "toshkentsoft", accepted=True, now=AT)
    assert created.tenant.verified and created.tenant.agreement_confirmed and created.admin_user
    [post] = partner_center.calls("POST", "customers")[:1]
    assert post.body["CompanyProfile"] == {"Domain": "toshkentsoft.onmicrosoft.com",
                                           "OrganizationRegistrationNumber": "305123456"}
    assert partner_center.calls("POST", "agreements")
    out = ordering.order(session, owner, plans["basic-m"].id, 3, now=AT)
    sub = session.get(Subscription, out.subscription_id)
    assert sub.vendor_ref.startswith(created.tenant.tenant_id + "/")
    [cart] = [c for c in partner_center.calls("POST", "carts") if c.path.endswith("/carts")]
    assert f"customers/{created.tenant.tenant_id}/carts" in cart.path and cart.body["lineItems"][0]["quantity"] == 3


# --- a visitor's first order: it cannot wait for a tenant the visitor cannot name yet ---------------


def test_a_visitors_first_microsoft_order_is_kept_for_the_operator_not_refused(session, vendor_double):
    from datetime import date

    from noventiq_panel.services.billing import payments
    from noventiq_panel.services.subscriptions import guest_orders

    plans = _microsoft(session)
    f.usd_rate(session, date(2020, 1, 1))
    result = guest_orders.guest_order(session, email="ivan@newco.uz", name="Иван Петров", org_name="ООО «Новая»",
                                      tax_id="301234567", plan_id=plans["basic-m"].id, quantity=2, ip="10.0.0.1",
                                      now=AT)
    assert result.status == "waiting_payment"  # paid by invoice: the order follows the payment
    payments.confirm_payment(session, result.invoice_number, now=AT + timedelta(hours=1))
    sub = session.exec(select(Subscription).where(Subscription.org_id == result.org_id)).one()
    assert sub.status == "pending" and vendor_double.requests == []  # nothing ordered without a tenant
    [task] = session.exec(select(ProvisioningTask).where(ProvisioningTask.org_id == result.org_id)).all()
    assert task.action == "order" and "none yet" in provisioning.get_task(session, task.id).tenant
    charged = session.exec(select(LedgerEntry).where(LedgerEntry.org_id == result.org_id,
                                                     LedgerEntry.kind == "charge")).all()
    assert charged == []  # reserved, charged only when the operator completes it
