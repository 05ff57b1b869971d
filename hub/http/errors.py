"""One error seam for HTTP: every refusal renders as ``{"detail": ...}`` (CONTRACT §1)."""

from __future__ import annotations

import logging
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from ..codec import dumps
from ..errors import HubError
from ..metrics import refused
from ..store import UNAVAILABLE

__all__ = ["JSON", "exception_handlers"]

log = logging.getLogger("hub.http")


class JSON(Response):
    """A JSON response rendered by :func:`hub.codec.dumps` (exact money, orjson)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return dumps(content)


async def _hub_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HubError)
    refused(exc.status)
    return JSON({"detail": exc.detail}, exc.status, headers=exc.headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return JSON({"detail": exc.detail}, exc.status_code, headers=exc.headers)


async def _unavailable(request: Request, exc: Exception) -> Response:
    log.warning("store unavailable on %s %s: %r", request.method, request.url.path, exc)
    refused(503)
    return JSON({"detail": "Service temporarily unavailable"}, 503,
                headers={"Retry-After": "1"})


async def _client_gone(request: Request, exc: Exception) -> Response:
    """The client left before sending its whole body: nothing to answer, nothing to log."""
    return Response(status_code=400)


async def _server_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSON({"detail": "Internal server error"}, 500)


exception_handlers: dict[Any, Any] = {
    HubError: _hub_error, HTTPException: _http_error, ClientDisconnect: _client_gone,
    **{exc: _unavailable for exc in UNAVAILABLE}, Exception: _server_error}
