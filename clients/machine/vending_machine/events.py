"""Typed events a :class:`~vending_machine.VendingMachineController` hands to the kiosk.

Every event of a session carries:

``session_id``
    the hub's session id (``{MACHINE_ID}_{YYYYMMDD}_{HHMMSS}_{RANDOM}``).
``seq``
    the hub's event number (1, 2, 3 … per session, no gaps). An event read from a socket
    has its own ``seq``; events derived from a polled ``status`` body all carry that
    body's ``seq`` (polling sees states, not each step: two progress steps between two
    polls show up as one :class:`Progress`). ``None`` for :class:`Presence`.
``at``
    ISO 8601 UTC time of the change (``2025-01-23T15:00:22.000Z``), when the hub sent
    it (socket events); ``None`` for polled ones.
``status`` / ``user_progress``
    the session's state right after the change (CONTRACT §2 words).
``source``
    how the controller learnt it: ``"rest"`` (the create call), ``"socket"``, ``"poll"``.

The class attribute ``name`` is the hub's event name (``phone.registered``, …), so a
kiosk can log events in the wire vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

__all__ = [
    "SessionEvent", "SessionCreated", "PhoneRegistered", "Progress", "OrderSummary",
    "PaymentCompleted", "SessionExpired", "SessionCancelled", "Presence", "Payment",
    "TERMINAL",
]


@dataclass(frozen=True, kw_only=True)
class SessionEvent:
    """Base of every event (fields above)."""

    name: ClassVar[str] = "event"
    session_id: str
    seq: int | None
    at: str | None = None
    status: str | None = None
    user_progress: str | None = None
    source: str = "socket"

    @property
    def terminal(self) -> bool:
        """True for the events that end a session (paid, expired, cancelled)."""
        return isinstance(self, TERMINAL)

    def describe(self) -> str:
        """One human-readable line, e.g. for a kiosk log."""
        return f"{self.name} seq={self.seq} status={self.status} progress={self.user_progress}"


@dataclass(frozen=True, kw_only=True)
class SessionCreated(SessionEvent):
    """The machine created a session (``POST create-session``) and showed its QR code.

    ``qr_url`` is what the QR encodes; ``expires_at`` the current deadline (ISO 8601);
    ``timeout_minutes`` the inactivity timeout; ``machine_info`` the hub's
    ``{id, name, location}``; ``qr_png`` where the PNG of the QR was written, if asked.
    """

    name: ClassVar[str] = "session.created"
    qr_url: str
    expires_at: str
    timeout_minutes: int
    machine_info: dict[str, Any] = field(default_factory=dict)
    qr_png: Path | None = None

    def describe(self) -> str:
        return f"{self.name} {self.session_id} expires_at={self.expires_at} qr_url={self.qr_url}"


@dataclass(frozen=True, kw_only=True)
class PhoneRegistered(SessionEvent):
    """A phone scanned the QR and claimed the session (``user_progress: qr_scanned``).
    ``expires_at``: the deadline, moved by the phone's action."""

    name: ClassVar[str] = "phone.registered"
    expires_at: str | None = None


@dataclass(frozen=True, kw_only=True)
class Progress(SessionEvent):
    """The shopper moved on: ``user_progress`` is ``brand_selected``, ``design_complete``
    or ``payment_reached``. ``expires_at``: the moved deadline."""

    name: ClassVar[str] = "progress"
    expires_at: str | None = None

    def describe(self) -> str:
        return f"{self.name} seq={self.seq} user_progress={self.user_progress}"


@dataclass(frozen=True, kw_only=True)
class OrderSummary(SessionEvent):
    """The shopper chose "Pay via Machine": show this order and take the money.

    ``order_data`` is the guide's order (``brand, model, color, template{id,name},
    inputText, selectedFont, selectedTextColor`` …) without the image; it carries
    ``design_image_url``, the hub path of the image. ``payment_amount`` is exact
    (``Decimal("19.99")``, major units of ``currency``, an ISO 4217 code).
    ``design_image`` holds the image bytes (PNG or JPEG, ``design_image_type`` its MIME
    type) fetched from ``GET design-image``, or ``None`` when that fetch failed (call
    :meth:`VendingMachineController.fetch_design_image` to try again). A later
    ``OrderSummary`` of the same session (new ``order_id``) replaces this one.
    """

    name: ClassVar[str] = "order.summary"
    order_id: str
    order_data: dict[str, Any]
    payment_amount: Decimal
    currency: str = "GBP"
    design_image: bytes | None = None
    design_image_type: str | None = None

    @property
    def title(self) -> str:
        """What the machine shows, e.g. ``iPhone 15 Pro Case - £19.99``."""
        model = self.order_data.get("model") or self.order_data.get("brand") or "Phone"
        symbol = {"GBP": "£", "EUR": "€", "USD": "$"}.get(self.currency)
        price = f"{symbol}{self.payment_amount}" if symbol else \
            f"{self.payment_amount} {self.currency}"
        return f"{model} Case - {price}"

    def describe(self) -> str:
        size = len(self.design_image) if self.design_image is not None else 0
        return (f"{self.name} seq={self.seq} order_id={self.order_id} {self.title} "
                f"design_image={self.design_image_type} {size} bytes")


@dataclass(frozen=True, kw_only=True)
class PaymentCompleted(SessionEvent):
    """The hub recorded the payment (exactly once per session): ``transaction_id``,
    ``payment_method`` (card, cash, contactless, mobile, or ``app`` for "Pay on App"),
    ``payment_amount`` (``Decimal``) in ``currency``."""

    name: ClassVar[str] = "payment.completed"
    transaction_id: str | None = None
    payment_method: str | None = None
    payment_amount: Decimal | None = None
    currency: str | None = None

    def describe(self) -> str:
        return (f"{self.name} seq={self.seq} transaction_id={self.transaction_id} "
                f"method={self.payment_method} amount={self.payment_amount} {self.currency}")


@dataclass(frozen=True, kw_only=True)
class SessionExpired(SessionEvent):
    """The session timed out (no phone action for ``timeout_minutes``, or 5 minutes at
    ``payment_pending``): show a new QR code."""

    name: ClassVar[str] = "session.expired"


@dataclass(frozen=True, kw_only=True)
class SessionCancelled(SessionEvent):
    """The session was cancelled (``DELETE``, by this machine or another of its clients)."""

    name: ClassVar[str] = "session.cancelled"


@dataclass(frozen=True, kw_only=True)
class Presence(SessionEvent):
    """The phone's live socket opened (``online=True``) or closed. Only socket channels
    report presence; ``seq`` is ``None``. ``role`` is ``phone`` (or ``machine`` for
    another socket of this machine)."""

    name: ClassVar[str] = "presence"
    role: str
    online: bool

    def describe(self) -> str:
        return f"{self.name} {self.role} {'online' if self.online else 'offline'}"


TERMINAL = (PaymentCompleted, SessionExpired, SessionCancelled)


@dataclass(frozen=True)
class Payment:
    """What the kiosk's payment system took, to confirm with the hub.

    ``method``: ``card``, ``cash``, ``contactless`` or ``mobile``. ``transaction_id``:
    1..100 characters, unique per machine (retries reuse it, which makes them safe).
    ``amount``: major units (``Decimal("19.99")``); ``None`` means the order's total.
    ``data``: receipt details (``card_last_four``, ``approval_code`` …), JSON ≤ 4 KiB.
    """

    method: str
    transaction_id: str
    amount: Decimal | None = None
    data: dict[str, Any] | None = None
