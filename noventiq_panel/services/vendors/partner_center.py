"""Microsoft Partner Center connector (CSP, new commerce) over the REST API, authenticated with MSAL.

Every call follows a page of Microsoft's Partner Center REST reference (learn.microsoft.com/partner-center/
developer/<page>; read in the English source of those pages, 2023 revision):

==========================  ===============================================================  ================================
operation                   request                                                          page
==========================  ===============================================================  ================================
domain_available            HEAD /v1/domains/{prefix}.onmicrosoft.com (200 taken, 404 free)  verify-domain-availability
create_customer             POST /v1/customers (CompanyProfile + BillingProfile)             create-a-customer
get_customer                GET /v1/customers/{id}; GET /v1/customers?filter={Domain...}     get-a-customer-by-id, get-a-customer-by-name
accept_customer_agreement   GET /v1/agreements?agreementType=MicrosoftCustomerAgreement,     get-customer-agreement-metadata,
                            POST /v1/customers/{id}/agreements                               confirm-customer-consent-customer-agreement
provision                   POST /v1/customers/{id}/carts, POST .../carts/{cart}/checkout    create-a-cart, checkout-a-cart, cart-resources
  (reconciliation)          GET /v1/customers/{id}/subscriptions, GET .../orders[/{order}]    get-all-of-a-customer-s-orders, order-resources
read_subscription           GET /v1/customers/{id}/subscriptions/{sub}                       get-a-subscription-by-id
change_quantity             PATCH the full subscription with ``quantity``                    change-the-quantity-of-a-subscription
suspend / resume            PATCH the full subscription, ``status`` suspended / active       suspend-a-subscription, reactivate-a-suspended-a-subscription
set_auto_renew              PATCH the full subscription, ``autoRenewEnabled``                update-autorenew-for-an-azure-marketplace-subscription
cancel                      PATCH the full subscription, ``status`` = ``deleted``            cancel-an-azure-marketplace-subscription
change_plan                 not called (see below)                                           transition-a-subscription
errors, headers, 429        ``{code, description, data, source}``; Retry-After               error-codes, headers, api-throttling-guidance
==========================  ===============================================================  ================================

Not found by the search (so not used): a "get a cart by ID" page, a VAT field on the customer (the
tax id goes to ``CompanyProfile.OrganizationRegistrationNumber``, which Microsoft requires for UZ:
errors 600049/600050), the cultures Partner Center accepts for Uzbekistan (the default is the
documented example's ``en-US``/``en``), and whether a cart line item's ``friendlyName`` really reaches
the order line item and the subscription (the three resources document a ``friendlyName`` "defined by
the partner to help disambiguate"; this connector relies on that, see *Never ordering twice*).

**Authentication.** App-only: an MSAL ``ConfidentialClientApplication`` for the partner tenant gets a
token for ``https://api.partnercenter.microsoft.com/.default`` (client credentials; MSAL caches it
until it expires). Microsoft documents every call above as supporting "both standalone App and
App+User credentials" except confirming the customer's acceptance of the Microsoft Customer
Agreement, which "only supports App+User authentication" (secure application model: a refresh token
from an MFA consent, ``PANEL_PARTNER_CENTER_REFRESH_TOKEN``, exchanged by :class:`MsalUserTokenProvider`).
The connector takes an optional ``user_token_provider`` for that one call; without
it :meth:`PartnerCenterConnector.accept_customer_agreement` refuses before sending anything
(``VendorRefused`` key ``error.vendor_not_configured``). Both providers are plain callables returning a
bearer token, so tests pass fixed tokens and never reach Azure AD.

**References.** A subscription's ``vendor_ref`` is ``"<customer tenant id>/<subscription id>"``: every
Partner Center subscription call needs both (:func:`vendor_ref`, :func:`split_vendor_ref`).

**Headers and retries.** Each HTTP call carries ``Authorization: Bearer``, ``Accept: application/json``,
``MS-CorrelationId`` (one per connector operation, the same over all its calls and retries) and
``MS-RequestId`` (new for each call; Microsoft's headers page asks that a retry *after a timeout* carry
the same value, so only then is it kept, and it is renewed after any answer). 429 and 5xx are retried
up to ``max_retries`` times with exponential backoff and jitter, never sooner than ``Retry-After``;
the sleep is injectable. Then 429 → :class:`Throttled`, 5xx/no answer → :class:`VendorUnavailable`.

**Never ordering twice.** ``provision`` tags the cart line item's ``friendlyName`` with
``[nq:<request_key>]``. Before creating a cart it looks for that tag among the customer's subscriptions
and orders, so a repeated ``provision`` (after success, or after a crash) returns the existing
subscription. A checkout whose outcome is unknown (timeout or connection lost after sending, a 5xx, or
409 "order in progress"/"cart being processed") is never simply repeated: the connector first lists the
customer's subscriptions and orders for the tag; only if nothing is there does it check out the *same*
cart again (Microsoft documents checkout as idempotent per cart: a second checkout repeats the first
one's result), with the same ``MS-RequestId``. An order found without a subscription id yet (Microsoft
provisions asynchronously) is read again a few times, then ``VendorUnavailable`` (pending) is raised:
calling ``provision`` again with the same key finds the order instead of placing another.

**Plan changes.** ``change_plan`` receives only the panel's plan code, not a Partner Center catalogue
item, and the upgrade call (transition-a-subscription) needs the target's offer; so it raises a clear
domain error: plan changes go through the provisioning queue (a new subscription, then cancelling the
old one inside its window).
"""

from __future__ import annotations

import json
import random
import re
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from noventiq_panel.config import get_settings
from noventiq_panel.services.core.errors import (
    Conflict,
    DomainError,
    InvalidInput,
    NotFound,
    Throttled,
    VendorRefused,
    VendorUnavailable,
)
from noventiq_panel.services.vendors.connector import CustomerDetails, CustomerRef, ProvisionRequest, ProvisionResult

DEFAULT_BASE_URL = "https://api.partnercenter.microsoft.com/v1/"
SCOPE = "https://api.partnercenter.microsoft.com/.default"
AUTHORITY = "https://login.microsoftonline.com/{tenant}"
DOMAIN_SUFFIX = ".onmicrosoft.com"
MAX_BACKOFF_SECONDS = 60.0

TokenProvider = Callable[[], str]
Sleep = Callable[[float], None]

_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_PREFIX = re.compile(r"^[A-Za-z0-9]{1,63}$")


# --- settings ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PartnerCenterSettings:
    tenant_id: str  # the partner's own Azure AD tenant (the MSAL authority)
    app_id: str  # the Azure AD application registered for Partner Center
    secret: str = field(repr=False)
    base_url: str = DEFAULT_BASE_URL
    timeout: float = 30.0  # seconds, per HTTP call
    max_retries: int = 4  # retries after the first attempt, for 429 and 5xx
    refresh_token: str = field(default="", repr=False)  # App+User (secure application model); "" = app only

    @classmethod
    def from_env(cls) -> PartnerCenterSettings | None:
        """From ``PANEL_PARTNER_CENTER_*`` (config.py); None while tenant, application or secret is unset."""
        s = get_settings()
        if not s.partner_center_configured:
            return None
        return cls(
            tenant_id=s.partner_center_tenant_id or "",
            app_id=s.partner_center_app_id or "",
            secret=s.partner_center_secret or "",
            base_url=s.partner_center_url,
            timeout=s.partner_center_timeout,
            max_retries=s.partner_center_max_retries,
            refresh_token=s.partner_center_refresh_token or "",
        )


def register_configured(register: Callable[[str, Any], None]) -> None:
    """Partner Center for the vendor ``microsoft`` (``connector.MICROSOFT``), from the settings."""
    register("microsoft", PartnerCenterConnector.from_env())


def configured() -> bool:
    """True when ``PANEL_PARTNER_CENTER_TENANT_ID``, ``_APP_ID`` and ``_SECRET`` are all set."""
    return get_settings().partner_center_configured


# --- authentication ----------------------------------------------------------------------------------


class MsalTokenProvider:
    """App-only token by the client-credentials flow (MSAL ``acquire_token_for_client``; MSAL keeps the
    token in its in-memory cache until it expires)."""

    def __init__(self, settings: PartnerCenterSettings):
        self._settings = settings
        self._app: Any = None

    def _msal(self) -> Any:
        if self._app is None:
            import msal  # imported here: tests and the built-in connector never need it

            self._app = msal.ConfidentialClientApplication(
                self._settings.app_id,
                client_credential=self._settings.secret,
                authority=AUTHORITY.format(tenant=self._settings.tenant_id),
            )
        return self._app

    def _acquire(self) -> Any:
        return self._msal().acquire_token_for_client(scopes=[SCOPE])

    def __call__(self) -> str:
        result = self._acquire()
        token = result.get("access_token") if isinstance(result, dict) else None
        if not token:
            error = (result or {}).get("error", "no_token") if isinstance(result, dict) else "no_token"
            description = (result or {}).get("error_description", "") if isinstance(result, dict) else ""
            raise VendorRefused(str(error), str(description)[:300], key="error.vendor_not_configured")
        return token


class MsalUserTokenProvider(MsalTokenProvider):
    """App+User token (Partner Center's secure application model): the configured refresh token of
    the partner admin's MFA consent is exchanged once (MSAL ``acquire_token_by_refresh_token``);
    MSAL then keeps the tokens it got back and renews them silently (``acquire_token_silent``)."""

    def _acquire(self) -> Any:
        app = self._msal()
        accounts = app.get_accounts()
        if accounts:
            result = app.acquire_token_silent([SCOPE], account=accounts[0])
            if result:
                return result
        return app.acquire_token_by_refresh_token(self._settings.refresh_token, scopes=[SCOPE])


# --- references and results --------------------------------------------------------------------------


def vendor_ref(customer_tenant_id: str, subscription_id: str) -> str:
    return f"{customer_tenant_id}/{subscription_id}"


def split_vendor_ref(ref: str) -> tuple[str, str]:
    """``"<customer tenant id>/<subscription id>"`` → the two ids (InvalidInput otherwise)."""
    customer, sep, subscription = (ref or "").partition("/")
    if not sep or not customer or not subscription or "/" in subscription:
        raise InvalidInput(f"not a Partner Center reference: {ref!r}", field="vendor_ref", key="error.vendor_ref_invalid")
    return customer, subscription


@dataclass(frozen=True)
class SubscriptionInfo:
    vendor_ref: str
    status: str  # Partner Center's: active, pending, suspended, expired, disabled, deleted, none
    quantity: int
    offer_id: str = ""
    friendly_name: str = ""
    auto_renew: bool = False
    commitment_end: str = ""
    order_id: str = ""

    @property
    def active(self) -> bool:
        return self.status.lower() == "active"


def request_tag(request_key: str) -> str:
    """The token put in the cart line item's ``friendlyName`` so the order can be found again."""
    return f"[nq:{request_key}]"


# --- HTTP ----------------------------------------------------------------------------------------------


class _OutcomeUnknown(Exception):
    """An unsafe call (checkout) may or may not have taken effect."""

    def __init__(self, reason: str, request_id: str):
        super().__init__(reason)
        self.request_id = request_id


# Error codes of Microsoft's error-codes page that the panel tells apart.
_SEAT_WINDOW = {"800090", "900214", "900257"}
_CANCEL_WINDOW = {"900117", "900213"}
_BUSY = {"800060", "800064", "800082", "900278"}
_NOT_CONFIGURED = {"400", "800001", "2032", "900308", "900309", "900316", "900329"}


def _error_fields(response: httpx.Response) -> tuple[str, str]:
    try:
        body = response.json()
    except ValueError:
        return "", response.reason_phrase or ""
    if not isinstance(body, dict):
        return "", ""
    code = body.get("code", body.get("statusCode", ""))
    description = body.get("description") or body.get("message") or ""
    return str(code if code is not None else ""), str(description)[:500]


def map_error(response: httpx.Response, what: str = "") -> DomainError:
    """A 4xx answer of Partner Center as the panel's domain error."""
    status = response.status_code
    code, description = _error_fields(response)
    if code in _SEAT_WINDOW:
        return VendorRefused(code, description, key="error.vendor_seat_window_passed")
    if code in _CANCEL_WINDOW:
        return VendorRefused(code, description, key="error.vendor_cancel_window_passed")
    if code == "13605":
        return VendorRefused(code, description, key="error.vendor_agreement_missing")
    if code in {"600049", "600050", "600002"}:
        return InvalidInput(description or "organisation registration number refused", field="tax_id",
                            key="error.vendor_tax_id_invalid", code=code)
    if code == "600051":
        return InvalidInput(description or "phone number missing", field="phone", key="error.vendor_phone_missing", code=code)
    if code in _BUSY or status == 409:
        return Conflict(f"Partner Center is busy with this item ({code}): {description}", key="error.vendor_busy", code=code)
    if status == 401 or code in _NOT_CONFIGURED or (status == 403 and not code):
        return VendorRefused(code or str(status), description or "access denied", key="error.vendor_not_configured")
    if status == 404:
        key = "error.vendor_subscription_not_found" if what == "subscription" else "error.vendor_not_found"
        if code == "60003":
            key = "error.vendor_customer_not_found"
        return NotFound(f"{what or 'item'} not found at Partner Center ({code}): {description}", key=key, code=code)
    return VendorRefused(code or str(status), description or response.reason_phrase or "refused")


class PartnerCenterClient:
    """Sends one Partner Center REST call with the documented headers, retrying 429/5xx/timeouts."""

    def __init__(
        self,
        settings: PartnerCenterSettings,
        token_provider: TokenProvider,
        *,
        sleep: Sleep = time.sleep,
        jitter: Callable[[], float] = random.random,
        transport: httpx.BaseTransport | None = None,
    ):
        self.settings = settings
        self._token = token_provider
        self._sleep = sleep
        self._jitter = jitter
        base = settings.base_url if settings.base_url.endswith("/") else settings.base_url + "/"
        self._http = httpx.Client(base_url=base, timeout=settings.timeout, transport=transport)

    def close(self) -> None:
        self._http.close()

    def backoff(self, attempt: int, retry_after: float | None = None) -> float:
        """Exponential (0.5 s, 1 s, 2 s, ...) with up to 50 % jitter, never below Retry-After."""
        delay = min(MAX_BACKOFF_SECONDS, 0.5 * 2 ** (attempt - 1) * (1 + 0.5 * self._jitter()))
        if retry_after is not None:
            delay = max(delay, retry_after)
        return delay

    def call(
        self,
        method: str,
        path: str,
        *,
        correlation_id: str,
        body: Any = None,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        what: str = "",
        accept: Iterable[int] = (),
        unsafe: bool = False,
        request_id: str | None = None,
        token_provider: TokenProvider | None = None,
    ) -> httpx.Response:
        """The answer (2xx or a status in ``accept``), else a domain error.

        ``unsafe`` (checkout): a timeout or lost connection after sending, or a 5xx, raises
        :class:`_OutcomeUnknown` instead of being retried; the caller reconciles."""
        accepted = set(accept)
        request_id = request_id or str(uuid.uuid4())
        attempt = 0
        while True:
            token = (token_provider or self._token)()
            sent_headers = {
                "Authorization": f"Bearer {token}",
                "Accept": "application/json",
                "MS-RequestId": request_id,
                "MS-CorrelationId": correlation_id,
                **(headers or {}),
            }
            if body is not None:
                sent_headers["Content-Type"] = "application/json"
            try:
                response = self._http.request(
                    method, path.lstrip("/"), headers=sent_headers, params=params,
                    content=None if body is None else json.dumps(body),
                )
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:  # nothing reached the server
                reason = f"no connection to Partner Center: {exc.__class__.__name__}"
                retry_after = None
            except (httpx.TimeoutException, httpx.TransportError) as exc:  # sent; the answer was lost
                if unsafe:
                    raise _OutcomeUnknown(f"no answer: {exc.__class__.__name__}", request_id) from exc
                reason = f"no answer from Partner Center: {exc.__class__.__name__}"
                retry_after = None
                # Microsoft: "If there's a timeout, the retry call should include the same value."
            else:
                status = response.status_code
                if status < 400 or status in accepted:
                    return response
                if status == 429:
                    reason = "throttled"
                    retry_after = _retry_after(response)
                elif status >= 500:
                    if unsafe:
                        raise _OutcomeUnknown(f"HTTP {status}", request_id)
                    reason = f"HTTP {status}"
                    retry_after = _retry_after(response)
                else:
                    raise map_error(response, what)
                request_id = str(uuid.uuid4())  # an answer came: the next call is a new request
            attempt += 1
            if attempt > self.settings.max_retries:
                if reason == "throttled":
                    raise Throttled("Partner Center throttled the request; try again later", key="error.vendor_throttled")
                raise VendorUnavailable(f"Partner Center unavailable after {attempt} attempts ({reason})")
            self._sleep(self.backoff(attempt, retry_after))


def _retry_after(response: httpx.Response) -> float | None:
    raw = response.headers.get("Retry-After")
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        return None


# --- the connector -------------------------------------------------------------------------------------


class PartnerCenterConnector:
    """The panel's :class:`~noventiq_panel.services.vendors.connector.VendorConnector` for Microsoft.

    ``terms(request) -> (billingCycle, termDuration)`` chooses the cart line's billing; the default is
    ``("monthly", "P1M")`` (the plan code does not say more; pass your own mapping)."""

    def __init__(
        self,
        settings: PartnerCenterSettings,
        *,
        token_provider: TokenProvider | None = None,
        user_token_provider: TokenProvider | None = None,
        sleep: Sleep = time.sleep,
        jitter: Callable[[], float] = random.random,
        transport: httpx.BaseTransport | None = None,
        terms: Callable[[ProvisionRequest], tuple[str, str]] | None = None,
        pending_polls: int = 3,
    ):
        self.settings = settings
        self._sleep = sleep
        if user_token_provider is None and settings.refresh_token:
            user_token_provider = MsalUserTokenProvider(settings)
        self._user_token = user_token_provider
        self.client = PartnerCenterClient(
            settings, token_provider or MsalTokenProvider(settings), sleep=sleep, jitter=jitter, transport=transport
        )
        self._terms = terms or (lambda request: ("monthly", "P1M"))
        self._pending_polls = pending_polls

    @classmethod
    def from_env(cls, **kwargs: Any) -> PartnerCenterConnector:
        settings = PartnerCenterSettings.from_env()
        if settings is None:
            raise VendorRefused("not_configured", "PANEL_PARTNER_CENTER_TENANT_ID, _APP_ID and _SECRET must be set",
                                key="error.vendor_not_configured")
        return cls(settings, **kwargs)

    def close(self) -> None:
        self.client.close()

    # -- plumbing

    @staticmethod
    def _operation() -> str:
        return str(uuid.uuid4())

    def _get(self, op: str, path: str, *, what: str = "", params: dict[str, str] | None = None) -> Any:
        return self.client.call("GET", path, correlation_id=op, what=what, params=params).json()

    # -- customers

    def domain_available(self, prefix: str) -> bool:
        """Is ``<prefix>.onmicrosoft.com`` free? (HEAD: 200 = taken, 404 = free.)"""
        prefix = (prefix or "").strip()
        if not _PREFIX.match(prefix):
            raise InvalidInput("the domain prefix takes letters and digits only", field="domain_prefix",
                               key="error.vendor_domain_prefix_invalid")
        response = self.client.call("HEAD", f"domains/{prefix}{DOMAIN_SUFFIX}", correlation_id=self._operation(),
                                    accept=(404,), what="domain")
        return response.status_code == 404

    def create_customer(self, details: CustomerDetails) -> CustomerRef:
        """Create the customer's tenant ``<domain_prefix>.onmicrosoft.com`` (create-a-customer)."""
        if not _PREFIX.match(details.domain_prefix or ""):
            raise InvalidInput("the domain prefix takes letters and digits only", field="domain_prefix",
                               key="error.vendor_domain_prefix_invalid")
        company: dict[str, Any] = {"Domain": details.domain_prefix + DOMAIN_SUFFIX}
        if details.tax_id:
            company["OrganizationRegistrationNumber"] = details.tax_id
        address = {
            "FirstName": details.first_name,
            "LastName": details.last_name,
            "AddressLine1": details.address_line1,
            "City": details.city,
            "State": details.state,
            "PostalCode": details.postal_code,
            "Country": details.country,
            "PhoneNumber": details.phone,
        }
        body = {
            "CompanyProfile": company,
            "BillingProfile": {
                "Culture": details.culture,
                "Email": details.email,
                "Language": details.language,
                "CompanyName": details.company_name,
                "DefaultAddress": address,
            },
        }
        data = self.client.call("POST", "customers", correlation_id=self._operation(), body=body, what="customer").json()
        return _customer_ref(data, with_credentials=True)

    def get_customer(self, tenant_id_or_domain: str) -> CustomerRef:
        key = (tenant_id_or_domain or "").strip()
        op = self._operation()
        if _GUID.match(key):
            return _customer_ref(self._get(op, f"customers/{key}", what="customer"))
        domain = key if "." in key else key + DOMAIN_SUFFIX
        flt = json.dumps({"Field": "Domain", "Value": domain, "Operator": "starts_with"}, separators=(",", ":"))
        data = self._get(op, "customers", what="customer", params={"size": "20", "filter": flt})
        for item in data.get("items") or []:
            if (item.get("companyProfile") or {}).get("domain", "").lower() == domain.lower():
                return _customer_ref(item)
        raise NotFound(f"no Partner Center customer with domain {domain}", key="error.vendor_customer_not_found")

    def accept_customer_agreement(
        self, tenant_id: str, first_name: str, last_name: str, email: str, phone: str, accepted_at: datetime
    ) -> None:
        """Confirm that the customer accepted the Microsoft Customer Agreement (App+User only).

        Idempotent: Microsoft's 600061 "A partner confirmed agreement already exists" counts as done."""
        if self._user_token is None:
            raise VendorRefused("app_user_required",
                                "Microsoft accepts the customer agreement confirmation with App+User credentials only",
                                key="error.vendor_not_configured")
        if accepted_at.tzinfo is None:
            raise ValueError("accepted_at must be an aware datetime")
        op = self._operation()
        meta = self.client.call("GET", "agreements", correlation_id=op, params={"agreementType": "MicrosoftCustomerAgreement"},
                                token_provider=self._user_token).json()
        items = [i for i in meta.get("items") or [] if i.get("agreementType") == "MicrosoftCustomerAgreement"]
        if not items:
            raise VendorRefused("no_template", "Partner Center returned no Microsoft Customer Agreement template")
        template = min(items, key=lambda i: i.get("versionRank", 0))["templateId"]
        when = accepted_at.astimezone(UTC)
        body = {
            "primaryContact": {"firstName": first_name, "lastName": last_name, "email": email, "phoneNumber": phone},
            "templateId": template,
            "dateAgreed": when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z",
            "type": "MicrosoftCustomerAgreement",
        }
        try:
            self.client.call("POST", f"customers/{tenant_id}/agreements", correlation_id=op, body=body,
                             what="customer", token_provider=self._user_token)
        except VendorRefused as exc:
            if exc.code != "600061":
                raise

    # -- subscriptions

    def provision(self, request: ProvisionRequest) -> ProvisionResult:
        """One cart line (``request.catalog_item_id`` x quantity), checked out; never twice for one key."""
        customer, item, key = request.customer_tenant_id, request.catalog_item_id, request.request_key
        if not customer or not item:
            raise InvalidInput("Partner Center needs the customer's tenant and the catalogue item",
                               field="catalog_item_id", key="error.vendor_request_incomplete")
        if not key:
            raise InvalidInput("a request key is required to order at Partner Center", field="request_key",
                               key="error.vendor_request_incomplete")
        if request.quantity < 1:
            raise InvalidInput("quantity must be at least 1", field="quantity", key="error.invalid")
        op = self._operation()
        tag = request_tag(key)
        existing = self._find_tagged(op, customer, tag)
        if existing is not None:
            return existing
        billing_cycle, term = self._terms(request)
        line = {
            "id": 0,
            "catalogItemId": item,
            "friendlyName": f"{request.plan_code} {tag}".strip(),
            "quantity": request.quantity,
            "billingCycle": billing_cycle,
            "termDuration": term,
            "provisioningContext": {},
        }
        cart = self.client.call("POST", f"customers/{customer}/carts", correlation_id=op, body={"lineItems": [line]},
                                what="cart").json()
        cart_id = cart["id"]
        errors = [li.get("error") for li in cart.get("lineItems") or [] if li.get("error")]
        if errors:
            err = errors[0] or {}
            raise VendorRefused(str(err.get("errorCode", "")), str(err.get("errorDescription", "cart line refused")))
        return self._checkout(op, customer, cart_id, tag)

    def _checkout(self, op: str, customer: str, cart_id: str, tag: str) -> ProvisionResult:
        path = f"customers/{customer}/carts/{cart_id}/checkout"
        request_id: str | None = None
        for round_ in range(self.client.settings.max_retries + 1):
            if round_:
                found = self._find_tagged(op, customer, tag)  # the lost checkout may have ordered
                if found is not None:
                    return found
            try:
                response = self.client.call("POST", path, correlation_id=op, what="cart", unsafe=True, request_id=request_id)
            except _OutcomeUnknown as exc:
                request_id = exc.request_id
            except Conflict:  # 800060 order in progress / 800064 cart being processed
                request_id = None
            except VendorRefused as exc:
                if exc.code != "800065":  # "can't check out an already submitted cart": look for it
                    raise
                request_id = None
            else:
                return self._result_of_checkout(op, customer, response.json(), tag)
            self._sleep(self.client.backoff(round_ + 1))
        found = self._find_tagged(op, customer, tag)
        if found is not None:
            return found
        raise VendorUnavailable("Partner Center did not confirm the order; provisioning again with the same "
                                "request key finds it if it was placed", key="error.vendor_order_unknown")

    def _result_of_checkout(self, op: str, customer: str, result: dict, tag: str) -> ProvisionResult:
        order_errors = result.get("orderErrors") or []
        orders = result.get("orders") or []
        if order_errors and not orders:
            err = order_errors[0]
            raise VendorRefused(str(err.get("code", "")), str(err.get("description", "order refused")))
        for order in orders:
            for line in order.get("lineItems") or []:
                if line.get("subscriptionId"):
                    return self._result_for(op, customer, line["subscriptionId"])
            if order.get("id"):
                return self._await_order(op, customer, order["id"])
        found = self._find_tagged(op, customer, tag)
        if found is not None:
            return found
        raise VendorUnavailable("Partner Center answered the checkout without an order", key="error.vendor_order_unknown")

    def _await_order(self, op: str, customer: str, order_id: str) -> ProvisionResult:
        """Microsoft provisions asynchronously: read the order until a line has its subscription id."""
        for poll in range(self._pending_polls + 1):
            if poll:
                self._sleep(self.client.backoff(poll))
            order = self._get(op, f"customers/{customer}/orders/{order_id}", what="order")
            for line in order.get("lineItems") or []:
                if line.get("subscriptionId"):
                    return self._result_for(op, customer, line["subscriptionId"])
        raise VendorUnavailable(f"order {order_id} is placed but its subscription is not provisioned yet",
                                key="error.vendor_pending", order_id=order_id)

    def _result_for(self, op: str, customer: str, subscription_id: str) -> ProvisionResult:
        sub = self._get(op, f"customers/{customer}/subscriptions/{subscription_id}", what="subscription")
        return ProvisionResult(vendor_ref=vendor_ref(customer, sub.get("id") or subscription_id),
                               active=str(sub.get("status", "")).lower() == "active")

    def _find_tagged(self, op: str, customer: str, tag: str) -> ProvisionResult | None:
        """The subscription (or placed order) whose partner-defined ``friendlyName`` carries ``tag``."""
        subs = self._get(op, f"customers/{customer}/subscriptions", what="subscription")
        for sub in subs.get("items") or []:
            if tag in str(sub.get("friendlyName") or "") and str(sub.get("status", "")).lower() != "deleted":
                return ProvisionResult(vendor_ref=vendor_ref(customer, sub["id"]),
                                       active=str(sub.get("status", "")).lower() == "active")
        orders = self._get(op, f"customers/{customer}/orders", what="order")
        for order in orders.get("items") or []:
            for line in order.get("lineItems") or []:
                if tag in str(line.get("friendlyName") or ""):
                    if line.get("subscriptionId"):
                        return self._result_for(op, customer, line["subscriptionId"])
                    return self._await_order(op, customer, order["id"])
        return None

    def read_subscription(self, vendor_ref_: str) -> SubscriptionInfo:
        customer, sub_id = split_vendor_ref(vendor_ref_)
        sub = self._get(self._operation(), f"customers/{customer}/subscriptions/{sub_id}", what="subscription")
        return _subscription_info(customer, sub)

    def _patch(self, vendor_ref_: str, changes: dict[str, Any]) -> None:
        """GET the full subscription, change ``changes``, PATCH it back (If-Match its etag). A no-op when
        the subscription already has those values (idempotent for the same arguments)."""
        customer, sub_id = split_vendor_ref(vendor_ref_)
        op = self._operation()
        path = f"customers/{customer}/subscriptions/{sub_id}"
        sub = self._get(op, path, what="subscription")
        if all(sub.get(k) == v for k, v in changes.items()):
            return
        body = {k: v for k, v in sub.items() if k != "links"}
        body.update(changes)
        etag = (sub.get("attributes") or {}).get("etag")
        self.client.call("PATCH", path, correlation_id=op, body=body, what="subscription",
                         headers={"If-Match": etag} if etag else None)

    def change_quantity(self, vendor_ref: str, quantity: int) -> None:
        if quantity < 1:
            raise InvalidInput("quantity must be at least 1", field="quantity", key="error.invalid")
        self._patch(vendor_ref, {"quantity": quantity})

    def suspend(self, vendor_ref: str) -> None:
        self._patch(vendor_ref, {"status": "suspended"})

    def resume(self, vendor_ref: str) -> None:
        self._patch(vendor_ref, {"status": "active"})

    def set_auto_renew(self, vendor_ref: str, on: bool) -> None:
        self._patch(vendor_ref, {"autoRenewEnabled": bool(on)})

    def cancel(self, vendor_ref: str) -> None:
        """New commerce: cancellable inside Microsoft's window only (errors 900117/900213 otherwise →
        ``VendorRefused`` key ``error.vendor_cancel_window_passed``)."""
        self._patch(vendor_ref, {"status": "deleted"})

    def change_plan(self, vendor_ref: str, plan_code: str) -> None:
        raise DomainError(
            "Microsoft plan changes go through the provisioning queue (a new subscription, then the old one "
            "is cancelled inside its window); the connector does not change a plan in place",
            key="error.vendor_plan_change_queued", plan_code=plan_code,
        )


def _customer_ref(data: dict, *, with_credentials: bool = False) -> CustomerRef:
    profile = data.get("companyProfile") or {}
    billing = data.get("billingProfile") or {}
    creds = (data.get("userCredentials") or {}) if with_credentials else {}
    return CustomerRef(
        tenant_id=profile.get("tenantId") or data.get("id", ""),
        domain=profile.get("domain", ""),
        company_name=profile.get("companyName") or billing.get("companyName", ""),
        admin_user=creds.get("userName", ""),
        admin_password=creds.get("password", ""),
    )


def _subscription_info(customer: str, sub: dict) -> SubscriptionInfo:
    return SubscriptionInfo(
        vendor_ref=vendor_ref(customer, sub.get("id", "")),
        status=str(sub.get("status", "")),
        quantity=int(sub.get("quantity") or 0),
        offer_id=str(sub.get("offerId", "")),
        friendly_name=str(sub.get("friendlyName", "")),
        auto_renew=bool(sub.get("autoRenewEnabled")),
        commitment_end=str(sub.get("commitmentEndDate", "")),
        order_id=str(sub.get("orderId", "")),
    )


__all__ = [
    "CustomerDetails",
    "CustomerRef",
    "MsalTokenProvider",
    "PartnerCenterClient",
    "PartnerCenterConnector",
    "PartnerCenterSettings",
    "SubscriptionInfo",
    "configured",
    "map_error",
    "request_tag",
    "split_vendor_ref",
    "vendor_ref",
]
