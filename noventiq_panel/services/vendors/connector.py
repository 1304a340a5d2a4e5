"""Vendor connectors: how a subscription is created and changed at the vendor.

Subscription services call the connector of the product's vendor inside their transaction, after
the checks and before the commit; a connector that raises aborts the whole operation (nothing is
charged). A connector (Microsoft Partner Center, ...) implements :class:`VendorConnector` and is
registered for its vendor code with :func:`register`.

A vendor with no registered connector is **manual**: :func:`connector_for` answers None and the
subscription services put the order or change in the provisioning queue
(``services/subscriptions/provisioning.py``) for an operator to carry out at the vendor. Nothing is
"activated" without a vendor having done it.

Connectors are registered when the process first asks for one (:func:`connector_for`), from the
configuration: Partner Center for the vendor ``microsoft`` when ``PANEL_PARTNER_CENTER_*`` is set
(``partner_center.py``), and ``PANEL_CONNECTORS`` names ``module:function`` entries, each called with
:func:`register` as its argument (a site's own connectors; the end-to-end tests plug their test
double in this way).
"""

from __future__ import annotations

import importlib
import logging
from datetime import datetime
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from noventiq_panel.config import get_settings


@dataclass(frozen=True)
class ProvisionRequest:
    """What the vendor needs to know to create a subscription."""

    org_id: int
    subscription_id: int
    vendor_code: str
    product_code: str
    plan_code: str
    quantity: int
    is_trial: bool = False
    # What a real vendor API needs besides (None for the built-in connector and manual vendors):
    catalog_item_id: str | None = None  # the plan's item in the vendor's catalogue (Partner Center)
    customer_tenant_id: str | None = None  # the organisation's tenant at the vendor (Microsoft)
    # Stable across retries of the same order: a connector that lost the answer to a call finds the
    # order it placed under this key instead of ordering twice.
    request_key: str = ""


@dataclass(frozen=True)
class ProvisionResult:
    vendor_ref: str
    active: bool = True  # False: the vendor activates later (the subscription stays pending)


@runtime_checkable
class VendorConnector(Protocol):
    """Operations the panel asks of a vendor. Each must be idempotent for the same arguments."""

    def provision(self, request: ProvisionRequest) -> ProvisionResult: ...

    def change_quantity(self, vendor_ref: str, quantity: int) -> None: ...

    def change_plan(self, vendor_ref: str, plan_code: str) -> None: ...

    def suspend(self, vendor_ref: str) -> None: ...

    def resume(self, vendor_ref: str) -> None: ...

    def cancel(self, vendor_ref: str) -> None: ...

    def set_auto_renew(self, vendor_ref: str, on: bool) -> None: ...


@dataclass(frozen=True)
class CustomerDetails:
    """What create-a-customer needs. ``tax_id`` is the organisation's registration number (ИНН/STIR),
    required by Microsoft for Uzbekistan; ``phone`` is required for UZ too (error 600051)."""

    domain_prefix: str  # <prefix>.onmicrosoft.com
    company_name: str
    email: str
    phone: str
    first_name: str
    last_name: str
    address_line1: str
    city: str
    postal_code: str = ""
    state: str = ""
    country: str = "UZ"
    tax_id: str = ""
    culture: str = "en-US"
    language: str = "en"


@dataclass(frozen=True)
class CustomerRef:
    tenant_id: str
    domain: str
    company_name: str = ""
    # Only when the customer was just created: the admin account Microsoft made (shown once).
    admin_user: str = ""
    admin_password: str = field(default="", repr=False)


@runtime_checkable
class TenantDirectory(Protocol):
    """A connector that also keeps its customers' tenants (Microsoft Partner Center): the panel asks
    it whether a new tenant's domain is free, creates the tenant, finds an existing one among the
    reseller's customers, and confirms the customer's acceptance of the Microsoft Customer
    Agreement (``services/identity/microsoft_tenant.py``)."""

    def domain_available(self, prefix: str) -> bool: ...

    def create_customer(self, details: CustomerDetails) -> CustomerRef: ...

    def get_customer(self, tenant_id_or_domain: str) -> CustomerRef: ...

    def accept_customer_agreement(self, tenant_id: str, first_name: str, last_name: str, email: str, phone: str,
                                  accepted_at: datetime) -> None: ...


log = logging.getLogger(__name__)

MICROSOFT = "microsoft"  # the catalog's vendor code of Microsoft's products (CSP: Partner Center)
# loaded by name like a site's own connectors (the connector module stays below its implementations)
PARTNER_CENTER = "noventiq_panel.services.vendors.partner_center:register_configured"

_registry: dict[str, VendorConnector] = {}
_loaded = False


def register(vendor_code: str, connector: VendorConnector) -> None:
    """Use ``connector`` for the vendor with this code (``"*"``: for every vendor without one of
    its own — the tests' double)."""
    if not isinstance(connector, VendorConnector):
        raise TypeError("connector must implement VendorConnector")
    _registry[vendor_code] = connector


def unregister(vendor_code: str) -> None:
    _registry.pop(vendor_code, None)


def _load_configured() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    entries = [e.strip() for e in get_settings().connectors.split(",")]
    if get_settings().partner_center_configured:  # PANEL_PARTNER_CENTER_TENANT_ID, _APP_ID, _SECRET
        entries.insert(0, PARTNER_CENTER)
    for entry in filter(None, entries):
        module, _, function = entry.partition(":")
        getattr(importlib.import_module(module), function or "register")(register)
        log.warning("vendor connectors registered by %s", entry)


def connector_for(vendor_code: str | None) -> VendorConnector | None:
    """The vendor's registered connector; None: a manual vendor (the provisioning queue)."""
    _load_configured()
    return _registry.get(vendor_code or "") or _registry.get("*")


def tenant_directory() -> TenantDirectory | None:
    """Microsoft's connector when it keeps the customers' tenants (Partner Center); None: tenants
    are created and confirmed by the operator (the provisioning queue)."""
    conn = connector_for(MICROSOFT)
    return conn if isinstance(conn, TenantDirectory) else None
