"""The payment gateways' routes (module documentation of ``noventiq_panel.api``)."""

from __future__ import annotations

import logging
from urllib.parse import parse_qsl

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

# Money confirmed here may complete an order waiting for a paid invoice and bring an overdrawn
# balance back: the subscriptions area registers those handlers with billing when imported.
import noventiq_panel.services.subscriptions.credit_control
import noventiq_panel.services.subscriptions.pending_actions  # noqa: F401
from noventiq_panel.db import session_scope
from noventiq_panel.services.billing import click, payme

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024  # the gateways send a few hundred bytes


async def _read(request: Request) -> bytes | None:
    """The request body, or None when it is larger than MAX_BODY."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _form(body: bytes | None) -> dict[str, str]:
    """The form fields as received (the first of a repeated name); {} for a body that is not one."""
    if not body:
        return {}
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True)
    except (UnicodeDecodeError, ValueError):
        return {}
    fields: dict[str, str] = {}
    for name, value in pairs:
        fields.setdefault(name, value)
    return fields


def _payme(body: bytes, authorization: str | None) -> dict:
    try:
        with session_scope() as session:
            return payme.handle(session, body, authorization)
    except Exception:  # no session (the database is down): still the protocol's answer
        log.exception("Payme request failed before the service")
        return payme.error_answer(payme.SYSTEM_ERROR, "system")


def _click(step, fields: dict[str, str]) -> dict:
    with session_scope() as session:
        return step(session, fields)


async def payme_rpc(request: Request) -> JSONResponse:
    """Payme's JSON-RPC: the protocol's result or error object, always HTTP 200."""
    if request.method != "POST":
        return JSONResponse(payme.error_answer(payme.NOT_POST, "post"), status_code=200)
    body = await _read(request)
    answer = await run_in_threadpool(_payme, body or b"", request.headers.get("authorization"))
    return JSONResponse(answer, status_code=200)


async def click_prepare(request: Request) -> JSONResponse:
    answer = await run_in_threadpool(_click, click.prepare, _form(await _read(request)))
    return JSONResponse(answer, status_code=200)


async def click_complete(request: Request) -> JSONResponse:
    answer = await run_in_threadpool(_click, click.complete, _form(await _read(request)))
    return JSONResponse(answer, status_code=200)


routes = [
    Route("/api/payme", payme_rpc, methods=["GET", "POST", "PUT", "DELETE", "PATCH"]),
    Route("/api/click/prepare", click_prepare, methods=["POST"]),
    Route("/api/click/complete", click_complete, methods=["POST"]),
]
