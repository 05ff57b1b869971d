"""Direct dispatch of the hot paths, in front of Starlette's middleware and router.

Every session socket and every JSON command on ``/api/vending/session/{id}/…`` (the
table :data:`hub.http.rest.ACTIONS`) is matched here with one regular expression and
handed to the same app the Starlette route would call. Only the layers in between are
skipped: ``ServerErrorMiddleware``, :class:`~hub.http.middleware.BodyLimit`,
``ExceptionMiddleware``, the router's linear scan and their per-request coroutines
(bench/RESULTS.md: about 8% of the CPU of a REST event, and a dozen suspended coroutines
held by every open socket). A :class:`~hub.http.commands.Command` enforces its own body
limit and answers its own refusals; a socket handler accepts, then closes with the
contract's code. Everything else (pages, QR, health, 404 and 405) goes through Starlette.
"""

from __future__ import annotations

import re

from starlette.applications import Starlette
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket

from .rest import ACTIONS
from .sockets import machine_socket, session_socket

__all__ = ["HubApp"]

_ACTION = re.compile(r"/api/vending/session/([^/]+)(?:/([a-z-]+))?")
_SOCKET = re.compile(r"/api/vending/(session|machine)/([^/]+)/ws")
_SOCKETS = {"session": ("session_id", session_socket),
            "machine": ("machine_id", machine_socket)}


class HubApp(Starlette):
    """The hub's Starlette app, serving its hot paths directly (see the module doc).

    Args:
        direct_http: serve :data:`~hub.http.rest.ACTIONS` directly; False when user
            middleware must see every request (CORS).
        **kwargs: :class:`~starlette.applications.Starlette`'s.
    """

    def __init__(self, *, direct_http: bool = True, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.direct_http = direct_http

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "websocket":
            m = _SOCKET.fullmatch(scope["path"])
            if m is not None:
                name, handler = _SOCKETS[m.group(1)]
                scope["app"] = self
                scope["path_params"] = {name: m.group(2)}
                await handler(WebSocket(scope, receive, send))
                return
        elif kind == "http" and self.direct_http:
            m = _ACTION.fullmatch(scope["path"])
            if m is not None:
                app = ACTIONS.get((scope["method"], m.group(2) or ""))
                if app is not None:
                    scope["app"] = self
                    scope["path_params"] = {"session_id": m.group(1)}
                    await app(scope, receive, send)
                    return
        await super().__call__(scope, receive, send)
