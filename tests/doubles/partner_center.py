"""A DOUBLE of Microsoft Partner Center's REST API, for tests only. It is not Partner Center and has
never been compared with it: it answers on 127.0.0.1 (a free port) with the response bodies that
Microsoft's pages document, kept in ``tests/data/partner_center/<page>.json`` (each file names its page
in ``_source``), filled in with the double's own state (customers, carts, orders, subscriptions,
agreements). What it checks is only what those pages say (e.g. Uzbekistan needs an organisation
registration number and a phone, errors 600049/600051; a cart checked out twice answers the first
result); everything else it accepts.

It records every request (method, path, query, headers, JSON body) and can be told to misbehave:
``throttle`` (429 + Retry-After), ``fail`` (503 or another status, nothing done), ``hang_after_commit``
(do the work, e.g. place the order, then answer only after ``seconds`` – longer than the client's
timeout), ``refuse`` (answer one of the documented errors of ``error-codes.json``), and the
new-commerce windows can be closed (``seat_window_open``, ``cancel_window_open``).
"""

from __future__ import annotations

import copy
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

DATA = Path(__file__).resolve().parents[1] / "data" / "partner_center"
UZ_STRICT = {"AM", "AZ", "BY", "HU", "IN", "KZ", "KG", "MD", "RU", "TJ", "UZ", "UA"}  # error-codes 600049/600051


def page(name: str) -> dict:
    """The stored page example ``tests/data/partner_center/<name>.json``."""
    return json.loads((DATA / f"{name}.json").read_text(encoding="utf-8"))


def _body(name: str) -> Any:
    return copy.deepcopy(page(name)["response"]["body"])


@dataclass
class Recorded:
    method: str
    path: str  # without /v1/, e.g. "customers/<id>/carts"
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any


@dataclass
class Fault:
    kind: str  # "status" | "hang"
    method: str | None
    path: str | None  # substring of the path
    times: int
    status: int = 503
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    def matches(self, method: str, path: str) -> bool:
        return self.times > 0 and (self.method in (None, method)) and (self.path is None or self.path in path)


class PartnerCenterDouble:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.requests: list[Recorded] = []
        self.faults: list[Fault] = []
        self.customers: dict[str, dict] = {}
        self.carts: dict[str, dict] = {}  # cart id -> {"customer", "cart", "result"}
        self.orders: dict[str, list[dict]] = {}
        self.subscriptions: dict[str, dict[str, dict]] = {}
        self.agreements: dict[str, list[dict]] = {}
        self.taken_domains: set[str] = set()
        self.seat_window_open = True
        self.cancel_window_open = True
        self.provision_async = False  # checkout answers orders without subscription ids (documented)
        self._server: ThreadingHTTPServer | None = None

    # -- lifecycle

    def start(self) -> PartnerCenterDouble:
        double = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet
                return None

            def _go(self) -> None:
                double._serve(self)

            do_GET = do_POST = do_PATCH = do_HEAD = do_PUT = do_DELETE = _go

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def base_url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1/"

    # -- misbehaviour

    def throttle(self, times: int = 1, retry_after: int = 7, *, path: str | None = None, method: str | None = None) -> None:
        doc = page("api-throttling-guidance")["response"]
        body = dict(doc["body"], message=f"Rate limit is exceeded. Try again in {retry_after} seconds.")
        self.faults.append(Fault("status", method, path, times, 429, body, {"Retry-After": str(retry_after)}))

    def fail(self, times: int = 1, status: int = 503, *, path: str | None = None, method: str | None = None) -> None:
        body = {"code": "", "description": "Service unavailable", "data": [], "source": "PartnerCenterDouble"}
        self.faults.append(Fault("status", method, path, times, status, body))

    def refuse(self, error: str, *, path: str | None = None, method: str | None = None, times: int = 1) -> None:
        """Answer the documented error ``error`` (a key of error-codes.json) instead of doing the call."""
        row = page("error-codes")["errors"][error]
        body = {"code": row["code"], "description": row["description"], "data": [], "source": "PartnerFD"}
        self.faults.append(Fault("status", method, path, times, row["status"], body))

    def hang_after_commit(self, seconds: float, *, path: str = "checkout", method: str | None = "POST", times: int = 1) -> None:
        self.faults.append(Fault("hang", method, path, times, seconds=seconds))

    # -- seeds and views

    def add_customer(self, domain: str = "existing.onmicrosoft.com", tenant_id: str | None = None) -> str:
        tenant_id = tenant_id or str(uuid.uuid4())
        body = _body("create-a-customer")
        body["id"] = tenant_id
        body["companyProfile"].update(tenantId=tenant_id, domain=domain, companyName=domain.split(".")[0])
        body.pop("userCredentials", None)
        with self.lock:
            self.customers[tenant_id] = body
            self.taken_domains.add(domain.lower())
        return tenant_id

    def add_subscription(self, customer: str, *, quantity: int = 5, status: str = "active", friendly_name: str = "Seed") -> str:
        sub = _body("get-a-subscription-by-id")
        sub_id = str(uuid.uuid4())
        sub.update(id=sub_id, quantity=quantity, status=status, friendlyName=friendly_name)
        sub["links"]["self"]["uri"] = f"/customers/{customer}/subscriptions/{sub_id}"
        sub["attributes"] = {"etag": uuid.uuid4().hex, "objectType": "Subscription"}
        with self.lock:
            self.subscriptions.setdefault(customer, {})[sub_id] = sub
        return sub_id

    def subs(self, customer: str) -> list[dict]:
        with self.lock:
            return list(self.subscriptions.get(customer, {}).values())

    def calls(self, method: str | None = None, contains: str = "") -> list[Recorded]:
        with self.lock:
            return [r for r in self.requests if (method is None or r.method == method) and contains in r.path]

    # -- HTTP

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        url = urlsplit(handler.path)
        path = unquote(url.path)
        path = path[len("/v1/"):] if path.startswith("/v1/") else path.lstrip("/")
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        method = handler.command
        record = Recorded(method, path, parse_qs(url.query), {k: v for k, v in handler.headers.items()}, body)
        with self.lock:
            self.requests.append(record)
            fault = next((f for f in self.faults if f.matches(method, path)), None)
            if fault is not None:
                fault.times -= 1
        if fault is not None and fault.kind == "status":
            self._send(handler, fault.status, fault.body, fault.headers)
            return
        with self.lock:
            status, answer = self._route(method, path, record)
        if fault is not None and fault.kind == "hang":
            time.sleep(fault.seconds)  # the work is done; the answer comes after the client gave up
        try:
            self._send(handler, status, answer)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _send(self, handler: BaseHTTPRequestHandler, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        handler.send_response(status)
        for k, v in (headers or {}).items():
            handler.send_header(k, v)
        handler.send_header("Content-Type", "application/json; charset=utf-8")
        handler.send_header("Content-Length", str(len(data)))
        cid = handler.headers.get("MS-CorrelationId")
        if cid:
            handler.send_header("MS-CorrelationId", cid)
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(data)

    @staticmethod
    def _error(name: str) -> tuple[int, dict]:
        row = page("error-codes")["errors"][name]
        return row["status"], {"code": row["code"], "description": row["description"], "data": [], "source": "PartnerFD"}

    def _route(self, method: str, path: str, rec: Recorded) -> tuple[int, Any]:
        parts = path.strip("/").split("/")
        if parts[0] == "domains" and method == "HEAD":
            return (200 if parts[1].lower() in self.taken_domains else 404), None
        if parts[0] == "agreements" and method == "GET":
            return 200, _body("get-customer-agreement-metadata")
        if parts[0] != "customers":
            return 404, {"code": 1000, "description": "Not found", "data": [], "source": "PartnerCenterDouble"}
        if len(parts) == 1:
            return self._customers(method, rec)
        customer = parts[1]
        if customer not in self.customers:
            return self._error("tenant_not_found")
        rest = parts[2:]
        if not rest and method == "GET":
            return 200, self.customers[customer]
        if rest[:1] == ["agreements"] and method == "POST":
            return self._agreement(customer, rec.body)
        if rest[:1] == ["carts"]:
            if len(rest) == 1 and method == "POST":
                return self._create_cart(customer, rec.body)
            if len(rest) == 3 and rest[2] == "checkout" and method == "POST":
                return self._checkout(customer, rest[1])
        if rest[:1] == ["orders"] and method == "GET":
            orders = self.orders.get(customer, [])
            if len(rest) == 1:
                return 200, self._collection(orders, f"/customers/{customer}/orders")
            for order in orders:
                if order["id"] == rest[1]:
                    return 200, order
            return 404, {"code": 20000, "description": "Order ID not found", "data": [], "source": "PartnerFD"}
        if rest[:1] == ["subscriptions"]:
            subs = self.subscriptions.setdefault(customer, {})
            if len(rest) == 1 and method == "GET":
                return 200, self._collection(list(subs.values()), f"/customers/{customer}/subscriptions")
            sub = subs.get(rest[1]) if len(rest) > 1 else None
            if sub is None:
                status, body = self._error("subscription_not_found")
                body["description"] = body["description"].replace("{0}", rest[1] if len(rest) > 1 else "")
                return status, body
            if method == "GET":
                return 200, sub
            if method == "PATCH":
                return self._patch(sub, rec.body or {})
        return 405, {"code": 0, "description": "Method not allowed", "data": [], "source": "PartnerCenterDouble"}

    @staticmethod
    def _collection(items: list, uri: str) -> dict:
        return {"totalCount": len(items), "items": items,
                "links": {"self": {"uri": uri, "method": "GET", "headers": []}}, "attributes": {"objectType": "Collection"}}

    def _customers(self, method: str, rec: Recorded) -> tuple[int, Any]:
        if method == "GET":
            flt = json.loads((rec.query.get("filter") or ["{}"])[0])
            value = str(flt.get("Value", "")).lower()
            field_ = "domain" if flt.get("Field") == "Domain" else "companyName"
            items = [c for c in self.customers.values() if str(c["companyProfile"].get(field_, "")).lower().startswith(value)]
            return 200, self._collection(items, "/customers")
        if method != "POST":
            return 405, None
        req = rec.body or {}
        company, billing = req.get("CompanyProfile") or {}, req.get("BillingProfile") or {}
        address = billing.get("DefaultAddress") or {}
        if str(address.get("Country", "")).upper() in UZ_STRICT:
            if not company.get("OrganizationRegistrationNumber"):
                return self._error("registration_number_missing")
            if not address.get("PhoneNumber"):
                return self._error("phone_missing")
        domain = company.get("Domain", "")
        tenant_id = str(uuid.uuid4())
        body = _body("create-a-customer")
        body["id"] = tenant_id
        body["companyProfile"].update(tenantId=tenant_id, domain=domain, companyName=billing.get("CompanyName", ""))
        body["billingProfile"].update(email=billing.get("Email"), culture=billing.get("Culture"),
                                      language=billing.get("Language"), companyName=billing.get("CompanyName"))
        body["billingProfile"]["defaultAddress"] = {k[0].lower() + k[1:]: v for k, v in address.items()}
        body["userCredentials"] = {"userName": "admin", "password": uuid.uuid4().hex[:12]}
        stored = copy.deepcopy(body)
        stored.pop("userCredentials")
        self.customers[tenant_id] = stored
        self.taken_domains.add(domain.lower())
        return 201, body

    def _agreement(self, customer: str, req: dict) -> tuple[int, Any]:
        contact = (req or {}).get("primaryContact") or {}
        for existing in self.agreements.get(customer, []):
            if existing["primaryContact"] == contact:
                doc = page("confirm-customer-consent-customer-agreement")["error_example"]
                return doc["status"], doc["body"]
        body = _body("confirm-customer-consent-customer-agreement")
        body.update(primaryContact=contact, templateId=req.get("templateId"), dateAgreed=req.get("dateAgreed"),
                    type=req.get("type"), userId=str(uuid.uuid4()))
        self.agreements.setdefault(customer, []).append(body)
        return 201, body

    def _create_cart(self, customer: str, req: dict) -> tuple[int, Any]:
        cart = _body("create-a-cart")
        cart_id = str(uuid.uuid4())
        cart["id"] = cart_id
        cart["lineItems"] = [dict(li, currencyCode="USD", orderGroup="0") for li in (req or {}).get("lineItems") or []]
        cart["links"]["self"]["uri"] = f"/customers/{customer}/carts/{cart_id}"
        self.carts[cart_id] = {"customer": customer, "cart": cart, "result": None}
        return 201, cart

    def _checkout(self, customer: str, cart_id: str) -> tuple[int, Any]:
        entry = self.carts.get(cart_id)
        if entry is None or entry["customer"] != customer:
            return 404, {"code": 800008, "description": "Unable to retrieve cart ID", "data": [], "source": "PartnerFD"}
        if entry["result"] is not None:  # documented: a second checkout repeats the first result
            return 201, entry["result"]
        template = _body("checkout-a-cart")["orders"][0]
        order_id = uuid.uuid4().hex[:12]
        order = dict(template, id=order_id, alternateId=order_id, referenceCustomerId=customer, lineItems=[])
        order["links"] = {"self": {"uri": f"/customers/{customer}/orders/{order_id}", "method": "GET", "headers": []}}
        for n, li in enumerate(entry["cart"]["lineItems"]):
            sub_id = self.add_subscription(customer, quantity=int(li.get("quantity", 1)),
                                           friendly_name=li.get("friendlyName") or "Office 365 E5")
            sub = self.subscriptions[customer][sub_id]
            sub.update(offerId=li.get("catalogItemId"), orderId=order_id, billingCycle=li.get("billingCycle"),
                       termDuration=li.get("termDuration"))
            line = {"lineItemNumber": n, "offerId": li.get("catalogItemId"), "termDuration": li.get("termDuration"),
                    "transactionType": "New", "friendlyName": li.get("friendlyName", ""), "quantity": li.get("quantity")}
            if not self.provision_async:
                line["subscriptionId"] = sub_id
            order["lineItems"].append(line)
        order["status"] = "pending" if self.provision_async else "completed"
        self.orders.setdefault(customer, []).append(order)
        entry["cart"]["status"] = "Ordered"
        entry["result"] = {"orders": [order], "orderErrors": []}
        return 201, entry["result"]

    def finish_provisioning(self, customer: str) -> None:
        """What Microsoft does later when ``provision_async``: the order lines get their subscription ids."""
        with self.lock:
            for order in self.orders.get(customer, []):
                for line in order["lineItems"]:
                    if "subscriptionId" not in line:
                        line["subscriptionId"] = next(s["id"] for s in self.subscriptions[customer].values()
                                                      if s.get("orderId") == order["id"])
                order["status"] = "completed"

    def _patch(self, sub: dict, req: dict) -> tuple[int, Any]:
        quantity = req.get("quantity", sub["quantity"])
        if quantity < sub["quantity"] and not self.seat_window_open:
            return 400, copy.deepcopy(page("change-the-quantity-of-a-subscription")["error_example"]["body"])
        status = req.get("status", sub["status"])
        if status == "deleted" and sub["status"] != "deleted" and not self.cancel_window_open:
            code, body = self._error("cancel_window_hours")
            body["description"] = body["description"].replace("{0}", "168")
            return code, body
        sub.update(quantity=quantity, status=status, autoRenewEnabled=req.get("autoRenewEnabled", sub["autoRenewEnabled"]))
        sub["attributes"] = {"etag": uuid.uuid4().hex, "objectType": "Subscription"}
        return 200, sub
