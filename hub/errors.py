"""The one error seam: a refusal with a status and a ``detail`` text (CONTRACT §1).

Services and the lifecycle raise :class:`HubError`; the REST layer renders it as
``{"detail": ...}`` with its status, and the socket layer as an ack with that code or a
close with the matching 44xx code (:func:`close_code_for`).
"""

from __future__ import annotations

from enum import IntEnum

__all__ = ["HubError", "CloseCode", "close_code_for"]


class HubError(Exception):
    """A refused request: ``status`` (an HTTP 4xx code) and a client-safe ``detail``.

    ``headers`` carries extra response headers (``Retry-After`` on 429).
    """

    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers

    def __repr__(self) -> str:
        return f"HubError({self.status}, {self.detail!r})"


class CloseCode(IntEnum):
    """WebSocket close codes used by the hub (RFC 6455 §7.4 and CONTRACT §4).

    4000–4499 are the hub's own; by the convention of centrifuge's ``disconnect.go``
    a client reconnects after 1012 and 4408, and gives up after the others.
    """

    NORMAL = 1000  #: the session ended; nothing more will come
    TOO_LARGE = 1009  #: an inbound frame over 64 KiB
    RESTARTING = 1012  #: server restarting: reconnect with ``since``
    TRY_AGAIN_LATER = 1013  #: rate limited (429): reconnect after a while
    MALFORMED = 4400  #: a frame or query parameter that cannot be understood
    NOT_AUTHENTICATED = 4401  #: missing or wrong credential
    FORBIDDEN = 4403  #: a credential of another machine, session or role
    NOT_FOUND = 4404  #: no such session
    SLOW_CONSUMER = 4408  #: more than 1 MiB of live frames queued: reconnect with ``since``
    SESSION_OVER = 4410  #: the session is already finished


_CLOSE_FOR_STATUS = {
    400: CloseCode.MALFORMED,
    401: CloseCode.NOT_AUTHENTICATED,
    403: CloseCode.FORBIDDEN,
    404: CloseCode.NOT_FOUND,
    409: CloseCode.SESSION_OVER,
    410: CloseCode.SESSION_OVER,
    422: CloseCode.MALFORMED,
    429: CloseCode.TRY_AGAIN_LATER,
}


def close_code_for(err: HubError) -> CloseCode:
    """Map a refusal met while opening a socket to its close code (CONTRACT §4)."""
    return _CLOSE_FOR_STATUS.get(err.status, CloseCode.MALFORMED)
