"""Issue 14: production headers on every response of the panel's port (the gateway app wraps
Reflex's backend and, with --single-port, the compiled pages)."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from noventiq_panel.api.headers import SecurityHeaders
from noventiq_panel.config import reset_settings


def _client() -> TestClient:
    inner = Starlette(routes=[Route("/page", lambda request: PlainTextResponse("ok"))])
    return TestClient(SecurityHeaders(inner))


def test_every_response_carries_the_security_headers_and_hsts_only_over_https(monkeypatch):
    monkeypatch.setenv("PANEL_BASE_URL", "http://localhost:3000")
    reset_settings()
    r = _client().get("/page")
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
    assert r.headers["x-frame-options"] == "DENY" and r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["referrer-policy"] == "strict-origin-when-cross-origin"
    assert "strict-transport-security" not in r.headers
    assert _client().get("/missing").headers["x-frame-options"] == "DENY"  # errors too
    monkeypatch.setenv("PANEL_BASE_URL", "https://panel.example.uz")
    reset_settings()
    assert _client().get("/page").headers["strict-transport-security"].startswith("max-age=")
    reset_settings()


def test_the_gateway_app_of_the_panel_has_the_middleware():
    from noventiq_panel.api import app

    assert any(m.cls is SecurityHeaders for m in app.user_middleware)
