"""Pure ASGI middleware (Starlette's ``trustedhost.py`` shape: other scope types pass),
and CORS with the contract's error bodies.

:class:`BodyLimit` enforces CONTRACT §1's body sizes: 16 KiB, or 1 MiB for
``order-summary``; larger is ``413 {"detail": "Request body too large"}`` and nothing more
is read.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..codec import dumps
from ..errors import HubError

__all__ = ["BodyLimit", "JsonCORS", "DEFAULT_LIMIT", "ORDER_LIMIT", "declared_length"]

DEFAULT_LIMIT = 16 * 1024
ORDER_LIMIT = 1024 * 1024
_TOO_LARGE = dumps({"detail": "Request body too large"})


def declared_length(value: bytes) -> int:
    """A ``Content-Length`` value as an int; -1 when it is not digits. Any number of
    leading zeros is allowed (HTTP does) and past 18 digits the value only needs to be
    larger than every limit (``int()`` refuses over 4,300 digits)."""
    if not value.isdigit():
        return -1
    digits = value.lstrip(b"0")
    return int(digits or b"0") if len(digits) <= 18 else 1 << 62


class BodyLimit:
    """Refuse request bodies over the route's limit (bytes), by header or as they stream."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = ORDER_LIMIT if scope["path"].endswith("/order-summary") else DEFAULT_LIMIT
        for name, value in scope["headers"]:
            if name == b"content-length":
                if declared_length(value) > limit:
                    await send({"type": "http.response.start", "status": 413, "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(_TOO_LARGE)).encode()),
                        (b"connection", b"close")]})
                    await send({"type": "http.response.body", "body": _TOO_LARGE})
                    return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise HubError(413, "Request body too large")
            return message

        await self.app(scope, limited, send)


class JsonCORS(CORSMiddleware):
    """Starlette's :class:`~starlette.middleware.cors.CORSMiddleware`, with its preflight
    refusals (origin, method or headers not allowed) as ``400 {"detail": ...}``
    (CONTRACT §1) instead of plain text."""

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code != 400:
            return response
        headers = {k: v for k, v in response.headers.items()
                   if k not in ("content-type", "content-length")}
        return Response(dumps({"detail": bytes(response.body).decode()}), 400,
                        headers=headers, media_type="application/json")
