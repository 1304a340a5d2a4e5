"""State of /help: the configured knowledge base link and support contacts."""

from __future__ import annotations

import reflex as rx

from ..services.core.errors import DomainError
from .base import BaseState
from .parts import SupportContacts


class HelpState(SupportContacts, BaseState):
    @rx.event
    async def load(self):
        try:
            ctx = await self._require()
        except DomainError as exc:
            return self._fail(exc)
        self._show_support()
        return self._two_factor_redirect(ctx)
