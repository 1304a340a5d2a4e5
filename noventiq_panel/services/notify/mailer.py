"""The outbox sender: queued ``Notification`` rows → SMTP (aiosmtplib), with retries.

``send_due(session_factory, now=None, limit=100)`` runs once (the scheduler calls it every minute):

1. **Claim** (one committed transaction, before any SMTP traffic): for each due row
   (``status = queued`` and ``next_attempt_at <= now``) a conditional
   ``UPDATE … SET attempts = attempts + 1, next_attempt_at = now + LEASE WHERE id = … AND
   attempts = <seen> AND status = 'queued' AND next_attempt_at <= now``. Only the sender whose
   update hit the row sends it; a second sender (another process, a second run) skips it.
2. **Send** the claimed messages over one SMTP connection: multipart/alternative text + HTML, the
   attachments (``NotificationAttachment``) in multipart/mixed, and a ``Message-ID`` derived from
   the notification id (the same on every attempt, so a receiving server can drop a duplicate).
3. **Record** each outcome: ``sent`` + ``sent_at``; or ``last_error`` and a retry at
   ``now + backoff(attempts)`` (1, 2, 4 … minutes, at most an hour).

Failures: an error about one message (the server answered and refused it) is retried up to
``max_attempts`` and then the row is ``failed`` (it stays in the history with the error). An error
of the connection (server down, refused, timed out, TLS or login failure) never fails a message: it
is retried with the same capped backoff for as long as the outage lasts — an outage delays mail,
it never loses it.

At-most-twice window: if the process dies after the server accepted a message but before step 3
committed, the claim expires after ``LEASE`` and the message is sent again (same Message-ID).
Nothing else can send a message twice.

Without ``settings.smtp_host`` nothing is sent: mail stays in the outbox (the history).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from typing import Callable

import aiosmtplib
from sqlalchemy import delete, func, update
from sqlmodel import Session, col, select

from noventiq_panel.config import Settings, get_settings
from noventiq_panel.models import MailSecret, Notification, NotificationAttachment, NotificationStatus
from noventiq_panel.models.types import utcnow
from noventiq_panel.services.notify import notifications

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 8
LEASE = timedelta(minutes=10)  # a claimed row whose sender died is retried after this
BACKOFF_BASE = timedelta(minutes=1)
BACKOFF_MAX = timedelta(hours=1)
SMTP_TIMEOUT = 30

SessionFactory = Callable[[], AbstractContextManager[Session]]


@dataclass
class SendSummary:
    configured: bool = True
    claimed: int = 0
    sent: int = 0
    retry: int = 0  # will be tried again
    failed: int = 0  # gave up (status failed)
    queued_left: int = 0  # only reported when SMTP is not configured
    errors: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        if not self.configured:
            return f"SMTP not configured: {self.queued_left} messages stay in the outbox"
        text = f"sent {self.sent} of {self.claimed} claimed; {self.retry} to retry, {self.failed} failed"
        if self.errors:
            text += f"; last error: {self.errors[-1]}"
        return text


class _ConnectionProblem(Exception):
    """The SMTP server could not be reached or used: no message is to blame."""


def backoff(attempts: int) -> timedelta:
    """Delay before the next try after ``attempts`` tries: 1, 2, 4, … minutes, at most an hour."""
    delay = BACKOFF_BASE * (2 ** max(0, min(attempts - 1, 16)))
    return min(delay, BACKOFF_MAX)


def message_id(notification: Notification, mail_from: str) -> str:
    domain = parseaddr(mail_from)[1].rpartition("@")[2] or "noventiq-panel.local"
    return f"<notification-{notification.id}@{domain}>"


def build_message(notification: Notification, attachments: list[NotificationAttachment],
                  settings: Settings, held: MailSecret | None = None) -> EmailMessage:
    """The message to send; ``held``'s secret goes where the stored mail holds its mark."""
    msg = EmailMessage()
    msg["From"] = settings.mail_from
    msg["To"] = notification.to_email
    msg["Subject"] = " ".join((notification.subject or "").split())
    msg["Date"] = format_datetime(notification.created_at or utcnow())
    msg["Message-ID"] = message_id(notification, settings.mail_from)
    msg["X-Panel-Notification"] = f"{notification.id}; kind={notification.kind}"
    msg.set_content(notifications.fill_secret(notification.body_text, held), subtype="plain", charset="utf-8")
    if notification.body_html:
        msg.add_alternative(notifications.fill_secret(notification.body_html, held), subtype="html", charset="utf-8")
    for att in attachments:
        maintype, _, subtype = (att.mime_type or "application/octet-stream").partition("/")
        msg.add_attachment(bytes(att.data), maintype=maintype or "application",
                           subtype=subtype or "octet-stream", filename=att.filename)
    return msg


def _default_factory() -> SessionFactory:
    from noventiq_panel.db import get_engine

    return lambda: Session(get_engine(), expire_on_commit=False)


def pending_count(session: Session) -> int:
    return session.exec(select(func.count()).select_from(Notification)
                        .where(Notification.status == NotificationStatus.QUEUED)).one()


def claim(session_factory: SessionFactory, now: datetime, limit: int) -> list[tuple[EmailMessage, int, int]]:
    """Claim up to ``limit`` due rows (committed before returning) and build their messages.

    Returns ``(message, notification id, attempts after the claim)``.
    """
    settings = get_settings()
    claimed: list[tuple[EmailMessage, int, int]] = []
    with session_factory() as session:
        due = session.exec(
            select(Notification.id, Notification.attempts)
            .where(Notification.status == NotificationStatus.QUEUED, Notification.next_attempt_at <= now)
            .order_by(col(Notification.next_attempt_at), col(Notification.id))
            .limit(max(1, int(limit)))
        ).all()
        mine: list[tuple[int, int]] = []
        for nid, attempts in due:
            result = session.execute(
                update(Notification)
                .where(Notification.id == nid, Notification.status == NotificationStatus.QUEUED,
                       Notification.attempts == attempts, Notification.next_attempt_at <= now)
                .values(attempts=attempts + 1, next_attempt_at=now + LEASE)
                .execution_options(synchronize_session=False)
            )
            if result.rowcount == 1:
                mine.append((nid, attempts + 1))
        session.commit()
        if not mine:
            return claimed
        ids = [nid for nid, _ in mine]
        rows = {n.id: n for n in session.exec(select(Notification).where(col(Notification.id).in_(ids))).all()}
        files: dict[int, list[NotificationAttachment]] = {}
        for att in session.exec(select(NotificationAttachment)
                                .where(col(NotificationAttachment.notification_id).in_(ids))
                                .order_by(col(NotificationAttachment.id))).all():
            files.setdefault(att.notification_id, []).append(att)
        held = {h.notification_id: h for h in session.exec(select(MailSecret)
                                                           .where(col(MailSecret.notification_id).in_(ids))).all()}
        session.rollback()
        lapsed = []
        for nid, attempts in mine:
            secret = held.get(nid)
            if secret is not None and secret.expires_at <= now:
                lapsed.append(nid)  # its link expired before it could be sent: useless to anyone
                continue
            claimed.append((build_message(rows[nid], files.get(nid, []), settings, secret), nid, attempts))
        if lapsed:
            notifications.purge_secrets(session, now)  # fails them and forgets their secrets
            session.commit()
    return claimed


async def _deliver(messages: list[EmailMessage], settings: Settings) -> list[Exception | None]:
    """Send over one connection. Per message: None (accepted) or the error. A connection problem
    before or between messages raises ``_ConnectionProblem`` carrying the outcomes so far."""
    tls = (settings.smtp_tls or "none").lower()
    if settings.smtp_user and tls not in ("starttls", "tls") and not settings.smtp_allow_plain_login:
        # the password would cross the network in clear: nothing is sent, the mail waits
        raise _ConnectionProblem("SMTP login over a plaintext connection refused: set PANEL_SMTP_TLS=starttls or tls "
                                 "(or PANEL_SMTP_ALLOW_PLAIN_LOGIN=1 for a local relay)")
    smtp = aiosmtplib.SMTP(hostname=settings.smtp_host, port=settings.smtp_port, timeout=SMTP_TIMEOUT,
                           use_tls=tls == "tls", start_tls=True if tls == "starttls" else False)
    results: list[Exception | None] = []
    try:
        await smtp.connect()
        if settings.smtp_user:
            await smtp.login(settings.smtp_user, settings.smtp_password)
    except (aiosmtplib.SMTPException, OSError, asyncio.TimeoutError) as exc:
        raise _ConnectionProblem(f"{type(exc).__name__}: {exc}") from exc
    try:
        for msg in messages:
            try:
                await smtp.send_message(msg)
                results.append(None)
            except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPConnectError, aiosmtplib.SMTPTimeoutError,
                    OSError, asyncio.TimeoutError) as exc:
                problem = _ConnectionProblem(f"{type(exc).__name__}: {exc}")
                problem.results = results  # type: ignore[attr-defined]
                raise problem from exc
            except aiosmtplib.SMTPException as exc:  # the server refused this message
                results.append(exc)
    finally:
        try:
            if smtp.is_connected:
                await smtp.quit()
        except Exception:  # noqa: BLE001 - closing a broken connection
            smtp.close()
    return results


def _record(session_factory: SessionFactory, now: datetime, outcomes: list[tuple[int, int, str | None, bool]],
            max_attempts: int, summary: SendSummary) -> None:
    """outcomes: (id, attempts, error or None, connection problem?)."""
    with session_factory() as session:
        for nid, attempts, error, connection in outcomes:
            mine = (Notification.id == nid, Notification.attempts == attempts,
                    Notification.status == NotificationStatus.QUEUED)
            if error is None:
                values = dict(status=NotificationStatus.SENT, sent_at=now, last_error="")
                summary.sent += 1
            elif not connection and attempts >= max_attempts:
                values = dict(status=NotificationStatus.FAILED, last_error=error[:1000])
                summary.failed += 1
            else:
                values = dict(next_attempt_at=now + backoff(attempts), last_error=error[:1000])
                summary.retry += 1
            session.execute(update(Notification).where(*mine).values(**values)
                            .execution_options(synchronize_session=False))
            if "status" in values:  # sent (the secret is in the recipient's mailbox) or failed for good
                session.execute(delete(MailSecret).where(MailSecret.notification_id == nid)
                                .execution_options(synchronize_session=False))
        notifications.purge_secrets(session, now)
        session.commit()


async def asend_due(session_factory: SessionFactory | None = None, now: datetime | None = None, limit: int = 100,
                    *, max_attempts: int = MAX_ATTEMPTS) -> SendSummary:
    """Async form of :func:`send_due` (database work runs in a thread)."""
    settings = get_settings()
    session_factory = session_factory or _default_factory()
    now = now or utcnow()
    summary = SendSummary()
    if not settings.smtp_host:
        def count() -> int:
            with session_factory() as session:
                notifications.purge_secrets(session, now)  # mail kept in the outbox: links expire here too
                session.commit()
                return pending_count(session)

        summary.configured = False
        summary.queued_left = await asyncio.to_thread(count)
        return summary
    claimed = await asyncio.to_thread(claim, session_factory, now, limit)
    summary.claimed = len(claimed)
    if not claimed:
        return summary
    outcomes: list[tuple[int, int, str | None, bool]] = []
    try:
        results = await _deliver([m for m, _, _ in claimed], settings)
        connection_error = None
    except _ConnectionProblem as problem:
        results = list(getattr(problem, "results", []))
        connection_error = str(problem)
        log.warning("SMTP %s:%s unavailable: %s", settings.smtp_host, settings.smtp_port, problem)
        summary.errors.append(connection_error)
    for i, (_msg, nid, attempts) in enumerate(claimed):
        if i < len(results):
            err = results[i]
            if err is not None:
                summary.errors.append(f"notification {nid}: {err}")
                log.warning("notification %s refused: %s", nid, err)
            outcomes.append((nid, attempts, None if err is None else f"{type(err).__name__}: {err}", False))
        else:
            outcomes.append((nid, attempts, f"not sent: {connection_error}", True))
    await asyncio.to_thread(_record, session_factory, now, outcomes, max_attempts, summary)
    return summary


def send_due(session_factory: SessionFactory | None = None, now: datetime | None = None, limit: int = 100,
             *, max_attempts: int = MAX_ATTEMPTS) -> SendSummary:
    """Send the queued notifications that are due (see the module documentation).

    ``session_factory()`` must return a context manager giving a ``Session`` (e.g.
    ``lambda: Session(engine)``); by default the panel's engine. Usable from plain threads (the
    scheduler runs jobs in a thread pool) and from code that already runs an event loop.
    """
    coro = asend_due(session_factory, now, limit, max_attempts=max_attempts)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    box: dict = {}

    def runner() -> None:
        try:
            box["result"] = asyncio.run(coro)
        except BaseException as exc:  # noqa: BLE001
            box["error"] = exc

    thread = threading.Thread(target=runner, name="mailer")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["result"]


__all__ = ["MAX_ATTEMPTS", "LEASE", "SendSummary", "asend_due", "backoff", "build_message", "claim", "message_id",
           "send_due"]
