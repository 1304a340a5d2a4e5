"""The outbox: templates for every kind and locale, escaping, strict context, dedupe, history."""

from __future__ import annotations

import re
import threading
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import jinja2
import pytest
from sqlmodel import Session, func, select

from noventiq_panel.config import reset_settings
from noventiq_panel.i18n import LOCALES
from noventiq_panel.models import Membership, Notification, NotificationAttachment, NotificationStatus, Role
from noventiq_panel.services.notify import notifications as n
from noventiq_panel.services.core.errors import NotFound

from tests import factories as f

D = Decimal
T0 = datetime(2025, 9, 24, 9, 5, tzinfo=timezone.utc)

# A representative context per kind: every required key, plus the optional ones a caller may pass.
SAMPLES: dict[str, dict] = {
    "provisioning_requested": {"product": "Kaspersky Endpoint Security", "quantity": 5, "amount": D("450000.00"),
                               "currency": "UZS", "subscription_id": 7},
    "provisioning_done": {"product": "Kaspersky Endpoint Security", "action": "order", "subscription_id": 7,
                          "quantity": 5, "amount": D("450000.00"), "currency": "UZS"},
    "provisioning_rejected": {"product": "Kaspersky Endpoint Security", "action": "quantity", "subscription_id": 7,
                              "reason": "Не продаётся в Узбекистане"},
    "provisioning_overdue": {"count": 1, "tasks": [{"id": 3, "org": "ООО «Ромашка»", "subscription": "Kaspersky",
                                                    "action": "order", "vendor": "kaspersky", "requested_at": T0,
                                                    "hours": 50}]},
    "welcome": {"org_name": "ООО «Ромашка»", "link": "https://panel.example/reset/tok", "expires_at": T0},
    "invite": {"org_name": "ООО «Ромашка»", "inviter_name": "Иван Петров", "role": "finance",
               "link": "https://panel.example/reset/tok", "expires_at": T0},
    "password_reset": {"link": "https://panel.example/reset/tok", "expires_at": T0},
    "verify_email": {"org_name": "ООО «Ромашка»", "link": "https://panel.example/verify/tok", "expires_at": T0},
    "order_confirmed": {"product": "Microsoft 365 Business Basic", "plan": "Basic, month", "quantity": 12,
                        "amount": D("1234567.89"), "currency": "UZS", "subscription_id": 7,
                        "period_end": date(2025, 10, 24)},
    "licence_changed": {"product": "Microsoft 365 Business Basic", "old_quantity": 12, "new_quantity": 10,
                        "amount": D("-20000.00"), "currency": "UZS", "subscription_id": 7},
    "renewal_done": {"product": "Microsoft 365 Business Basic", "quantity": 10, "amount": D("300000"),
                     "currency": "UZS", "period_end": date(2025, 11, 24), "subscription_id": 7},
    "renewal_failed_funds": {"product": "Microsoft 365 Business Basic", "amount": D("300000"),
                             "shortfall": D("120000.50"), "currency": "UZS", "suspend_on": date(2025, 10, 31),
                             "subscription_id": 7},
    "renewal_reminder": {"product": "Microsoft 365 Business Basic", "renew_on": date(2025, 10, 24),
                         "amount": D("300000"), "currency": "UZS", "balance": D("1000"), "subscription_id": 7},
    "expiry_reminder": {"product": "Microsoft 365 Business Basic", "expires_on": date(2025, 10, 24),
                        "subscription_id": 7},
    "trial_reminder": {"product": "Microsoft 365 Business Basic", "trial_ends_on": date(2025, 10, 24),
                       "converts": True, "amount": D("30000"), "currency": "UZS", "subscription_id": 7},
    "expired": {"product": "Microsoft 365 Business Basic", "expired_on": date(2025, 10, 24), "subscription_id": 7},
    "suspended": {"product": "Microsoft 365 Business Basic", "suspended_on": date(2025, 10, 31), "reason": "funds",
                  "subscription_id": 7},
    "low_balance": {"balance": D("50000"), "threshold": D("100000"), "currency": "UZS"},
    "payment_received": {"amount": D("5000000"), "currency": "UZS", "balance": D("5250000.25"), "method": "Payme"},
    "invoice_to_pay": {"invoice_number": "2025-000123", "amount": D("5000000"), "currency": "UZS",
                       "due_date": date(2025, 9, 29)},
    "payment_due": {"invoice_number": "2025-000123", "amount": D("5000000"), "currency": "UZS",
                    "due_date": date(2025, 9, 29)},
    "payment_overdue": {"invoice_number": "2025-000123", "amount": D("5000000"), "currency": "UZS",
                        "due_date": date(2025, 9, 29)},
    "closing_documents": {"month": date(2025, 9, 1), "document_number": "2025/0042", "amount": D("1234567.89"),
                          "currency": "UZS"},
    "budget_threshold": {"budget_name": "Azure prod", "product": "Microsoft Azure", "threshold": D("80"),
                         "threshold_type": "actual", "budget_amount": D("10000000"), "spent": D("8100000"),
                         "currency": "UZS", "month": date(2025, 9, 1), "subscription_id": 9},
    "cost_anomaly": {"subscription_name": "Azure prod", "product": "Microsoft Azure", "day": date(2025, 9, 23),
                     "direction": "spike", "actual": D("3450000.00"), "expected": D("1200000.00"),
                     "low": D("840000.00"), "high": D("1560000.00"), "currency": "UZS",
                     "services": [{"name": "Virtual Machines", "actual": D("2900000"), "expected": D("700000"),
                                   "change": D("2200000"), "new": False}],
                     "resource_groups": [{"name": "rg-gpu", "actual": D("2100000"), "expected": D("0"),
                                          "change": D("2100000"), "new": True},
                                         {"name": "", "actual": D("300000"), "expected": D("250000"),
                                          "change": D("50000"), "new": False}],
                     "subscription_id": 9},
    "iaas_monthly_report": {"product": "Microsoft Azure", "month": date(2025, 9, 1), "amount": D("8100000"),
                            "currency": "UZS", "subscription_id": 9},
    "credit_overdrawn": {"balance": D("-1250000.50"), "currency": "UZS", "suspend_at": T0 + timedelta(hours=72),
                         "credit_limit": D("5000000"), "products": ["Azure prod", "Azure dev"]},
    "credit_suspended": {"products": ["Azure prod", "Azure dev"], "balance": D("-1250000.50"), "currency": "UZS",
                         "credit_limit": D("5000000")},
    "credit_resumed": {"products": ["Azure prod", "Azure dev"], "balance": D("50000"), "currency": "UZS",
                       "credit_limit": D("5000000")},
}

TAG = re.compile(r"<\s*/?\s*[a-zA-Z][^>]*>")


def plain(text: str) -> str:
    return text.replace("\u00a0", " ").replace("\u202f", " ")


def test_the_samples_cover_exactly_the_kinds_of_the_contract():
    assert set(SAMPLES) == set(n.KINDS)
    assert len(n.KINDS) == 29


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("kind", sorted(SAMPLES))
def test_every_kind_renders_in_both_locales_and_the_text_part_has_no_html(kind, locale):
    r = n.render(kind, SAMPLES[kind], locale)
    assert r.subject and "\n" not in r.subject and "{{" not in r.subject
    assert not TAG.search(r.text), r.text
    assert "{{" not in r.text and "{%" not in r.text
    assert r.html.lstrip().lower().startswith("<!doctype html>")
    assert f'lang="{locale}"' in r.html
    assert "{{" not in r.html
    # the footer with support contacts (the base layout) is there in both parts
    assert "support@" in r.text and "support@" in r.html


@pytest.mark.parametrize("locale", ["ru", "en"])
@pytest.mark.parametrize("kind", sorted(SAMPLES))
def test_every_template_renders_with_only_the_required_keys(kind, locale):
    # Optional keys must be guarded with "is defined": a template that uses an undeclared variable
    # fails here (StrictUndefined), not in production.
    required, _optional = n.KINDS[kind]
    n.render(kind, {k: SAMPLES[kind][k] for k in required}, locale)


@pytest.mark.parametrize("kind", sorted(SAMPLES))
def test_a_missing_context_value_fails_loudly(kind):
    required, _ = n.KINDS[kind]
    context = dict(SAMPLES[kind])
    del context[required[0]]
    with pytest.raises(n.MissingContext):
        n.render(kind, context, "ru")


def test_the_environment_is_strict_and_escapes_html_only():
    env = n.environment()
    assert env.undefined is jinja2.StrictUndefined
    with pytest.raises(jinja2.UndefinedError):
        env.from_string("{{ nope }}").render()


def test_every_kind_has_all_template_files_and_no_file_lacks_a_kind():
    found = set()
    assert sorted(p.name for p in n.TEMPLATE_DIR.iterdir() if p.is_dir()) == sorted(LOCALES)
    for locale in LOCALES:
        for path in (n.TEMPLATE_DIR / locale).iterdir():
            kind = path.name.split(".", 1)[0]
            found.add(kind)
            assert kind in n.KINDS, f"template without a kind: {path}"
        for kind in n.KINDS:
            for suffix in (".subject.txt", ".txt", ".html"):
                assert (n.TEMPLATE_DIR / locale / f"{kind}{suffix}").is_file(), (locale, kind, suffix)
    assert found == set(n.KINDS)


def test_unknown_kind_is_refused():
    with pytest.raises(n.UnknownKind):
        n.render("nonsense", {}, "ru")


def test_user_values_are_escaped_in_html_and_kept_raw_in_text():
    ctx = dict(SAMPLES["order_confirmed"], product='<script>alert("x")</script> & Co')
    r = n.render("order_confirmed", ctx, "en")
    assert "<script>" not in r.html
    assert "&lt;script&gt;" in r.html and "&amp; Co" in r.html
    assert '<script>alert("x")</script> & Co' in r.text
    assert "<script>" in r.subject  # the subject is a plain-text header, not HTML


def test_a_newline_in_a_value_cannot_break_the_subject_line():
    ctx = dict(SAMPLES["expired"], product="Evil\r\nBcc: victim@example.com")
    r = n.render("expired", ctx, "en")
    assert "\n" not in r.subject and "\r" not in r.subject


def test_money_is_formatted_for_the_recipients_locale():
    ru = n.render("closing_documents", SAMPLES["closing_documents"], "ru")
    en = n.render("closing_documents", SAMPLES["closing_documents"], "en")
    assert "1 234 567,89 сум" in plain(ru.text)
    assert "UZS 1,234,567.89" in plain(en.text)
    assert "сентябрь 2025" in ru.subject and "September 2025" in en.subject
    refund = n.render("licence_changed", SAMPLES["licence_changed"], "ru")
    assert "Возвращено на баланс: 20 000,00 сум" in plain(refund.text)


def test_dates_are_shown_in_the_organisations_time_zone():
    late = datetime(2025, 9, 30, 20, 0, tzinfo=timezone.utc)  # already 1 October in Tashkent (UTC+5)
    r = n.render("password_reset", {"link": "https://x/reset/t", "expires_at": late, "tz": "Asia/Tashkent"}, "ru")
    assert "1 октября 2025, 01:00" in plain(r.text)
    r = n.render("password_reset", {"link": "https://x/reset/t", "expires_at": late, "tz": "UTC"}, "en")
    assert "September 30, 2025, 8:00 PM" in plain(r.text)


def test_links_use_the_configured_base_url(monkeypatch):
    monkeypatch.setenv("PANEL_BASE_URL", "https://panel.noventiq.uz/")
    reset_settings()
    try:
        r = n.render("renewal_done", SAMPLES["renewal_done"], "ru")
        assert "https://panel.noventiq.uz/subscriptions/7" in r.text
        assert 'href="https://panel.noventiq.uz/subscriptions/7"' in r.html
    finally:
        monkeypatch.delenv("PANEL_BASE_URL")
        reset_settings()


def test_float_money_in_a_context_is_refused():
    with pytest.raises(Exception):
        n.render("low_balance", {"balance": 1.5, "threshold": D("1"), "currency": "UZS"}, "ru")


# --- the outbox ------------------------------------------------------------------------------

def count(session, model=Notification) -> int:
    return session.exec(select(func.count()).select_from(model)).one()


def test_enqueue_flushes_but_the_callers_rollback_removes_it(session):
    o = f.org(session)
    u = f.user(session, o)
    row = n.notify_user(session, u, "low_balance", SAMPLES["low_balance"], org_id=o.id)
    assert row.id is not None and row.status == NotificationStatus.QUEUED
    assert count(session) == 1
    session.rollback()
    assert count(session) == 0


def test_enqueue_stores_rendered_parts_recipient_locale_and_attachments(session):
    o = f.org(session, name="ООО «Альфа»")
    u = f.user(session, o, locale="en", name="Alice")
    row = n.notify_user(session, u, "closing_documents", SAMPLES["closing_documents"], org_id=o.id,
                        attachments=[("act-2025-09.pdf", "application/pdf", b"%PDF-1.4 act"),
                                     ("invoice.pdf", "application/pdf", b"%PDF-1.4 inv")])
    session.commit()
    assert row.to_email == u.email and row.user_id == u.id and row.org_id == o.id
    assert row.locale == "en" and row.subject == "Closing documents for September 2025"
    assert row.body_text.startswith("Hello Alice,")
    assert "<html" in row.body_html
    files = n.attachments_for(session, u.id, row.id)
    assert [(a.filename, a.data) for a in files] == [("act-2025-09.pdf", b"%PDF-1.4 act"),
                                                     ("invoice.pdf", b"%PDF-1.4 inv")]


def test_the_same_dedupe_key_twice_adds_one_row(session):
    o = f.org(session)
    u = f.user(session, o)
    a = n.notify_user(session, u, "low_balance", SAMPLES["low_balance"], org_id=o.id, dedupe_key="low:1:2025-09",
                      attachments=[("a.txt", "text/plain", b"x")])
    session.commit()
    b = n.notify_user(session, u, "low_balance", SAMPLES["low_balance"], org_id=o.id, dedupe_key="low:1:2025-09",
                      attachments=[("a.txt", "text/plain", b"x")])
    session.commit()
    assert a.id == b.id
    assert count(session) == 1 and count(session, NotificationAttachment) == 1


def test_the_same_dedupe_key_from_two_transactions_at_once_adds_one_row(engine):
    with Session(engine, expire_on_commit=False) as s:
        o = f.org(s)
        u = f.user(s, o)
        org_id, user_id, email = o.id, u.id, u.email
    barrier = threading.Barrier(2)
    ids, errors = [], []

    def worker():
        try:
            with Session(engine) as s:
                barrier.wait()
                row = n.enqueue(s, kind="low_balance", to_email=email, context=SAMPLES["low_balance"], org_id=org_id,
                                user_id=user_id, dedupe_key="race-key")
                s.commit()
                ids.append(row.id)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    with Session(engine) as s:
        assert count(s) == 1
    assert len(set(ids)) == 1


def test_notify_org_roles_reaches_active_owners_and_finance_each_in_their_language(session):
    o = f.org(session)
    owner = f.user(session, o, Role.OWNER, locale="ru")
    fin = f.user(session, o, Role.FINANCE, locale="en")
    f.user(session, o, Role.ADMIN)
    gone = f.user(session, o, Role.FINANCE)
    m = session.exec(select(Membership).where(Membership.user_id == gone.id)).one()
    m.is_active = False
    other_org = f.org(session, name="Other")
    f.user(session, other_org, Role.OWNER)
    session.commit()
    rows = n.notify_org_roles(session, o.id, [Role.OWNER, Role.FINANCE], "payment_overdue",
                              SAMPLES["payment_overdue"], dedupe_key="overdue:2025-000123")
    session.commit()
    assert sorted(r.user_id for r in rows) == sorted([owner.id, fin.id])
    by_user = {r.user_id: r for r in rows}
    assert by_user[owner.id].subject.startswith("Счёт №")
    assert by_user[fin.id].subject.startswith("Invoice No.")
    assert by_user[fin.id].dedupe_key == f"overdue:2025-000123:u{fin.id}"
    again = n.notify_org_roles(session, o.id, [Role.OWNER, Role.FINANCE], "payment_overdue",
                               SAMPLES["payment_overdue"], dedupe_key="overdue:2025-000123")
    session.commit()
    assert {r.id for r in again} == {r.id for r in rows}
    assert count(session) == 2


def test_history_is_newest_first_paged_and_only_the_users_own(session):
    o = f.org(session)
    u = f.user(session, o)
    other = f.user(session, o)
    for i in range(5):
        n.notify_user(session, u, "low_balance", SAMPLES["low_balance"], org_id=o.id, now=T0 + timedelta(hours=i))
    theirs = n.notify_user(session, other, "low_balance", SAMPLES["low_balance"], org_id=o.id)
    session.commit()
    rows, total = n.history(session, u.id, limit=2, offset=0)
    assert total == 5
    assert [r.created_at for r in rows] == [T0 + timedelta(hours=4), T0 + timedelta(hours=3)]
    rows, _ = n.history(session, u.id, limit=2, offset=4)
    assert [r.created_at for r in rows] == [T0]
    assert n.get_for_user(session, u.id, rows[0].id).id == rows[0].id
    with pytest.raises(NotFound):
        n.get_for_user(session, u.id, theirs.id)
    with pytest.raises(NotFound):
        n.attachments_for(session, u.id, theirs.id)
    with pytest.raises(NotFound):
        n.get_for_user(session, u.id, 999999)


def test_enqueue_without_a_recipient_is_a_programming_error(session):
    with pytest.raises(ValueError):
        n.enqueue(session, kind="low_balance", to_email="", context=SAMPLES["low_balance"])


def test_history_blanks_the_set_password_link_so_an_open_session_cannot_take_over(session):
    from noventiq_panel.services.identity import auth
    from noventiq_panel.services.notify import notifications

    o = f.org(session)
    u = f.user(session, o, email="victim@example.com")
    auth.request_password_reset(session, u.email)
    session.commit()
    rows, _ = notifications.history(session, u.id)
    mail = next(r for r in rows if r.kind == "password_reset")
    assert "/reset/" in mail.body_text and "/reset/…" not in mail.body_text  # the outbox keeps the link
    shown = notifications.get_for_user(session, u.id, mail.id)
    assert "/reset/…" in shown.body_text and "/reset/…" in shown.body_html
    session.expire_all()
    assert "/reset/…" not in session.get(type(mail), mail.id).body_text  # the stored mail is unchanged


def test_every_kind_has_a_name_in_the_history_in_every_language():
    """The profile's history shows each mail's kind: a kind without its label showed the raw key
    ("notifications.kind.verify_email")."""
    from noventiq_panel import i18n

    for locale in ("ru", "en"):
        missing = [k for k in n.KINDS if i18n.raw(f"notifications.kind.{k}", locale) is None]
        assert not missing, (locale, missing)
