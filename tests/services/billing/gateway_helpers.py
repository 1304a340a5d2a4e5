"""What the tests of the card gateways (test_payme.py, test_click.py) share: the customer they pay
for, the rows a payment touches, and the scenario files' placeholders."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, select

from noventiq_panel.config import reset_settings
from noventiq_panel.models import AuditEvent, LedgerEntry, Notification, Payment, Role
from noventiq_panel.services.billing import card_accounts, invoices
from tests import factories as f

MONEY_TABLES = (Payment, LedgerEntry, Notification, AuditEvent)
CARD_LIMITS = {"PANEL_CARD_MIN": "1000", "PANEL_CARD_MAX": "50000000"}


def configure(monkeypatch, settings: dict[str, str]) -> None:
    """Set these PANEL_* settings (and the card limits) for the test."""
    for name, value in {**CARD_LIMITS, **settings}.items():
        monkeypatch.setenv(name, value)
    reset_settings()


def card_world(session: Session, now: datetime) -> dict:
    """An organisation billed in сум with its owner (the payment mail goes there) and an issued
    invoice of 5000.00 сум (500000 tiyin, the amount of Payme's documented examples)."""
    o = f.org(session, name="ООО «Ромашка»")
    u = f.user(session, o, Role.OWNER, email="owner@romashka.uz")
    invoice = invoices.request_topup(session, f.actor(u, o), "5000", now=now)
    session.commit()
    return {"org": o, "user": u, "invoice": invoice, "account": card_accounts.account_number(o.id),
            "invoice_ref": invoice.number.split("-", 1)[1]}


def snapshot(session: Session, tables) -> dict:
    """Every row of ``tables`` (read in a transaction of its own, released: the routes under test
    need SQLite's write lock)."""
    session.rollback()
    session.expire_all()
    rows = {m.__name__: [r.model_dump() for r in session.exec(select(m).order_by(m.id)).all()] for m in tables}
    session.rollback()
    return rows


def fill(value, names: dict):
    """A scenario's placeholders replaced: a whole "{{name}}" by the value itself, else in text."""
    if isinstance(value, dict):
        return {k: fill(v, names) for k, v in value.items()}
    if isinstance(value, list):
        return [fill(v, names) for v in value]
    if isinstance(value, str):
        for name, new in names.items():
            if value == "{{" + name + "}}":
                return new
            value = value.replace("{{" + name + "}}", str(new))
    return value
