"""State of /profile: the user's name and language, password change, e-mail notification history."""

from __future__ import annotations

from typing import Any

import reflex as rx

from ..i18n import LOCALES
from noventiq_panel.services.identity import auth, two_factor, users
from noventiq_panel.services.notify import notifications
from ..services.core.errors import DomainError, InvalidInput
from .base import BaseState
from .formatting import fmt_datetime
from .inputs import form_text, parse_id
from .paging import clamp_page, fetch_page, page_count

HISTORY_PAGE_SIZE = 10
STATUS_COLORS = {"queued": "amber", "sent": "green", "failed": "red"}


def _profile(session, actor):
    return users.get_profile(session, actor.user_id)


def _update(session, actor, name: str, locale: str):
    return users.update_profile(session, actor.user_id, name=name, locale=locale)


def _history(session, actor, page: int):
    rows, total, page = fetch_page(
        lambda offset, limit: notifications.history(session, actor.user_id, limit=limit, offset=offset),
        page, HISTORY_PAGE_SIZE)
    return [
        {"id": r.id, "created_at": r.created_at, "subject": r.subject, "kind": r.kind, "status": r.status,
         "to": r.to_email}
        for r in rows
    ], total, page


def _message(session, actor, notification_id: int) -> dict[str, Any]:
    row = notifications.get_for_user(session, actor.user_id, notification_id)
    return {"id": row.id, "subject": row.subject, "text": row.body_text, "html": row.body_html,
            "to": row.to_email, "created_at": row.created_at, "sent_at": row.sent_at, "status": row.status,
            "kind": row.kind}


def _tf_status(session, actor):
    return two_factor.status(session, actor.user_id)


def _tf_start(session, actor):
    e = two_factor.start(session, actor.user_id)
    return {"secret": " ".join(e.secret[i:i + 4] for i in range(0, len(e.secret), 4)), "qr": e.qr_svg}


def _tf_confirm(session, actor, code: str):
    return two_factor.confirm(session, actor.user_id, code)


def _tf_disable(session, actor, code: str):
    two_factor.disable(session, actor.user_id, code)


class ProfileState(BaseState):
    loaded: bool = False
    # two-factor sign-in
    tf_on: bool = False
    tf_left: int = 0
    tf_enrol: dict[str, str] = {}  # {"secret", "qr"} while enrolling
    tf_codes: list[str] = []  # the recovery codes, shown once after enrolment
    tf_error: str = ""
    tf_required: bool = False  # sent here because the organisation requires it
    name: str = ""
    email: str = ""
    profile_locale: str = "ru"
    password_error: str = ""
    form_key: int = 0

    history: list[dict[str, str]] = []
    history_page: int = 1
    history_pages: int = 1
    history_total: int = 0

    message_open: bool = False
    message: dict[str, str] = {}

    @rx.event
    async def load(self):
        try:
            profile = await self._view(_profile)
            await self._load_history(1)
        except Exception as exc:  # noqa: BLE001
            return self._fail(exc)
        self.name, self.email, self.profile_locale = profile.name, profile.email, profile.locale
        self.tf_on, self.tf_left = await self._view(_tf_status)
        self.tf_required = self.router.url.query_parameters.get("two_factor") == "required" and not self.tf_on
        self.tf_enrol, self.tf_codes, self.tf_error = {}, [], ""
        self.message_open = False
        self.password_error = ""
        self.loaded = True

    async def _load_history(self, page: int) -> None:
        rows, total, page = await self._view(_history, page)
        lang = self._lang
        self.history = [
            {
                "id": str(r["id"]),
                "date": fmt_datetime(r["created_at"], lang, format="short"),
                "subject": r["subject"],
                "kind": self._t(f"notifications.kind.{r['kind']}"),
                "status": self._t(f"notifications.status.{r['status']}"),
                "status_color": STATUS_COLORS.get(r["status"], "gray"),
            }
            for r in rows
        ]
        self.history_total = total
        self.history_pages = page_count(total, HISTORY_PAGE_SIZE)
        self.history_page = page

    @rx.event
    async def go_page(self, page: Any):
        return await self._attempt(self._load_history(clamp_page(page, self.history_total, HISTORY_PAGE_SIZE)))

    @rx.event
    async def open_message(self, notification_id: Any):
        try:
            data = await self._act(_message, parse_id(notification_id))
        except Exception as exc:  # noqa: BLE001
            return self._fail(exc)
        lang = self._lang
        self.message = {
            "id": str(data["id"]),
            "subject": data["subject"],
            "text": data["text"],
            "html": data["html"],
            "to": data["to"],
            "date": fmt_datetime(data["created_at"], lang),
            "status": self._t(f"notifications.status.{data['status']}"),
            "status_color": STATUS_COLORS.get(data["status"], "gray"),
            "kind": self._t(f"notifications.kind.{data['kind']}"),
        }
        self.message_open = True

    @rx.event
    def set_message_open(self, value: bool):
        self.message_open = bool(value)
        if not value:
            self.message = {}

    @rx.event
    async def save_profile(self, form: dict):
        try:
            name = form_text(form, "name", 255)
            locale = form_text(form, "locale", 8) or self.profile_locale
            if locale not in LOCALES:
                raise InvalidInput("unknown locale", field="locale", key="auth.locale_invalid")
            profile = await self._act(_update, name, locale)
        except Exception as exc:  # noqa: BLE001
            return self._fail(exc)
        changed_language = profile.locale != self.locale
        self.name, self.profile_locale = profile.name, profile.locale
        self.user_name = profile.name
        self.locale = profile.locale
        if changed_language:
            # Server-formatted view data (dates, sums) is in the old language.
            return [self._ok("common.saved"), rx.call_script("window.location.reload()")]
        return self._ok("common.saved")

    @rx.event
    async def change_password(self, form: dict):
        self.password_error = ""
        try:
            old = form_text(form, "old_password", 300, strip=False)
            new = form_text(form, "new_password", 300, strip=False)
            if not old or not new:
                raise InvalidInput("fill in", key="signin.fill_in")
            if new != form_text(form, "new_password2", 300, strip=False):
                raise InvalidInput("passwords differ", key="signin.passwords_differ")
            await self._require()
            await self._call(auth.change_password, self.session_secret, old, new)
        except DomainError as exc:
            if isinstance(exc, InvalidInput):
                self.password_error = self._error_text(exc)
                return
            return self._fail(exc)
        except Exception as exc:  # noqa: BLE001
            return self._fail(exc)
        self.form_key += 1  # a fresh, empty form
        return self._ok("auth.password_changed")


    @rx.event
    async def tf_start(self):
        try:
            self.tf_enrol = await self._act(_tf_start)
        except Exception as exc:  # noqa: BLE001
            return self._fail(exc)
        self.tf_error, self.tf_codes = "", []

    @rx.event
    async def tf_confirm(self, form: dict):
        try:
            codes = await self._act(_tf_confirm, form_text(form, "code", 32))
        except DomainError as exc:
            self.tf_error = self._error_text(exc)
            return
        except Exception as exc:  # noqa: BLE001
            return self._fail(exc)
        self.tf_enrol, self.tf_codes, self.tf_error = {}, codes, ""
        self.tf_on, self.tf_left, self.tf_required = True, len(codes), False
        return self._ok("two_factor.enabled")

    @rx.event
    def tf_codes_saved(self):
        self.tf_codes = []

    @rx.event
    async def tf_disable(self, form: dict):
        try:
            await self._act(_tf_disable, form_text(form, "code", 32))
        except DomainError as exc:
            self.tf_error = self._error_text(exc)
            return
        except Exception as exc:  # noqa: BLE001
            return self._fail(exc)
        self.tf_on, self.tf_left, self.tf_error = False, 0, ""
        return self._ok("two_factor.disabled")
