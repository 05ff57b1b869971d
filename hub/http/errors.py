"""One error seam for HTTP: every refusal renders as ``{"detail": ...}`` (CONTRACT §1)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from ..codec import dumps
from ..errors import HubError
from ..metrics import refused
from ..store import UNAVAILABLE

__all__ = ["JSON", "answer", "exception_handlers"]

log = logging.getLogger("hub.http")


class JSON(Response):
    """A JSON response rendered by :func:`hub.codec.dumps` (exact money, orjson)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return dumps(content)


def answer(exc: Exception, method: str, path: str
           ) -> tuple[int, dict[str, Any], Mapping[str, str] | None]:
    """How the hub answers ``exc`` raised serving ``method path``: (status, body, extra
    headers), counted in the metrics and logged as it should be. A refusal is its own
    4xx (``Retry-After`` on 429); the store or Redis down is 503 with ``Retry-After: 1``;
    anything else is a logged 500. Used by Starlette's handlers below and by
    :class:`~hub.http.commands.Command`."""
    if isinstance(exc, HubError):
        refused(exc.status)
        return exc.status, {"detail": exc.detail}, exc.headers
    if isinstance(exc, HTTPException):
        return exc.status_code, {"detail": exc.detail}, exc.headers
    if isinstance(exc, UNAVAILABLE):
        log.warning("store unavailable on %s %s: %r", method, path, exc)
        refused(503)
        return 503, {"detail": "Service temporarily unavailable"}, {"Retry-After": "1"}
    log.exception("unhandled error on %s %s", method, path, exc_info=exc)
    return 500, {"detail": "Internal server error"}, None


async def _answer(request: Request, exc: Exception) -> Response:
    status, body, headers = answer(exc, request.method, request.url.path)
    return JSON(body, status, headers=headers)


async def _client_gone(request: Request, exc: Exception) -> Response:
    """The client left before sending its whole body: nothing to answer, nothing to log."""
    return Response(status_code=400)


exception_handlers: dict[Any, Any] = {
    HubError: _answer, HTTPException: _answer, ClientDisconnect: _client_gone,
    **{exc: _answer for exc in UNAVAILABLE}, Exception: _answer}
