"""HTTP endpoints on the panel's own port, outside Reflex's event websocket: what payment gateways
call. ``app`` is a Starlette application handed to ``rx.App(api_transformer=...)``; Reflex mounts
its own backend under it, so these routes answer first.

    POST /api/payme            Payme Merchant API (JSON-RPC; always HTTP 200)
    POST /api/click/prepare    Click SHOP API, Prepare (form-encoded)
    POST /api/click/complete   Click SHOP API, Complete (form-encoded)

The routes are thin: read the request, open a session, call the service (``services/billing/payme``,
``services/billing/click``), return its JSON. They use the services only (an import-linter contract
in pyproject keeps it so) and never log a request's headers or body.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.middleware import Middleware

from .gateways import routes
from .headers import SecurityHeaders

# Security headers on every response of the port: Reflex mounts its backend (and, with
# --single-port, the compiled pages) under this app, so the middleware wraps them all.
app = Starlette(routes=routes, middleware=[Middleware(SecurityHeaders)])

__all__ = ["app"]
