"""State of the /analytics page — a placeholder until its module's developer replaces it.

Replace this module and ``pages/analytics.py`` freely; nothing else imports ``AnalyticsState``.
"""

from __future__ import annotations

import reflex as rx

from ..services.errors import DomainError
from .base import BaseState


class AnalyticsState(BaseState):
    @rx.event
    async def load(self):
        """Checks the caller (the guard already did; every handler checks again)."""
        try:
            await self._require()
        except DomainError as exc:
            return self._fail(exc)
