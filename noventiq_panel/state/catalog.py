"""State of the /catalog page — a placeholder until its module's developer replaces it.

Replace this module and ``pages/catalog.py`` freely; nothing else imports ``CatalogState``.
"""

from __future__ import annotations

import reflex as rx

from ..services.errors import DomainError
from .base import BaseState


class CatalogState(BaseState):
    @rx.event
    async def load(self):
        """Checks the caller (the guard already did; every handler checks again)."""
        try:
            await self._require()
        except DomainError as exc:
            return self._fail(exc)
