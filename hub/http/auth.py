"""Credentials and client addresses from a request or socket (CONTRACT §1)."""

from __future__ import annotations

from starlette.requests import HTTPConnection

__all__ = ["bearer", "client_address"]


def bearer(conn: HTTPConnection, query_ok: bool = False) -> str | None:
    """The credential in ``Authorization: Bearer <token>`` (or ``?token=`` on sockets).

    A header of another scheme is returned as it is, so it fails as a wrong credential.
    """
    header = conn.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        return value.strip() if scheme.lower() == "bearer" else header
    if query_ok:
        return conn.query_params.get("token") or None
    return None


def client_address(conn: HTTPConnection, trusted: tuple[str, ...]) -> str:
    """The caller's address: the peer, or behind a trusted proxy the right-most
    ``X-Forwarded-For`` entry that is not itself a trusted proxy."""
    peer = conn.client.host if conn.client else "unknown"
    if peer not in trusted:
        return peer
    forwarded = [a.strip() for a in conn.headers.get("x-forwarded-for", "").split(",")]
    for addr in reversed(forwarded):
        if addr and addr not in trusted:
            return addr
    return peer
