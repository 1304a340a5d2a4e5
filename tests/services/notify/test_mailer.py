"""The outbox sender against a real SMTP server (aiosmtpd on a free loopback port): what arrives,
retries while the server is down (nothing lost, each message once), refusals, claims, the
at-most-twice window, and no SMTP settings."""

from __future__ import annotations

import email
import socket
import threading
from datetime import datetime, timedelta, timezone
from email import policy

import pytest
from aiosmtpd.controller import Controller
from sqlmodel import Session

from noventiq_panel.config import reset_settings
from noventiq_panel.models import Notification, NotificationStatus
from noventiq_panel.services.notify import mailer, notifications

from tests import factories as f

NOW = datetime(2026, 11, 10, 9, 0, tzinfo=timezone.utc)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Inbox:
    """An aiosmtpd handler that keeps what it receives and can refuse chosen recipients."""

    def __init__(self, refuse: set[str] = frozenset()):
        self.messages: list[tuple[str, list[str], bytes]] = []
        self.refuse = set(refuse)
        self.lock = threading.Lock()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.refuse:
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content or envelope.content))
        return "250 Message accepted"

    def parsed(self):
        return [email.message_from_bytes(raw, policy=policy.default) for _, _, raw in self.messages]


class Server:
    def __init__(self, port: int, inbox: Inbox):
        self.port, self.inbox = port, inbox
        self.controller = None

    def start(self):
        self.controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self):
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


@pytest.fixture
def smtp(monkeypatch):
    """Settings pointing at a free port; the server is started by the test (or left down)."""
    port = free_port()
    monkeypatch.setenv("PANEL_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("PANEL_SMTP_PORT", str(port))
    monkeypatch.setenv("PANEL_SMTP_TLS", "none")
    monkeypatch.setenv("PANEL_MAIL_FROM", "Noventiq Panel <panel@noventiq.example>")
    reset_settings()
    server = Server(port, Inbox())
    yield server
    server.stop()
    reset_settings()


def factory(engine):
    return lambda: Session(engine, expire_on_commit=False)


def rows(session, ids):
    """Fresh copies of the rows, without keeping a transaction (SQLite's write lock) open."""
    session.expire_all()
    out = [session.get(Notification, i) for i in ids]
    session.commit()  # expire_on_commit=False: the rows stay readable without a new transaction
    return out


def queue(session, n: int = 1, *, to: str = "buh@romashka.uz", attach: bool = False, prefix: str = "m") -> list[int]:
    org = f.org(session)
    ids = []
    for i in range(n):
        row = notifications.enqueue(
            session, kind="low_balance", to_email=to.replace("@", f"+{i}@") if n > 1 else to,
            context={"balance": __import__("decimal").Decimal("1500.50"), "threshold": __import__("decimal").Decimal("100000"),
                     "currency": "UZS"},
            locale="ru", org_id=org.id, dedupe_key=f"{prefix}{i}", now=NOW,
            attachments=[("отчёт.xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                          b"PK\x03\x04 fake xlsx")] if attach else ())
        ids.append(row.id)
    session.commit()
    return ids


def test_a_message_arrives_with_both_parts_and_the_attachment(engine, session, smtp):
    smtp.start()
    [nid] = queue(session, attach=True)
    summary = mailer.send_due(factory(engine), now=NOW)
    assert (summary.claimed, summary.sent) == (1, 1)
    [(mail_from, rcpts, _raw)] = smtp.inbox.messages
    assert mail_from == "panel@noventiq.example" and rcpts == ["buh@romashka.uz"]
    [msg] = smtp.inbox.parsed()
    [row] = rows(session, [nid])
    assert msg["Subject"] == row.subject and msg["To"] == "buh@romashka.uz"
    assert msg["Message-ID"] == f"<notification-{nid}@noventiq.example>"
    assert msg.get_content_type() == "multipart/mixed"
    def body(kind):
        return msg.get_body((kind,)).get_content().replace("\r\n", "\n").strip()

    assert body("plain") == row.body_text.strip() and "1 500,50" in body("plain").replace("\xa0", " ")
    assert body("html") == row.body_html.strip() and "<html" in body("html")
    [att] = list(msg.iter_attachments())
    assert att.get_filename() == "отчёт.xlsx" and att.get_content() == b"PK\x03\x04 fake xlsx"
    assert row.status == NotificationStatus.SENT and row.sent_at == NOW and row.attempts == 1
    # nothing is sent twice
    assert mailer.send_due(factory(engine), now=NOW + timedelta(minutes=5)).claimed == 0
    assert len(smtp.inbox.messages) == 1


def test_smtp_down_for_several_attempts_loses_nothing_and_sends_each_once(engine, session, smtp):
    ids = queue(session, 3)
    now = NOW
    for attempt in range(1, mailer.MAX_ATTEMPTS + 3):  # longer than the message retry limit
        summary = mailer.send_due(factory(engine), now=now)
        assert summary.claimed == 3 and summary.sent == 0 and summary.retry == 3
        current = rows(session, ids)
        assert all(r.status == NotificationStatus.QUEUED and r.attempts == attempt for r in current)
        assert all(r.next_attempt_at == now + mailer.backoff(attempt) for r in current)
        assert all("not sent" in r.last_error for r in current)
        # before the backoff is over nothing is tried
        assert mailer.send_due(factory(engine), now=now + mailer.backoff(attempt) - timedelta(seconds=1)).claimed == 0
        now = now + mailer.backoff(attempt)
    smtp.start()
    summary = mailer.send_due(factory(engine), now=now)
    assert summary.sent == 3
    assert mailer.send_due(factory(engine), now=now + timedelta(hours=2)).claimed == 0
    assert sorted(r for _, rcpts, _ in smtp.inbox.messages for r in rcpts) == [
        "buh+0@romashka.uz", "buh+1@romashka.uz", "buh+2@romashka.uz"]
    assert all(r.status == NotificationStatus.SENT for r in rows(session, ids))


def test_a_refused_message_is_retried_then_failed_and_the_others_go(engine, session, smtp):
    smtp.inbox.refuse = {"buh+1@romashka.uz"}
    smtp.start()
    ids = queue(session, 3)
    now = NOW
    for attempt in range(1, 4):
        summary = mailer.send_due(factory(engine), now=now, max_attempts=3)
        now += mailer.backoff(attempt)
    first, refused, third = rows(session, ids)
    assert refused.status == NotificationStatus.FAILED and refused.attempts == 3 and "550" in refused.last_error
    assert [first.status, third.status] == ["sent", "sent"]
    assert len(smtp.inbox.messages) == 2
    assert summary.failed == 1


def test_a_claimed_message_is_not_taken_by_a_second_sender(engine, session, smtp):
    queue(session, 2)
    first = mailer.claim(factory(engine), NOW, 10)
    assert len(first) == 2
    assert mailer.claim(factory(engine), NOW, 10) == []


def test_two_senders_at_once_deliver_each_message_once(engine, session, smtp):
    smtp.start()
    queue(session, 6)
    barrier = threading.Barrier(2)
    errors = []

    def worker():
        try:
            barrier.wait()
            mailer.send_due(factory(engine), now=NOW)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(r for _, rcpts, _ in smtp.inbox.messages for r in rcpts) == sorted(
        f"buh+{i}@romashka.uz" for i in range(6))


def test_crash_after_sending_resends_only_after_the_lease_with_the_same_message_id(engine, session, smtp, monkeypatch):
    smtp.start()
    [nid] = queue(session)
    real = mailer._record
    monkeypatch.setattr(mailer, "_record", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("killed")))
    with pytest.raises(RuntimeError):
        mailer.send_due(factory(engine), now=NOW)
    monkeypatch.setattr(mailer, "_record", real)
    assert len(smtp.inbox.messages) == 1
    assert mailer.send_due(factory(engine), now=NOW + timedelta(minutes=5)).claimed == 0  # claim still held
    assert mailer.send_due(factory(engine), now=NOW + mailer.LEASE + timedelta(seconds=1)).sent == 1
    first, second = smtp.inbox.parsed()
    assert first["Message-ID"] == second["Message-ID"] == f"<notification-{nid}@noventiq.example>"


def test_without_smtp_settings_mail_stays_in_the_outbox(engine, session, monkeypatch):
    monkeypatch.delenv("PANEL_SMTP_HOST", raising=False)
    reset_settings()
    [nid] = queue(session)
    summary = mailer.send_due(factory(engine), now=NOW)
    assert not summary.configured and summary.queued_left == 1
    [row] = rows(session, [nid])
    assert row.status == NotificationStatus.QUEUED and row.attempts == 0


async def test_send_due_works_inside_a_running_event_loop(engine, session, smtp):
    smtp.start()
    queue(session)
    assert mailer.send_due(factory(engine), now=NOW).sent == 1
    assert (await mailer.asend_due(factory(engine), now=NOW)).claimed == 0


def test_backoff_doubles_up_to_an_hour():
    assert [mailer.backoff(a) for a in (1, 2, 3, 7, 8, 30)] == [
        timedelta(minutes=1), timedelta(minutes=2), timedelta(minutes=4), timedelta(hours=1), timedelta(hours=1),
        timedelta(hours=1)]


def test_a_password_is_never_sent_over_a_plaintext_connection(engine, session, smtp, monkeypatch):
    """Issue 14: with a user and password but no TLS the mailer refuses to log in; nothing is
    sent, nothing is lost (the mail waits for a retry), and the reason is said."""
    monkeypatch.setenv("PANEL_SMTP_USER", "panel")
    monkeypatch.setenv("PANEL_SMTP_PASSWORD", "secret")
    reset_settings()
    smtp.start()
    [nid] = queue(session)
    summary = mailer.send_due(factory(engine), now=NOW)
    assert summary.sent == 0 and smtp.inbox.messages == []
    assert any("plaintext" in e for e in summary.errors)
    [row] = rows(session, [nid])
    assert row.status == "queued" and "plaintext" in row.last_error
