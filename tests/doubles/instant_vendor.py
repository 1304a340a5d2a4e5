"""A TEST DOUBLE of a vendor with an API that activates every order at once and keeps what it was
told. No licence exists anywhere: the suite uses it where a test is about the panel's own rules
(money, seats, renewals), not about provisioning. The provisioning queue's tests run without it.

In-process tests get it from the autouse fixture in ``tests/conftest.py``; the end-to-end server
gets it through ``PANEL_CONNECTORS=tests.doubles.instant_vendor:register`` (every vendor but
``MANUAL``, whose orders go to the queue as a vendor without an API).

It also keeps a directory of Microsoft tenants, as Partner Center does for its customers
(``TenantDirectory``): ``TAKEN`` domains and those it created are not available, ``customers`` are
found by domain or id, every created tenant gets a fresh id and an administrator account, and an
accepted agreement is recorded in ``agreements``."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from noventiq_panel.services.core.errors import NotFound
from noventiq_panel.services.vendors.connector import CustomerDetails, CustomerRef, ProvisionRequest, ProvisionResult

MANUAL = ("kaspersky",)  # in the end-to-end panel: the demo's vendor without an API
TAKEN = ("contoso", "fabrikam")  # tenant domain prefixes another customer holds at "Microsoft"


@dataclass
class InstantVendor:
    calls: list[tuple] = field(default_factory=list)
    requests: list[ProvisionRequest] = field(default_factory=list)  # every order, as asked
    refuse: str | None = None  # an operation name to fail (a vendor's refusal)
    customers: dict[str, CustomerRef] = field(default_factory=dict)  # tenant id -> the customer
    created: list[CustomerDetails] = field(default_factory=list)
    agreements: list[tuple] = field(default_factory=list)

    def _call(self, name: str, *args) -> None:
        if self.refuse == name:
            raise RuntimeError(f"the vendor refused {name}")
        self.calls.append((name, *args))

    def provision(self, request: ProvisionRequest) -> ProvisionResult:
        self._call("provision", request.subscription_id, request.quantity)
        self.requests.append(request)
        return ProvisionResult(vendor_ref=f"DOUBLE-{uuid.uuid4()}", active=True)

    def change_quantity(self, vendor_ref: str, quantity: int) -> None:
        self._call("change_quantity", vendor_ref, quantity)

    def change_plan(self, vendor_ref: str, plan_code: str) -> None:
        self._call("change_plan", vendor_ref, plan_code)

    def suspend(self, vendor_ref: str) -> None:
        self._call("suspend", vendor_ref)

    def resume(self, vendor_ref: str) -> None:
        self._call("resume", vendor_ref)

    def cancel(self, vendor_ref: str) -> None:
        self._call("cancel", vendor_ref)

    def set_auto_renew(self, vendor_ref: str, on: bool) -> None:
        self._call("auto_renew", vendor_ref, on)

    # -- the tenant directory

    def add_customer(self, domain: str, tenant_id: str | None = None) -> CustomerRef:
        ref = CustomerRef(tenant_id=tenant_id or str(uuid.uuid4()), domain=domain)
        self.customers[ref.tenant_id] = ref
        return ref

    def domain_available(self, prefix: str) -> bool:
        self._call("domain_available", prefix)
        domain = f"{prefix.lower()}.onmicrosoft.com"
        return prefix.lower() not in TAKEN and all(c.domain != domain for c in self.customers.values())

    def create_customer(self, details: CustomerDetails) -> CustomerRef:
        self._call("create_customer", details.domain_prefix)
        self.created.append(details)
        ref = self.add_customer(f"{details.domain_prefix}.onmicrosoft.com")
        return CustomerRef(ref.tenant_id, ref.domain, details.company_name,
                           admin_user=f"admin@{ref.domain}", admin_password=f"Pw-{uuid.uuid4().hex[:12]}")

    def get_customer(self, tenant_id_or_domain: str) -> CustomerRef:
        self._call("get_customer", tenant_id_or_domain)
        key = tenant_id_or_domain.lower()
        for ref in self.customers.values():
            if key in (ref.tenant_id, ref.domain):
                return ref
        raise NotFound("no such customer", key="error.vendor_customer_not_found")

    def accept_customer_agreement(self, tenant_id, first_name, last_name, email, phone, accepted_at) -> None:
        self._call("accept_customer_agreement", tenant_id)
        self.agreements.append((tenant_id, first_name, last_name, email, phone, accepted_at))


def register(register_fn) -> None:
    """For the end-to-end server: every vendor of the demo catalogue activates at once through this
    double, except those in ``MANUAL`` (no connector: the provisioning queue)."""
    import yaml

    from noventiq_panel.services.demo.demo import DEMO_CATALOG

    double = InstantVendor()
    for vendor in yaml.safe_load(open(DEMO_CATALOG, encoding="utf-8"))["vendors"]:
        if vendor["code"] not in MANUAL:
            register_fn(vendor["code"], double)
