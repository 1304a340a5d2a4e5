"""A TEST DOUBLE of a vendor with an API that activates every order at once and keeps what it was
told. No licence exists anywhere: the suite uses it where a test is about the panel's own rules
(money, seats, renewals), not about provisioning. The provisioning queue's tests run without it.

In-process tests get it from the autouse fixture in ``tests/conftest.py``; the end-to-end server
gets it through ``PANEL_CONNECTORS=tests.doubles.instant_vendor:register`` (every vendor but
``MANUAL``, whose orders go to the queue as a vendor without an API)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from noventiq_panel.services.vendors.connector import ProvisionRequest, ProvisionResult

MANUAL = ("kaspersky",)  # in the end-to-end panel: the demo's vendor without an API


@dataclass
class InstantVendor:
    calls: list[tuple] = field(default_factory=list)
    requests: list[ProvisionRequest] = field(default_factory=list)  # every order, as asked
    refuse: str | None = None  # an operation name to fail (a vendor's refusal)

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


def register(register_fn) -> None:
    """For the end-to-end server: every vendor of the demo catalogue activates at once through this
    double, except those in ``MANUAL`` (no connector: the provisioning queue)."""
    import yaml

    from noventiq_panel.services.demo.demo import DEMO_CATALOG

    double = InstantVendor()
    for vendor in yaml.safe_load(open(DEMO_CATALOG, encoding="utf-8"))["vendors"]:
        if vendor["code"] not in MANUAL:
            register_fn(vendor["code"], double)
