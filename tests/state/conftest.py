"""State tests: page states driven without a server (see REFLEX-NOTES.md, "Testing")."""

from __future__ import annotations

import pytest
import reflex as rx

from noventiq_panel.services.identity import auth


@pytest.fixture(autouse=True)
def _cheap_hashing(monkeypatch):
    """argon2 with its production cost makes every sign-in slow; tests need only correctness."""
    from argon2 import PasswordHasher

    monkeypatch.setattr(auth, "HASHER", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))


def new_state(state_cls):
    """A fresh state tree (one browser tab) and its ``state_cls`` substate."""
    root = rx.State(_reflex_internal_init=True)
    return root.get_substate(state_cls.get_full_name().split(".")[1:])


def signed_in(state, session, email: str, password: str):
    """Sign ``email`` in through the service and put the secret where the browser would keep it."""
    raw, _user = auth.sign_in(session, email, password)
    session.commit()  # no open transaction left to block the handler's session (SQLite)
    state.session_secret = raw
    return raw


def events(result) -> list:
    if result is None:
        return []
    return list(result) if isinstance(result, (list, tuple)) else [result]


def is_error_toast(result) -> bool:
    return any("toast" in str(getattr(e, "handler", "")) or "toast" in repr(e) for e in events(result))


def is_redirect_to_login(result) -> bool:
    return any("/login" in repr(e) for e in events(result))
