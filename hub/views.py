"""Response bodies built from a session (CONTRACT §3): plain dicts, amounts as Decimal."""

from __future__ import annotations

from typing import Any

from .clock import iso
from .lifecycle import ACTIVE, DESIGNING, EXPIRED, PAYMENT_PENDING, Session
from .money import from_minor

__all__ = ["status_body", "order_info_body", "validate_body", "payment_body",
           "register_body"]


def status_body(s: Session) -> dict[str, Any]:
    """``GET /status``: the guide's fields, the order's once it exists, the payment's once
    paid, and ``seq`` (the latest event's). Never the design image."""
    body: dict[str, Any] = {
        "session_id": s.session_id, "status": s.status, "user_progress": s.user_progress,
        "expires_at": iso(s.expires_at), "created_at": iso(s.created_at),
        "last_activity": iso(s.last_activity), "machine_id": s.machine_id,
    }
    if s.order is not None:
        body["order_id"] = s.order.order_id
        body["payment_amount"] = from_minor(s.order.amount_minor)
        body["currency"] = s.order.currency
    if s.payment is not None:
        body["transaction_id"] = s.payment.transaction_id
        body["payment_method"] = s.payment.method
    body["seq"] = s.seq
    return body


def register_body(s: Session) -> dict[str, Any]:
    """``POST /register-user``: includes the phone token the phone must keep."""
    return {"success": True, "session_id": s.session_id, "machine_info": s.machine_info,
            "expires_at": iso(s.expires_at), "user_progress": s.user_progress,
            "phone_token": s.phone_token}


def order_info_body(s: Session) -> dict[str, Any]:
    """``GET /order-info`` (the caller checks an order exists)."""
    assert s.order is not None
    return {
        "session_id": s.session_id, "order_id": s.order.order_id,
        "order_summary": s.order.order_data,
        "payment_amount": from_minor(s.order.amount_minor), "currency": s.order.currency,
        "machine_info": s.machine_info,
        "session_status": {"status": s.status, "user_progress": s.user_progress,
                           "expires_at": iso(s.expires_at),
                           "last_activity": iso(s.last_activity)},
    }


def validate_body(s: Session) -> dict[str, Any]:
    """``POST /validate``: is the session still usable, and its health."""
    active = s.status in (ACTIVE, DESIGNING, PAYMENT_PENDING)
    return {"session_id": s.session_id, "valid": active,
            "session_health": {"is_expired": s.status == EXPIRED, "is_active": active,
                               "status": s.status, "user_progress": s.user_progress,
                               "expires_at": iso(s.expires_at),
                               "last_activity": iso(s.last_activity)}}


def payment_body(s: Session) -> dict[str, Any]:
    """``confirm-payment`` / ``app-payment`` 200 body, built from the recorded payment so
    a repeated request gets the very same body."""
    assert s.payment is not None
    body: dict[str, Any] = {
        "success": True, "message": "Payment confirmed successfully",
        "session_id": s.session_id, "transaction_id": s.payment.transaction_id,
        "status": "payment_completed", "next_steps": "Order will be sent for printing"}
    if s.payment.scope == "app":
        body["payment_method"] = "app"
    return body
