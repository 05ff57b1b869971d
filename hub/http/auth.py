"""Credentials and client addresses from a request or socket (CONTRACT §1)."""

from __future__ import annotations

from starlette.requests import HTTPConnection

__all__ = ["bearer", "parse_bearer", "client_address", "client_from", "NOT_BEARER"]

#: what :func:`bearer` returns for an Authorization header that is not ``Bearer <token>``
NOT_BEARER = "\x00not-bearer"


def parse_bearer(header: str | None) -> str | None:
    """The token of an ``Authorization`` header value: None without one,
    :data:`NOT_BEARER` for another scheme or an empty token."""
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else NOT_BEARER


def bearer(conn: HTTPConnection, query_ok: bool = False) -> str | None:
    """The credential in ``Authorization: Bearer <token>`` (or ``?token=`` on sockets).

    A header of another scheme (or none) yields :data:`NOT_BEARER`, which matches no
    credential, so it fails as a wrong one (401).
    """
    token = parse_bearer(conn.headers.get("authorization"))
    if token is None and query_ok:
        return conn.query_params.get("token") or None
    return token


def client_from(peer: str, forwarded: str | None, trusted: tuple[str, ...]) -> str:
    """The caller's address: ``peer``, or behind a trusted proxy the right-most
    ``X-Forwarded-For`` entry (``forwarded``) that is not itself a trusted proxy."""
    if peer not in trusted:
        return peer
    for addr in reversed([a.strip() for a in (forwarded or "").split(",")]):
        if addr and addr not in trusted:
            return addr
    return peer


def client_address(conn: HTTPConnection, trusted: tuple[str, ...]) -> str:
    """:func:`client_from` for a request or socket."""
    peer = conn.client.host if conn.client else "unknown"
    if peer not in trusted:
        return peer
    return client_from(peer, conn.headers.get("x-forwarded-for"), trusted)
