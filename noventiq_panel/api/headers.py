"""Security headers on every HTTP response of the panel's port (pages, assets, API).

- ``Content-Security-Policy``: scripts, styles, images, fonts and connections from the panel
  itself only (the compiled React app needs inline scripts and styles, Plotly needs ``eval`` and
  ``blob:``; the event websocket is ``ws(s):`` to the same host); ``frame-ancestors 'none'`` and
  ``X-Frame-Options: DENY`` keep the panel out of other sites' frames (click-jacking);
  ``form-action``/``base-uri`` stay on the panel.
- ``X-Content-Type-Options: nosniff``, ``Referrer-Policy: strict-origin-when-cross-origin`` (a
  set-password link's token never leaves in a Referer), and ``Strict-Transport-Security`` when
  the panel's base URL is https.
"""

from __future__ import annotations

from noventiq_panel.config import get_settings

CSP = ("default-src 'self'; script-src 'self' 'unsafe-inline' 'unsafe-eval'; style-src 'self' 'unsafe-inline'; "
       "img-src 'self' data: blob:; font-src 'self' data:; connect-src 'self' ws: wss:; worker-src 'self' blob:; "
       "object-src 'none'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'")
HSTS = "max-age=31536000; includeSubDomains"


def security_headers() -> list[tuple[bytes, bytes]]:
    headers = [(b"content-security-policy", CSP.encode()), (b"x-frame-options", b"DENY"),
               (b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"strict-origin-when-cross-origin")]
    if get_settings().base_url.lower().startswith("https://"):
        headers.append((b"strict-transport-security", HSTS.encode()))
    return headers


class SecurityHeaders:
    """Pure ASGI middleware: adds :func:`security_headers` to every HTTP response it has not set."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(n, v) for n, v in security_headers() if n not in present]
                message = {**message, "headers": list(message.get("headers", [])) + extra}
            await send(message)

        await self.app(scope, receive, send_with_headers)
