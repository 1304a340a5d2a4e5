"""The Partner Center connector (services/vendors/partner_center.py) against a local DOUBLE of Partner
Center (tests/doubles/partner_center.py). Nothing here has met the real Partner Center: the double
answers with the bodies Microsoft's pages document (tests/data/partner_center/*.json name the pages).

Hazards: ordering twice (a checkout whose answer was lost, a repeated provision), an order placed while
the connector reports failure, retrying too soon (Retry-After) or forever, a request without the headers
Microsoft asks for (or a correlation id that changes between retries), a request body that does not
follow the documented shape, a vendor error shown as a generic failure, a call that needs App+User
credentials sent with an app token, a test that needs Azure AD or sleeps.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from noventiq_panel.config import reset_settings
from noventiq_panel.services.core.errors import (
    Conflict,
    DomainError,
    InvalidInput,
    NotFound,
    Throttled,
    VendorRefused,
    VendorUnavailable,
)
from noventiq_panel.services.vendors import partner_center as pc
from noventiq_panel.services.vendors.connector import ProvisionRequest, VendorConnector
from tests.doubles.partner_center import PartnerCenterDouble, page

TOKEN = "app-token-of-the-double"
USER_TOKEN = "user-token-of-the-double"
ITEM = "CFQ7TTC0LH18:0001:CFQ7TTC0K971"  # Microsoft 365 Business Basic in the documented examples


@pytest.fixture
def double():
    d = PartnerCenterDouble().start()
    yield d
    d.stop()


@pytest.fixture
def sleeps():
    return []


def make(double, sleeps, **kw):
    settings = pc.PartnerCenterSettings("partner-tenant", "app-id", "secret", base_url=double.base_url,
                                        timeout=kw.pop("timeout", 0.5), max_retries=kw.pop("max_retries", 3))
    return pc.PartnerCenterConnector(settings, token_provider=lambda: TOKEN, user_token_provider=kw.pop("user", lambda: USER_TOKEN),
                                     sleep=sleeps.append, jitter=lambda: 0.0, **kw)


@pytest.fixture
def conn(double, sleeps):
    c = make(double, sleeps)
    yield c
    c.close()


@pytest.fixture
def customer(double):
    return double.add_customer("nqtest.onmicrosoft.com")


def req(customer, key="order-1", quantity=3):
    return ProvisionRequest(org_id=1, subscription_id=7, vendor_code="microsoft", product_code="m365", plan_code="basic",
                            quantity=quantity, catalog_item_id=ITEM, customer_tenant_id=customer, request_key=key)


def test_the_connector_is_a_vendor_connector(conn):
    assert isinstance(conn, VendorConnector)


# --- provisioning ---------------------------------------------------------------------------------------


def test_provision_creates_one_cart_line_checks_it_out_and_answers_the_subscription(double, conn, customer):
    result = conn.provision(req(customer))
    subs = double.subs(customer)
    assert len(subs) == 1 and subs[0]["quantity"] == 3 and subs[0]["offerId"] == ITEM
    assert result.vendor_ref == f"{customer}/{subs[0]['id']}" and result.active is True
    assert len(double.calls("POST", "/checkout")) == 1


def test_the_cart_body_has_the_documented_property_names(double, conn, customer):
    conn.provision(req(customer, key="shape"))
    (cart_call,) = [c for c in double.calls("POST") if c.path.endswith("/carts")]
    assert set(cart_call.body) == {"lineItems"}
    (line,) = cart_call.body["lineItems"]
    documented = set(page("create-a-cart")["cart_line_item_properties"])
    assert set(line) <= documented
    assert {"catalogItemId", "quantity", "billingCycle", "termDuration", "friendlyName"} <= set(line)
    assert line["catalogItemId"] == ITEM and line["quantity"] == 3
    assert pc.request_tag("shape") in line["friendlyName"]
    assert double.calls("POST", "/checkout")[0].body is None  # documented: no request body


def test_provision_again_with_the_same_key_returns_the_same_subscription(double, conn, customer):
    first = conn.provision(req(customer, key="same"))
    again = conn.provision(req(customer, key="same"))
    assert again == first
    assert len(double.subs(customer)) == 1
    assert len(double.calls("POST", "/checkout")) == 1
    other = conn.provision(req(customer, key="another"))
    assert other.vendor_ref != first.vendor_ref and len(double.subs(customer)) == 2


def test_a_checkout_that_timed_out_after_ordering_is_found_not_repeated(double, sleeps, customer):
    conn = make(double, sleeps, timeout=0.3)
    double.hang_after_commit(1.5, path="/checkout")
    result = conn.provision(req(customer, key="lost-answer"))
    subs = double.subs(customer)
    assert len(subs) == 1  # exactly one subscription at the double
    assert result.vendor_ref == f"{customer}/{subs[0]['id']}"
    assert len(double.calls("POST", "/checkout")) == 1  # found by its tag, not checked out again
    conn.close()


def test_a_checkout_lost_before_ordering_checks_out_the_same_cart_again(double, conn, customer):
    double.fail(1, 503, path="/checkout")  # answered 503: nothing ordered
    conn.provision(req(customer, key="retry-cart"))
    checkouts = double.calls("POST", "/checkout")
    assert len(checkouts) == 2 and checkouts[0].path == checkouts[1].path  # the same cart
    assert len([c for c in double.calls("POST") if c.path.endswith("/carts")]) == 1
    assert len(double.subs(customer)) == 1


def test_retries_exhausted_raise_a_domain_error_and_order_nothing(double, conn, customer):
    double.fail(100, 503, path="/checkout")
    with pytest.raises(VendorUnavailable):
        conn.provision(req(customer, key="never"))
    assert double.subs(customer) == [] and double.orders.get(customer, []) == []


def test_a_cart_that_cannot_be_created_orders_nothing(double, conn, customer, sleeps):
    double.fail(100, 503, method="POST")
    with pytest.raises(VendorUnavailable):
        conn.provision(req(customer, key="no-cart"))
    assert double.subs(customer) == []
    assert len(sleeps) == 3  # max_retries, then the error


def test_an_order_provisioned_later_is_found_by_the_next_provision(double, conn, customer):
    double.provision_async = True  # documented: subscription ids may come after the checkout
    with pytest.raises(VendorUnavailable) as exc:
        conn.provision(req(customer, key="slow"))
    assert exc.value.key == "error.vendor_pending"
    double.finish_provisioning(customer)
    result = conn.provision(req(customer, key="slow"))
    assert len(double.subs(customer)) == 1 and result.vendor_ref.endswith(double.subs(customer)[0]["id"])
    assert len(double.calls("POST", "/checkout")) == 1


def test_provision_needs_the_customer_the_item_and_a_key(double, conn, customer):
    for bad in (req(None), req(customer, key="")):
        with pytest.raises(InvalidInput):
            conn.provision(bad)
    assert double.requests == []


# --- headers, throttling, retries -------------------------------------------------------------------------


def test_every_call_carries_the_documented_headers(double, conn, customer):
    conn.provision(req(customer, key="headers"))
    calls = double.requests
    assert len(calls) >= 4
    for call in calls:
        assert call.headers["Authorization"] == f"Bearer {TOKEN}"
        assert call.headers["Accept"] == "application/json"
        uuid.UUID(call.headers["MS-RequestId"])
        uuid.UUID(call.headers["MS-CorrelationId"])
    assert len({c.headers["MS-RequestId"] for c in calls}) == len(calls)  # new for each call
    assert len({c.headers["MS-CorrelationId"] for c in calls}) == 1  # one per operation
    conn.read_subscription(conn.provision(req(customer, key="headers")).vendor_ref)
    assert len({c.headers["MS-CorrelationId"] for c in double.requests}) > 1  # another operation, another id


def test_throttling_waits_retry_after_then_succeeds_with_the_same_correlation_id(double, conn, customer, sleeps):
    sub = double.add_subscription(customer)
    double.throttle(2, retry_after=7, method="GET")
    info = conn.read_subscription(f"{customer}/{sub}")
    assert info.quantity == 5 and info.active
    assert sleeps == [7.0, 7.0]  # Retry-After, never sooner
    calls = double.calls("GET")
    assert len(calls) == 3
    assert len({c.headers["MS-CorrelationId"] for c in calls}) == 1
    assert len({c.headers["MS-RequestId"] for c in calls}) == 3


def test_transient_5xx_backs_off_exponentially_then_succeeds(double, conn, customer, sleeps):
    sub = double.add_subscription(customer)
    double.fail(3, 503, method="GET")
    assert conn.read_subscription(f"{customer}/{sub}").quantity == 5
    assert sleeps == [0.5, 1.0, 2.0]


def test_backoff_has_jitter_and_a_ceiling(double):
    s = pc.PartnerCenterSettings("t", "a", "s", base_url=double.base_url)
    high = pc.PartnerCenterClient(s, lambda: TOKEN, jitter=lambda: 1.0)
    assert high.backoff(1) == 0.75 and high.backoff(30) == pc.MAX_BACKOFF_SECONDS
    assert high.backoff(1, retry_after=57) == 57


def test_throttled_until_the_retries_run_out_is_a_throttled_error(double, conn, customer):
    sub = double.add_subscription(customer)
    double.throttle(100, retry_after=1, method="GET")
    with pytest.raises(Throttled):
        conn.read_subscription(f"{customer}/{sub}")
    assert len(double.calls("GET")) == 4


def test_a_timed_out_read_is_retried_with_the_same_request_id(double, sleeps, customer):
    conn = make(double, sleeps, timeout=0.3)
    sub = double.add_subscription(customer)
    double.hang_after_commit(1.0, method="GET", path=f"subscriptions/{sub}")
    assert conn.read_subscription(f"{customer}/{sub}").quantity == 5
    first, second = double.calls("GET")
    assert first.headers["MS-RequestId"] == second.headers["MS-RequestId"]  # headers page: same value after a timeout
    conn.close()


# --- subscription changes ---------------------------------------------------------------------------------


def test_change_quantity_patches_the_full_subscription_with_its_etag(double, conn, customer):
    sub = double.add_subscription(customer, quantity=5)
    etag = double.subscriptions[customer][sub]["attributes"]["etag"]
    conn.change_quantity(f"{customer}/{sub}", 8)
    (patch,) = double.calls("PATCH")
    assert patch.headers["If-Match"] == etag
    assert {"id", "offerId", "quantity", "status", "autoRenewEnabled", "billingCycle", "termDuration", "attributes"} <= set(patch.body)
    assert "links" not in patch.body and patch.body["quantity"] == 8
    assert double.subscriptions[customer][sub]["quantity"] == 8
    conn.change_quantity(f"{customer}/{sub}", 8)  # same arguments: nothing sent
    assert len(double.calls("PATCH")) == 1


def test_a_seat_decrease_outside_the_window_is_a_clear_refusal(double, conn, customer):
    sub = double.add_subscription(customer, quantity=5)
    double.seat_window_open = False
    with pytest.raises(VendorRefused) as exc:
        conn.change_quantity(f"{customer}/{sub}", 2)
    assert exc.value.key == "error.vendor_seat_window_passed" and exc.value.code == "800090"
    assert double.subscriptions[customer][sub]["quantity"] == 5


def test_suspend_resume_auto_renew_and_cancel(double, conn, customer):
    sub = double.add_subscription(customer)
    ref = f"{customer}/{sub}"
    conn.suspend(ref)
    assert conn.read_subscription(ref).status == "suspended"
    conn.resume(ref)
    assert conn.read_subscription(ref).active
    conn.set_auto_renew(ref, False)
    assert conn.read_subscription(ref).auto_renew is False
    conn.set_auto_renew(ref, True)
    assert double.subscriptions[customer][sub]["autoRenewEnabled"] is True
    conn.cancel(ref)
    assert double.subscriptions[customer][sub]["status"] == "deleted"  # documented: status "deleted"
    conn.cancel(ref)  # idempotent
    assert [c.body["status"] for c in double.calls("PATCH") if "status" in c.body][-1] == "deleted"


def test_a_cancellation_outside_the_window_is_a_clear_refusal(double, conn, customer):
    sub = double.add_subscription(customer)
    double.cancel_window_open = False
    with pytest.raises(VendorRefused) as exc:
        conn.cancel(f"{customer}/{sub}")
    assert exc.value.key == "error.vendor_cancel_window_passed"
    assert double.subscriptions[customer][sub]["status"] == "active"


def test_an_unknown_subscription_is_not_found(double, conn, customer):
    with pytest.raises(NotFound) as exc:
        conn.suspend(f"{customer}/{uuid.uuid4()}")
    assert exc.value.key == "error.vendor_subscription_not_found"
    with pytest.raises(InvalidInput):
        conn.suspend("no-slash")


def test_change_plan_says_plan_changes_go_through_the_queue(conn, double):
    with pytest.raises(DomainError) as exc:
        conn.change_plan("a/b", "premium")
    assert exc.value.key == "error.vendor_plan_change_queued" and "provisioning queue" in str(exc.value)
    assert double.requests == []


@pytest.mark.parametrize(
    ("error", "cls", "key"),
    [
        ("unauthorized", VendorRefused, "error.vendor_not_configured"),
        ("forbidden", VendorRefused, "error.vendor_not_configured"),
        ("app_only_not_supported", VendorRefused, "error.vendor_not_configured"),
        ("agreement_missing", VendorRefused, "error.vendor_agreement_missing"),
        ("seat_window_hours", VendorRefused, "error.vendor_seat_window_passed"),
        ("cancel_window_days", VendorRefused, "error.vendor_cancel_window_passed"),
        ("invalid_input", VendorRefused, "error.vendor_refused"),
        ("registration_number_invalid", InvalidInput, "error.vendor_tax_id_invalid"),
        ("phone_missing", InvalidInput, "error.vendor_phone_missing"),
        ("order_in_progress", Conflict, "error.vendor_busy"),
        ("subscription_not_found", NotFound, "error.vendor_subscription_not_found"),
        ("tenant_not_found", NotFound, "error.vendor_customer_not_found"),
    ],
)
def test_each_documented_error_maps_to_its_domain_error(double, conn, customer, error, cls, key):
    sub = double.add_subscription(customer)
    double.refuse(error, method="GET")
    with pytest.raises(cls) as exc:
        conn.read_subscription(f"{customer}/{sub}")
    assert exc.value.key == key
    assert len(double.calls("GET")) == 1  # a refusal is not retried


def test_a_refused_checkout_orders_nothing(double, conn, customer):
    double.refuse("agreement_missing", path="/checkout")
    with pytest.raises(VendorRefused) as exc:
        conn.provision(req(customer, key="no-mca"))
    assert exc.value.key == "error.vendor_agreement_missing"
    assert double.subs(customer) == []


# --- customers ----------------------------------------------------------------------------------------


def test_domain_availability(double, conn):
    double.add_customer("takenco.onmicrosoft.com")
    assert conn.domain_available("takenco") is False
    assert conn.domain_available("freeco") is True
    assert [c.method for c in double.requests] == ["HEAD", "HEAD"]
    assert double.requests[1].path == "domains/freeco.onmicrosoft.com"
    with pytest.raises(InvalidInput):
        conn.domain_available("bad prefix!")
    assert len(double.requests) == 2


DETAILS = pc.CustomerDetails(domain_prefix="toshkentsoft", company_name="Toshkent Soft MChJ", email="it@toshkentsoft.uz",
                             phone="+998712000000", first_name="Alisher", last_name="Karimov",
                             address_line1="Amir Temur 107B", city="Tashkent", postal_code="100084", tax_id="305123456")


def test_create_customer_sends_the_documented_profiles_for_uzbekistan(double, conn):
    ref = conn.create_customer(DETAILS)
    assert ref.domain == "toshkentsoft.onmicrosoft.com" and ref.tenant_id in double.customers
    assert ref.admin_user == "admin" and ref.admin_password and ref.admin_password not in repr(ref)
    (call,) = double.calls("POST", "customers")
    assert set(call.body) == {"CompanyProfile", "BillingProfile"}
    assert call.body["CompanyProfile"] == {"Domain": "toshkentsoft.onmicrosoft.com", "OrganizationRegistrationNumber": "305123456"}
    billing = call.body["BillingProfile"]
    assert set(billing) == {"Culture", "Email", "Language", "CompanyName", "DefaultAddress"}
    assert billing["DefaultAddress"]["Country"] == "UZ" and billing["DefaultAddress"]["PhoneNumber"] == "+998712000000"
    documented = set(page("create-a-customer")["request"]["body"]["BillingProfile"]["DefaultAddress"]) | {"PhoneNumber"}
    assert set(billing["DefaultAddress"]) <= documented
    assert conn.domain_available("toshkentsoft") is False


def test_a_customer_in_uzbekistan_without_a_tax_id_is_refused_by_field(double, conn):
    with pytest.raises(InvalidInput) as exc:
        conn.create_customer(pc.CustomerDetails(**{**DETAILS.__dict__, "tax_id": ""}))
    assert exc.value.field == "tax_id" and double.customers == {}


def test_get_customer_by_tenant_id_or_domain(double, conn):
    tenant = double.add_customer("samarkandit.onmicrosoft.com")
    double.add_customer("samarkanditgroup.onmicrosoft.com")
    assert conn.get_customer(tenant).domain == "samarkandit.onmicrosoft.com"
    assert conn.get_customer("samarkandit").tenant_id == tenant  # exact domain, not the other starts_with match
    with pytest.raises(NotFound):
        conn.get_customer("nobody")
    with pytest.raises(NotFound):
        conn.get_customer(str(uuid.uuid4()))


def test_accepting_the_customer_agreement_uses_the_template_and_app_user_token(double, conn, customer):
    when = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
    conn.accept_customer_agreement(customer, "Alisher", "Karimov", "it@toshkentsoft.uz", "+998712000000", when)
    conn.accept_customer_agreement(customer, "Alisher", "Karimov", "it@toshkentsoft.uz", "+998712000000", when)  # 600061: done
    (agreement,) = double.agreements[customer]
    template = page("get-customer-agreement-metadata")["response"]["body"]["items"][0]["templateId"]
    assert agreement["templateId"] == template and agreement["type"] == "MicrosoftCustomerAgreement"
    assert agreement["dateAgreed"] == "2026-03-01T09:30:00.000Z"
    post = double.calls("POST", "/agreements")[0]
    assert set(post.body) == set(page("confirm-customer-consent-customer-agreement")["request"]["body"])
    assert set(post.body["primaryContact"]) == {"firstName", "lastName", "email", "phoneNumber"}
    assert all(c.headers["Authorization"] == f"Bearer {USER_TOKEN}" for c in double.requests)


def test_the_agreement_is_not_sent_without_app_user_credentials(double, sleeps, customer):
    conn = make(double, sleeps, user=None)
    with pytest.raises(VendorRefused) as exc:
        conn.accept_customer_agreement(customer, "A", "B", "a@b.uz", "+998", datetime.now(UTC))
    assert exc.value.key == "error.vendor_not_configured" and double.requests == []
    conn.close()


# --- authentication and settings --------------------------------------------------------------------------


def test_msal_client_credentials_token_without_azure_ad(monkeypatch):
    import msal

    seen = {}

    class FakeApp:
        def __init__(self, client_id, client_credential=None, authority=None, **kw):
            seen.update(client_id=client_id, secret=client_credential, authority=authority)

        def acquire_token_for_client(self, scopes):
            seen["scopes"] = scopes
            return {"access_token": "t0k", "token_type": "Bearer"} if seen["secret"] == "good" else {
                "error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided."}

    monkeypatch.setattr(msal, "ConfidentialClientApplication", FakeApp)
    assert pc.MsalTokenProvider(pc.PartnerCenterSettings("tenant-1", "app-1", "good"))() == "t0k"
    assert seen == {"client_id": "app-1", "secret": "good", "authority": "https://login.microsoftonline.com/tenant-1",
                    "scopes": ["https://api.partnercenter.microsoft.com/.default"]}
    with pytest.raises(VendorRefused) as exc:
        pc.MsalTokenProvider(pc.PartnerCenterSettings("tenant-1", "app-1", "bad"))()
    assert exc.value.key == "error.vendor_not_configured" and exc.value.code == "invalid_client"


def test_settings_come_from_the_panel_environment(monkeypatch):
    for name in ("TENANT_ID", "APP_ID", "SECRET", "URL", "TIMEOUT", "MAX_RETRIES"):
        monkeypatch.delenv(f"PANEL_PARTNER_CENTER_{name}", raising=False)
    reset_settings()
    try:
        assert pc.configured() is False and pc.PartnerCenterSettings.from_env() is None
        with pytest.raises(VendorRefused):
            pc.PartnerCenterConnector.from_env()
        monkeypatch.setenv("PANEL_PARTNER_CENTER_TENANT_ID", "tenant-1")
        monkeypatch.setenv("PANEL_PARTNER_CENTER_APP_ID", "app-1")
        monkeypatch.setenv("PANEL_PARTNER_CENTER_SECRET", "s3cret-value")
        reset_settings()
        assert pc.configured() is True
        s = pc.PartnerCenterSettings.from_env()
        assert s.base_url == "https://api.partnercenter.microsoft.com/v1/" and s.max_retries == 4 and s.timeout == 30
        assert "s3cret-value" not in repr(s)
        monkeypatch.setenv("PANEL_PARTNER_CENTER_URL", "http://127.0.0.1:9/v1/")
        reset_settings()
        assert pc.PartnerCenterSettings.from_env().base_url == "http://127.0.0.1:9/v1/"
    finally:
        reset_settings()


def test_every_data_file_names_its_microsoft_page():
    from tests.doubles.partner_center import DATA

    files = sorted(DATA.glob("*.json"))
    assert len(files) >= 15
    for f in files:
        assert page(f.stem)["_source"].startswith("https://learn.microsoft.com/partner-center/developer/")


def test_configured_credentials_make_partner_center_microsofts_connector_and_tenant_directory(monkeypatch):
    from noventiq_panel.services.vendors import connector

    for name, value in (("TENANT_ID", "tenant-1"), ("APP_ID", "app-1"), ("SECRET", "s3cret-value"),
                        ("URL", "http://127.0.0.1:9/v1/")):
        monkeypatch.setenv(f"PANEL_PARTNER_CENTER_{name}", value)
    monkeypatch.delenv("PANEL_PARTNER_CENTER_REFRESH_TOKEN", raising=False)
    monkeypatch.setenv("PANEL_CONNECTORS", "")
    reset_settings()
    monkeypatch.setattr(connector, "_loaded", False)
    monkeypatch.setattr(connector, "_registry", dict(connector._registry))  # the test's own registry
    try:
        conn = connector.connector_for(connector.MICROSOFT)
        assert isinstance(conn, pc.PartnerCenterConnector) and conn.settings.base_url == "http://127.0.0.1:9/v1/"
        assert connector.tenant_directory() is conn
        assert connector.connector_for("kaspersky") is not conn  # only Microsoft's products
        assert conn._user_token is None  # no refresh token: the agreement cannot be confirmed there
        with pytest.raises(VendorRefused) as info:
            conn.accept_customer_agreement("t", "A", "B", "a@b.uz", "+998", datetime(2026, 12, 6, tzinfo=UTC))
        assert info.value.key == "error.vendor_not_configured"
    finally:
        reset_settings()


class _FakeMsalApp:
    """Stands in for ``msal.ConfidentialClientApplication``: records what the provider asks."""

    calls: list = []

    def __init__(self, client_id, client_credential=None, authority=None):
        self.accounts: list = []
        _FakeMsalApp.calls.append(("init", client_id, authority))

    def get_accounts(self):
        return list(self.accounts)

    def acquire_token_by_refresh_token(self, refresh_token, scopes):
        _FakeMsalApp.calls.append(("refresh", refresh_token, tuple(scopes)))
        self.accounts = [{"username": "admin@partner"}]
        return {"access_token": "user-token-1"}

    def acquire_token_silent(self, scopes, account=None):
        _FakeMsalApp.calls.append(("silent", tuple(scopes), account["username"]))
        return {"access_token": "user-token-2"}


def test_the_configured_refresh_token_is_exchanged_once_then_renewed_silently(monkeypatch):
    """App+User (the secure application model) through MSAL's refresh-token exchange; MSAL itself is
    replaced by a recorder (no Azure AD here)."""
    import sys
    import types

    monkeypatch.setitem(sys.modules, "msal", types.SimpleNamespace(ConfidentialClientApplication=_FakeMsalApp))
    _FakeMsalApp.calls = []
    settings = pc.PartnerCenterSettings("partner-tenant", "app-id", "secret", refresh_token="rt-of-the-consent")
    assert "rt-of-the-consent" not in repr(settings)
    conn = pc.PartnerCenterConnector(settings, token_provider=lambda: TOKEN)
    try:
        assert isinstance(conn._user_token, pc.MsalUserTokenProvider)
        assert conn._user_token() == "user-token-1" and conn._user_token() == "user-token-2"
        assert _FakeMsalApp.calls == [
            ("init", "app-id", "https://login.microsoftonline.com/partner-tenant"),
            ("refresh", "rt-of-the-consent", (pc.SCOPE,)),
            ("silent", (pc.SCOPE,), "admin@partner"),
        ]
    finally:
        conn.close()
