"""Vendor connectors: how a subscription is created and changed at the vendor.

Subscription services call the connector of the product's vendor inside their transaction, after
the checks and before the commit; a connector that raises aborts the whole operation (nothing is
charged). The built-in connector activates at once and answers with a reference of its own, so the
panel works without any vendor API. A real connector (Microsoft Partner Center, ...) implements
:class:`VendorConnector` and is registered for its vendor code with :func:`register`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


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


class BuiltinConnector:
    """Activates at once and keeps nothing: the reference is ``BUILTIN-<uuid>``."""

    def provision(self, request: ProvisionRequest) -> ProvisionResult:
        return ProvisionResult(vendor_ref=f"BUILTIN-{uuid.uuid4()}", active=True)

    def change_quantity(self, vendor_ref: str, quantity: int) -> None:
        return None

    def change_plan(self, vendor_ref: str, plan_code: str) -> None:
        return None

    def suspend(self, vendor_ref: str) -> None:
        return None

    def resume(self, vendor_ref: str) -> None:
        return None

    def cancel(self, vendor_ref: str) -> None:
        return None


_BUILTIN = BuiltinConnector()
_registry: dict[str, VendorConnector] = {}


def register(vendor_code: str, connector: VendorConnector) -> None:
    """Use ``connector`` for the vendor with this code (tests and real integrations)."""
    if not isinstance(connector, VendorConnector):
        raise TypeError("connector must implement VendorConnector")
    _registry[vendor_code] = connector


def unregister(vendor_code: str) -> None:
    _registry.pop(vendor_code, None)


def connector_for(vendor_code: str | None) -> VendorConnector:
    """The vendor's registered connector, else the built-in one."""
    return _registry.get(vendor_code or "", _BUILTIN)
