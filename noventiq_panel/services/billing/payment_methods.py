"""Payment methods as plugins behind one interface.

A method has a ``code`` (stored on ``Payment.method``), a ``title_key`` (i18n) and
``start(session, payment) -> PaymentStart``: given a new pending payment, it does what the method
needs to collect the money (bank transfer: renders the invoice to pay; a card gateway would
create a checkout session and return its ``redirect_url``) and says what to show or send.

Only methods that really work are registered, so the top-up dialog lists only those. To add a
card gateway later: write a class with the same three members, and ``register(Gateway())`` at
import of its module (its confirmation callback then calls ``payments.confirm_payment``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from sqlmodel import Session

from noventiq_panel.models import Payment
from noventiq_panel.services.billing.invoice_document import invoice_filename, render_invoice_pdf
from noventiq_panel.services.core.errors import InvalidInput


@dataclass
class PaymentStart:
    """What starting a payment produced."""

    method: str
    documents: list[tuple[str, str, bytes]] = field(default_factory=list)  # (filename, mime, bytes)
    redirect_url: str | None = None  # a hosted payment page (card gateways)
    instructions_key: str = ""  # i18n key of what the user should do next


@runtime_checkable
class PaymentMethod(Protocol):
    code: str
    title_key: str

    def start(self, session: Session, payment: Payment) -> PaymentStart: ...


class BankTransfer:
    """The usual B2B way in Uzbekistan: an invoice to pay by bank transfer. The payment stays
    pending until the operator confirms it or a bank statement line is matched to it."""

    code = "bank_transfer"
    title_key = "billing.method.bank_transfer"

    def start(self, session: Session, payment: Payment) -> PaymentStart:
        pdf = render_invoice_pdf(session, payment)
        return PaymentStart(
            method=self.code,
            documents=[(invoice_filename(payment), "application/pdf", pdf)],
            instructions_key="billing.method.bank_transfer.instructions",
        )


_REGISTRY: dict[str, PaymentMethod] = {}


def register(method: PaymentMethod) -> PaymentMethod:
    if not isinstance(method, PaymentMethod):
        raise TypeError(f"{method!r} does not implement PaymentMethod")
    _REGISTRY[method.code] = method
    return method


def get(code: str) -> PaymentMethod:
    method = _REGISTRY.get(code) if isinstance(code, str) else None
    if method is None:
        raise InvalidInput(f"unknown payment method {code!r}", field="method", key="error.billing.method_unknown")
    return method


def available() -> list[PaymentMethod]:
    """The methods to offer, in registration order."""
    return list(_REGISTRY.values())


register(BankTransfer())
