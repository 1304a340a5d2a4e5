"""State of Account → Activity: the organisation's audit trail, filtered, paged, exported."""

from __future__ import annotations

from typing import Any

import reflex as rx

from ..i18n import t as translate
from ..services.core.errors import InvalidInput
from ..services.reporting import activity
from .base import BaseState
from .formatting import fmt_datetime
from .inputs import form_date, form_text, shown_date
from .paging import clamp_page, page_count

PAGE_SIZE = 25
ALL = "all"
CATEGORIES = [ALL, *activity.CATEGORIES]
HIDDEN_DETAILS = {"ip"}


def describe(row: activity.ActivityRow, t) -> tuple[str, str]:
    """(what happened, its details) in the reader's language: the action's label (its code when a
    new action has none yet) and its details as ``name: value``."""
    label = t(f"activity.action.{row.action}")
    if label == f"activity.action.{row.action}":
        label = row.action
    parts = [f"#{row.subscription_id}"] if row.subscription_id else []
    parts += [f"{k}: {v}" for k, v in sorted(row.details.items()) if k not in HIDDEN_DETAILS and v not in (None, "")]
    return label, "; ".join(parts)[:300]


def _args(f: dict[str, str]) -> dict[str, Any]:
    return {"start": f.get("start") or None, "end": f.get("end") or None,
            "category": None if f.get("category") in (None, "", ALL) else f["category"],
            "user_id": None if f.get("user") in (None, "", ALL) else f["user"]}


def _load(session, actor, filters: dict[str, str], page: int):
    rows, total = activity.list_activity(session, actor, **_args(filters), offset=(page - 1) * PAGE_SIZE,
                                         limit=PAGE_SIZE)
    return rows, total, activity.members(session, actor)


def _export(session, actor, fmt: str, locale: str, filters: dict[str, Any]):
    return activity.export_activity(session, actor, fmt, lambda r: describe(r, lambda k: translate(k, locale)),
                                    **filters)


class ActivityState(BaseState):
    rows: list[dict[str, str]] = []
    total: int = 0
    page: int = 1
    pages: int = 1
    people: list[dict[str, str]] = []
    start: str = ""
    end: str = ""
    category: str = ALL
    user: str = ALL
    exporting: bool = False

    @rx.var
    def start_shown(self) -> str:
        return shown_date(self.start, self.locale)

    @rx.var
    def end_shown(self) -> str:
        return shown_date(self.end, self.locale)

    def _filters(self) -> dict[str, str]:
        return {"start": self.start, "end": self.end, "category": self.category, "user": self.user}

    async def _reload(self, page: int) -> None:
        rows, total, people = await self._view(_load, self._filters(), page)
        lang = self._lang
        self.rows = []
        for r in rows:
            what, details = describe(r, self._t)
            self.rows.append({"id": str(r.id), "at": fmt_datetime(r.at, lang, format="short"),
                              "who": r.user_name or r.user_email or self._t("activity.system"), "what": what,
                              "details": details, "ip": r.ip or "—"})
        self.total, self.page = total, page
        self.pages = page_count(total, PAGE_SIZE)
        self.people = [{"id": str(uid), "name": name} for uid, name in people]

    @rx.event
    async def load(self):
        return await self._attempt(self._reload(1))

    @rx.event
    async def apply(self, form: dict):
        try:
            self.start, self.end = form_date(form, "start", self.locale), form_date(form, "end", self.locale)
        except InvalidInput as exc:
            return self._fail(exc)
        category, user = form_text(form, "category", 32) or ALL, form_text(form, "user", 16) or ALL
        self.category = category if category in CATEGORIES else ALL
        self.user = user if user == ALL or user in {p["id"] for p in self.people} else ALL
        return await self._attempt(self._reload(1))

    @rx.event
    async def reset_filters(self):
        self.start, self.end, self.category, self.user = "", "", ALL, ALL
        return await self._attempt(self._reload(1))

    @rx.event
    async def go_page(self, page: Any):
        return await self._attempt(self._reload(clamp_page(page, self.total, PAGE_SIZE)))

    @rx.event
    async def export(self, fmt: str):
        if fmt not in ("csv", "xlsx"):
            return self._fail(InvalidInput("unknown format", key="error.billing.export_format"))
        self.exporting = True
        locale, filters = self.locale, _args(self._filters())
        try:
            filename, data = await self._act(_export, fmt, locale, filters)
        except Exception as exc:  # noqa: BLE001
            self.exporting = False
            return self._fail(exc)
        self.exporting = False
        return self._download(filename, data, fmt)
