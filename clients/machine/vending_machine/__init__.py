"""Vending Hub client for a phone-case vending machine (asyncio).

Drop it into a kiosk: :class:`VendingMachineController` creates a session, shows its QR
code, hears the shopper's phone live (WebSocket, falling back to polling), hands the order
and its design image to your code, and confirms the payment exactly once. See README.md.
"""

from .controller import PaymentNotConfirmed, VendingMachineController
from .events import (
    TERMINAL, OrderSummary, Payment, PaymentCompleted, PhoneRegistered, Presence, Progress,
    SessionCancelled, SessionCreated, SessionEvent, SessionExpired,
)
from .http import HubClient, HubError, HubUnreachable, RetryPolicy, full_jitter
from .qr import print_qr, qr_ascii, save_qr_png

__version__ = "0.1.0"

__all__ = [
    "VendingMachineController", "PaymentNotConfirmed", "HubClient", "HubError",
    "HubUnreachable", "RetryPolicy", "full_jitter", "SessionEvent", "SessionCreated",
    "PhoneRegistered", "Progress", "OrderSummary", "PaymentCompleted", "SessionExpired",
    "SessionCancelled", "Presence", "Payment", "TERMINAL", "print_qr", "qr_ascii",
    "save_qr_png",
]
