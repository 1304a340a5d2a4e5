"""db.py's unit of work on SQLite: the process's queue for the write lock always lets go, and the
per-session memo never answers from before a change the session made (review of issue 16)."""

from __future__ import annotations

import gc
import threading

import pytest
from sqlalchemy import text
from sqlmodel import Session, select

from noventiq_panel import db as dbmod
from noventiq_panel.models import Membership, Role
from noventiq_panel.services.core import authz
from noventiq_panel.services.core.errors import Forbidden
from tests import factories


def _other_thread_can_begin(engine) -> object:
    box = {}

    def run():
        try:
            with Session(engine) as s:
                s.execute(text("select 1"))
                s.commit()
            box["ok"] = True
        except BaseException as exc:  # noqa: BLE001
            box["ok"] = exc

    t = threading.Thread(target=run)
    t.start()
    t.join(10)
    return box.get("ok")


def test_an_invalidated_connection_lets_go_of_the_write_lock(sqlite_engine, monkeypatch):
    monkeypatch.setattr(dbmod, "SQLITE_LOCK_TIMEOUT", 1)
    s = Session(sqlite_engine)
    s.execute(text("select 1"))  # BEGIN IMMEDIATE: the lock is taken
    s.connection().invalidate()  # what SQLAlchemy does on a disconnect or a BaseException mid-statement
    try:
        s.rollback()
    except Exception:  # noqa: BLE001
        pass
    s.close()
    assert _other_thread_can_begin(sqlite_engine) is True


def test_a_session_dropped_without_closing_lets_go_of_the_write_lock(sqlite_engine, monkeypatch):
    monkeypatch.setattr(dbmod, "SQLITE_LOCK_TIMEOUT", 1)

    def work():
        s = Session(sqlite_engine)
        s.execute(text("select 1"))  # and returns without commit, rollback or close

    work()
    gc.collect()
    assert _other_thread_can_begin(sqlite_engine) is True


def test_the_lock_is_taken_again_after_every_kind_of_end(sqlite_engine, monkeypatch):
    monkeypatch.setattr(dbmod, "SQLITE_LOCK_TIMEOUT", 1)
    for end in ("commit", "rollback", "close"):
        s = Session(sqlite_engine)
        s.execute(text("select 1"))
        getattr(s, end)()
        assert _other_thread_can_begin(sqlite_engine) is True, end


def test_a_change_not_yet_flushed_is_seen_by_the_access_check(session):
    org = factories.org(session, "ООО «Дельта»", tax_id="300000066")
    user = factories.user(session, org, Role.ADMIN, email="adm@d.example")
    session.commit()
    actor = factories.actor(user, org)
    authz.can_write(session, actor)  # remembered by the unit of work
    m = session.exec(select(Membership).where(Membership.user_id == actor.user_id)).one()
    m.role = Role.FINANCE  # pending: the check must see it as the query it saves would have
    with pytest.raises(Forbidden):
        authz.can_write(session, actor)
