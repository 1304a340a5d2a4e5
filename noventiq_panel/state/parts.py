"""Pieces of state that several pages share, as Reflex state mixins: a page state lists the piece
before ``BaseState`` (``class CatalogState(Search, BaseState)``) and gets its vars and handlers.

- ``Search``: the search box of a list page (``components.search.search_form``).
- ``BalanceFigures``: the balance, credit limit and available amount (home and billing pages).
- ``SupportContacts``: the knowledge base link and the support contacts (home and help pages).
"""

from __future__ import annotations

from decimal import Decimal

import reflex as rx

from ..config import get_settings
from .base import BaseState
from .formatting import fmt_money
from .inputs import clean_text


class Search(BaseState, mixin=True):
    """``search`` and the handlers of the search form; the page reloads in ``_search_changed``."""

    search: str = ""

    async def _search_changed(self):
        raise NotImplementedError

    @rx.event
    async def apply_search(self, form: dict):
        self.search = clean_text(form.get("search", "") if isinstance(form, dict) else "")
        return await self._search_changed()

    @rx.event
    async def clear_search(self):
        self.search = ""
        return await self._search_changed()


class BalanceFigures(BaseState, mixin=True):
    """The organisation's money at a glance, formatted in the UI language."""

    currency: str = ""
    balance: str = ""
    balance_negative: bool = False
    is_postpaid: bool = False
    credit_limit: str = ""
    available: str = ""

    def _show_balance(self, *, currency: str, balance: Decimal, credit_limit: Decimal, available: Decimal,
                      billing_mode: str) -> None:
        lang = self._lang
        self.currency = currency
        self.balance = fmt_money(balance, currency, lang)
        self.balance_negative = balance < 0
        self.is_postpaid = billing_mode == "postpaid"
        self.credit_limit = fmt_money(credit_limit, currency, lang)
        self.available = fmt_money(available, currency, lang)


class SupportContacts(BaseState, mixin=True):
    """Where a customer finds help (from the settings)."""

    kb_url: str = ""
    support_email: str = ""
    support_phone: str = ""

    def _show_support(self) -> None:
        settings = get_settings()
        self.kb_url = settings.knowledge_base_url
        self.support_email = settings.support_email
        self.support_phone = settings.support_phone
