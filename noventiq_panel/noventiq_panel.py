"""The Reflex app: global styles, the pages (registered by importing ``pages``); the theme is the
Radix plugin's, in ``rxconfig.py``."""

from __future__ import annotations

import logging
import traceback

import reflex as rx

from . import pages  # noqa: F401 - importing registers every @panel_page
from .api import app as gateway_api
from .i18n import t

log = logging.getLogger("noventiq_panel")


def backend_exception_handler(exception: Exception):
    """An unexpected error in a handler: logged with its traceback, never shown to the user."""
    log.error("unexpected error in an event handler:\n%s",
              "".join(traceback.format_exception(type(exception), exception, exception.__traceback__)))
    return rx.toast.error(
        f"{t('error.unexpected', 'ru')} / {t('error.unexpected', 'en')}",
        id="backend_error",
        close_button=True,
    )


app = rx.App(
    stylesheets=["/panel.css"],
    html_lang="ru",
    backend_exception_handler=backend_exception_handler,
    toaster=rx.toast.provider(position="top-right", close_button=True, rich_colors=True),
    # The payment gateways' endpoints (POST /api/payme, /api/click/prepare, /api/click/complete) on
    # the panel's own port; Reflex mounts its backend under this Starlette app.
    api_transformer=gateway_api,
)

from .components.layout import PAGES  # noqa: E402

for _render, _page in PAGES:
    app.add_page(_render, **_page)

# The job scheduler (jobs/scheduler.py) runs inside each worker's lifespan — never at import, since
# `reflex export` and every worker import this module. Only the lease holder runs jobs;
# PANEL_SCHEDULER=0 turns it off (the e2e tests do).
from jobs.scheduler import lifespan as _scheduler_lifespan  # noqa: E402

app.register_lifespan_task(_scheduler_lifespan)
