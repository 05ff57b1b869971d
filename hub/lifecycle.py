"""The session lifecycle as pure values: state in, new state plus one event or a refusal out.

No I/O, no awaits, no clock reads: every function takes ``now`` (epoch milliseconds).
This module is CONTRACT §2 in code, shaped like the sans-I/O core of ``websockets``.

``status``: ``active`` → ``designing`` → ``payment_pending`` → ``payment_completed``, or
``expired``, or ``cancelled`` (the last three are terminal).
``user_progress`` only moves forward along :data:`PROGRESS`.
Every change appends exactly one :class:`Event` with the next ``seq`` (1, 2, 3 …).
"""

from __future__ import annotations

from typing import Any

from msgspec import Struct, field
from msgspec.structs import replace

from .clock import iso
from .errors import HubError
from .money import from_minor

__all__ = [
    "ACTIVE", "DESIGNING", "PAYMENT_PENDING", "PAYMENT_COMPLETED", "EXPIRED", "CANCELLED",
    "TERMINAL", "NOTIFY_EVENTS", "PROGRESS", "PHONE_PROGRESS", "Policy", "Order", "Payment", "Session",
    "Event", "Outcome", "new_session", "register", "progress", "order_summary", "pay",
    "cancel", "expire", "check_expiry",
]

ACTIVE, DESIGNING = "active", "designing"
PAYMENT_PENDING, PAYMENT_COMPLETED = "payment_pending", "payment_completed"
EXPIRED, CANCELLED = "expired", "cancelled"
TERMINAL = frozenset({PAYMENT_COMPLETED, EXPIRED, CANCELLED})

#: ``user_progress`` in order; it never goes backwards.
PROGRESS = (
    "started", "qr_scanned", "brand_selected", "design_complete", "payment_reached",
    PAYMENT_PENDING, PAYMENT_COMPLETED,
)
_RANK = {p: i for i, p in enumerate(PROGRESS)}
#: events a machine with a ``callback_url`` is told about by webhook (CONTRACT §5)
NOTIFY_EVENTS = frozenset({"order.summary", "payment.completed", "session.expired",
                           "session.cancelled"})
#: values the phone may send to ``progress`` (older or equal ones are a no-op).
PHONE_PROGRESS = frozenset(PROGRESS[:5])


class Policy(Struct, frozen=True):
    """Timing rules: ``minute_ms`` is one ``session_timeout_minutes`` unit (60 000 in
    production, smaller in tests); ``payment_timeout_ms`` the deadline once
    ``payment_pending`` (CONTRACT §2: 5 minutes)."""

    minute_ms: int = 60_000
    payment_timeout_ms: int = 300_000


class Order(Struct, frozen=True):
    """An order summary: ``order_data`` without ``designImage``, amount in minor units."""

    order_id: str
    order_data: dict[str, Any]
    amount_minor: int
    currency: str


class Payment(Struct, frozen=True):
    """A confirmed payment. ``scope`` is the machine id, or ``"app"`` for app payments;
    (``scope``, ``transaction_id``) is the idempotency key."""

    scope: str
    transaction_id: str
    method: str
    amount_minor: int
    currency: str
    at: int
    payment_data: dict[str, Any] | None = None


class Session(Struct, frozen=True):
    """One session's whole state. Times are epoch milliseconds; ``seq`` is the last event's."""

    session_id: str
    machine_id: str
    machine_info: dict[str, Any]
    location: str | None
    metadata: dict[str, Any] | None
    timeout_minutes: int
    status: str
    user_progress: str
    created_at: int
    last_activity: int
    expires_at: int
    seq: int
    phone_token: str | None = None
    order: Order | None = None
    payment: Payment | None = None
    callback_url: str | None = None  #: the machine's webhook URL, taken at creation

    @property
    def finished(self) -> bool:
        """True once the status is terminal (paid, expired or cancelled)."""
        return self.status in TERMINAL


class Event(Struct, frozen=True):
    """One change: CONTRACT §4's event frame without ``type``; ``at`` in epoch ms."""

    session_id: str
    seq: int
    event: str
    at: int
    status: str
    user_progress: str
    data: dict[str, Any] = field(default_factory=dict)


class Outcome(Struct, frozen=True):
    """What a command did: the session after it, the events it appended (zero or one,
    or two when a call met an overdue deadline), and the refusal to answer with, if any.
    ``refusal`` with events means: commit the events, then refuse (a call that found its
    session expired)."""

    session: Session
    events: tuple[Event, ...] = ()
    refusal: HubError | None = None

    @property
    def changed(self) -> bool:
        return bool(self.events)


def _deadline(status: str, s: Session, now: int, policy: Policy) -> int:
    """The deadline a phone action at ``now`` sets for ``s`` entering ``status``."""
    if status == PAYMENT_PENDING:
        return now + policy.payment_timeout_ms
    return now + s.timeout_minutes * policy.minute_ms


def _step(s: Session, now: int, name: str, data: dict[str, Any], **changes: Any) -> Outcome:
    """Apply ``changes`` and append one event with the next seq."""
    new = replace(s, seq=s.seq + 1, **changes)
    ev = Event(new.session_id, new.seq, name, now, new.status, new.user_progress, data)
    return Outcome(new, (ev,))


def _phone_step(s: Session, now: int, policy: Policy, name: str, data: dict[str, Any],
                **changes: Any) -> Outcome:
    """A phone action that changes the session: it moves the deadline (CONTRACT §1).

    The new deadline is added to ``data`` as ``expires_at``, except for ``order.summary``,
    whose ``data`` is the guide's payload as it is."""
    expires = _deadline(changes.get("status", s.status), s, now, policy)
    if name != "order.summary":
        data = {**data, "expires_at": iso(expires)}
    return _step(s, now, name, data, last_activity=now, expires_at=expires, **changes)


def new_session(session_id: str, machine_id: str, machine_info: dict[str, Any],
                location: str | None, metadata: dict[str, Any] | None,
                timeout_minutes: int, now: int, policy: Policy,
                callback_url: str | None = None) -> Outcome:
    """Create a session (status ``active``, progress ``started``) with its
    ``session.created`` event (seq 1)."""
    s = Session(session_id, machine_id, machine_info, location, metadata, timeout_minutes,
                ACTIVE, "started", now, now, now + timeout_minutes * policy.minute_ms, 0,
                callback_url=callback_url)
    return _step(s, now, "session.created", {
        "machine_id": machine_id, "location": location,
        "expires_at": iso(s.expires_at), "timeout_minutes": timeout_minutes,
    })


def check_expiry(s: Session, now: int) -> Outcome | None:
    """Return the ``session.expired`` outcome when the deadline has passed, else None."""
    if not s.finished and now >= s.expires_at:
        return _step(s, now, "session.expired", {}, status=EXPIRED)
    return None


def _writable(s: Session, now: int) -> Outcome | None:
    """Refuse a write to a finished or overdue session (CONTRACT §1), or return None."""
    overdue = check_expiry(s, now)
    if overdue is not None:
        return replace(overdue, refusal=HubError(410, "Session has expired"))
    if s.status == EXPIRED:
        return Outcome(s, refusal=HubError(410, "Session has expired"))
    if s.status == CANCELLED:
        return Outcome(s, refusal=HubError(410, "Session has been cancelled"))
    if s.status == PAYMENT_COMPLETED:
        return Outcome(s, refusal=HubError(409, "Payment already confirmed"))
    return None


def register(s: Session, token: str | None, new_token: str, open_mode: bool,
             now: int, policy: Policy) -> Outcome:
    """Bind the first phone (CONTRACT §3 ``register-user``).

    ``token`` is the caller's phone token, if it sent one; ``new_token`` the one to hand
    out on first binding. The same phone again gets a no-op; in ``open`` mode a caller
    without a token also gets the bound token. Anyone else: 409 ``Session already claimed``.
    """
    if (stop := _writable(s, now)) is not None:
        return stop
    if s.phone_token is None:
        rank = max(_RANK[s.user_progress], _RANK["qr_scanned"])
        status = DESIGNING if s.status == ACTIVE else s.status
        return _phone_step(s, now, policy, "phone.registered", {}, phone_token=new_token,
                           status=status, user_progress=PROGRESS[rank])
    if token == s.phone_token or (open_mode and token is None):
        return Outcome(s)
    return Outcome(s, refusal=HubError(409, "Session already claimed"))


def progress(s: Session, value: str, now: int, policy: Policy) -> Outcome:
    """Move ``user_progress`` forward to ``value`` (a :data:`PHONE_PROGRESS` word).

    A repeated or older value is a no-op. Raises nothing: an unknown value is refused by
    the caller's schema (422 ``Invalid user_progress``).
    """
    if (stop := _writable(s, now)) is not None:
        return stop
    if _RANK[value] <= _RANK[s.user_progress]:
        return Outcome(s)
    status = DESIGNING if s.status == ACTIVE else s.status
    return _phone_step(s, now, policy, "progress", {"user_progress": value},
                       status=status, user_progress=value)


def order_summary(s: Session, order: Order, design_image_url: str | None, now: int,
                  policy: Policy) -> Outcome:
    """Record the phone's order and ask the machine for payment (``payment_pending``).

    Allowed from ``designing``; again while ``payment_pending`` it replaces the order.
    Else 409 ``Invalid session state for order summary``.
    """
    if (stop := _writable(s, now)) is not None:
        return stop
    if s.status not in (DESIGNING, PAYMENT_PENDING):
        return Outcome(s, refusal=HubError(409, "Invalid session state for order summary"))
    order_data = dict(order.order_data)
    if design_image_url is not None:
        order_data["design_image_url"] = design_image_url
    data = {"session_id": s.session_id, "order_id": order.order_id, "order_data": order_data,
            "payment_amount": from_minor(order.amount_minor), "currency": order.currency}
    return _phone_step(s, now, policy, "order.summary", data, order=order,
                       status=PAYMENT_PENDING, user_progress=PAYMENT_PENDING)


def pay(s: Session, payment: Payment, now: int, app_order: Order | None = None,
        list_price: tuple[int, str] | None = None) -> Outcome:
    """Mark the session paid (machine ``confirm-payment`` or app ``app-payment``).

    Idempotent on (``scope``, ``transaction_id``): the same payment again is a no-op.
    The amount and currency must equal the recorded order's (else 400 ``Payment amount
    does not match order total``). An app payment may come while ``designing``: then
    ``app_order`` (if the app sent one) is recorded, and without an order the amount
    must equal ``list_price`` (minor units, currency). Other refusals: 409 ``Transaction ID already used`` (same id, other
    amount or method), 409 ``Payment already confirmed`` (another id on a paid session),
    409 ``Session not ready for payment confirmation``.
    """
    if s.payment is not None:
        p = s.payment
        if (p.scope, p.transaction_id) == (payment.scope, payment.transaction_id):
            if (p.method, p.amount_minor, p.currency) == (
                    payment.method, payment.amount_minor, payment.currency):
                return Outcome(s)
            return Outcome(s, refusal=HubError(409, "Transaction ID already used"))
    if (stop := _writable(s, now)) is not None:
        return stop
    app = payment.scope == "app"
    if s.status != PAYMENT_PENDING and not (app and s.status == DESIGNING):
        return Outcome(s, refusal=HubError(409, "Session not ready for payment confirmation"))
    order = s.order if s.order is not None else app_order
    due = (order.amount_minor, order.currency) if order is not None else list_price
    if (payment.amount_minor, payment.currency) != due:
        return Outcome(s, refusal=HubError(400, "Payment amount does not match order total"))
    data = {"transaction_id": payment.transaction_id, "payment_method": payment.method,
            "payment_amount": from_minor(payment.amount_minor), "currency": payment.currency}
    return _step(s, now, "payment.completed", data, status=PAYMENT_COMPLETED,
                 user_progress=PAYMENT_COMPLETED, payment=payment, order=order)


def cancel(s: Session, now: int) -> Outcome:
    """Cancel an open session (kept for audit); a finished one is left as it is."""
    if (overdue := check_expiry(s, now)) is not None:
        return overdue
    if s.finished:
        return Outcome(s)
    return _step(s, now, "session.cancelled", {}, status=CANCELLED)


def expire(s: Session, now: int) -> Outcome:
    """The sweeper's command: expire the session if its deadline has passed, else no-op."""
    return check_expiry(s, now) or Outcome(s)

