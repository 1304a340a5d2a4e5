"""State of /help: the configured knowledge base link and support contacts."""

from __future__ import annotations

import reflex as rx

from ..config import get_settings
from ..services.core.errors import DomainError
from .base import BaseState


class HelpState(BaseState):
    kb_url: str = ""
    support_email: str = ""
    support_phone: str = ""

    @rx.event
    async def load(self):
        try:
            await self._require()
        except DomainError as exc:
            return self._fail(exc)
        settings = get_settings()
        self.kb_url = settings.knowledge_base_url
        self.support_email = settings.support_email
        self.support_phone = settings.support_phone
