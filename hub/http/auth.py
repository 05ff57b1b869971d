"""Credentials and client addresses from a request or socket (CONTRACT §1)."""

from __future__ import annotations

from starlette.requests import HTTPConnection

__all__ = ["bearer", "client_address", "NOT_BEARER"]

#: what :func:`bearer` returns for an Authorization header that is not ``Bearer <token>``
NOT_BEARER = "\x00not-bearer"


def bearer(conn: HTTPConnection, query_ok: bool = False) -> str | None:
    """The credential in ``Authorization: Bearer <token>`` (or ``?token=`` on sockets).

    A header of another scheme (or none) yields :data:`NOT_BEARER`, which matches no
    credential, so it fails as a wrong one (401).
    """
    header = conn.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        return value.strip() if scheme.lower() == "bearer" and value.strip() else NOT_BEARER
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
