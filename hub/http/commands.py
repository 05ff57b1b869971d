"""The session commands of CONTRACT §3 as raw ASGI apps: the REST hot path.

``/api/vending/session/{id}/{action}`` calls ``Hub.<command>(caller, session_id[, raw
body])`` and answers its dict as JSON. A :class:`Command` does, in one frame and on the
ASGI messages themselves, what a Starlette endpoint did through ``Request``, ``Response``
and two middlewares (bench/RESULTS.md: about an eighth of a REST event's CPU): the body
limit (CONTRACT §1: 413), the credential (§1), the command, and every refusal as
``{"detail": ...}`` (:func:`hub.http.errors.answer`, as Starlette's handlers).
The same objects serve as Starlette route endpoints (:mod:`hub.http.rest`) and are
dispatched directly by :mod:`hub.http.direct`.
"""

from __future__ import annotations

from starlette.types import Receive, Scope, Send

from ..codec import dumps
from ..errors import HubError
from .auth import client_from, parse_bearer
from .errors import answer
from .middleware import DEFAULT_LIMIT, declared_length

__all__ = ["Command"]

_JSON = (b"content-type", b"application/json")
_TOO_LARGE = "Request body too large"


class _Gone(Exception):
    """The client left before its whole body arrived: nothing to answer."""


class Command:
    """``Hub.<name>(caller, session_id[, body])`` as an ASGI app answering JSON.

    Args:
        name: the :class:`~hub.service.Hub` method. body: whether it takes the raw body
            (bytes; read whole, at most ``limit`` bytes, else 413).
        anonymous_ok: a request without a credential is allowed (``register-user``).
    """

    __slots__ = ("name", "body", "anonymous_ok", "limit")

    def __init__(self, name: str, body: bool, anonymous_ok: bool = False,
                 limit: int = DEFAULT_LIMIT) -> None:
        self.name, self.body, self.anonymous_ok, self.limit = name, body, anonymous_ok, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        hub = scope["app"].state.hub
        authorization = forwarded = None
        length = -1
        for key, value in scope["headers"]:  # the first of repeated headers, as Starlette
            if key == b"authorization":
                if authorization is None:
                    authorization = value.decode("latin-1")
            elif key == b"content-length":
                length = declared_length(value)
            elif key == b"x-forwarded-for":
                if forwarded is None:
                    forwarded = value.decode("latin-1")
        try:
            if length > self.limit:
                raise HubError(413, _TOO_LARGE, {"connection": "close"})  # body not read
            raw = await self._read(receive) if self.body else None
            peer = scope["client"][0] if scope.get("client") else "unknown"
            client = client_from(peer, forwarded, hub.settings.trusted_proxies)
            caller = await hub.authenticate(parse_bearer(authorization), client,
                                            self.anonymous_ok)
            sid = scope["path_params"]["session_id"]
            method = getattr(hub, self.name)
            try:
                result = await (method(caller, sid, raw) if self.body else method(caller, sid))
            except HubError as exc:
                if exc.status == 403 and caller.role != "open":
                    await hub.auth_failed(client)
                raise
            status, payload, extra = 200, dumps(result), None
        except _Gone:
            return
        except Exception as exc:  # answered as Starlette's handlers answer it
            status, body, extra = answer(exc, scope["method"], scope["path"])
            payload = dumps(body)
        headers = [_JSON, (b"content-length", str(len(payload)).encode())]
        if extra:
            headers += [(k.lower().encode("latin-1"), v.encode("latin-1"))
                        for k, v in extra.items()]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    async def _read(self, receive: Receive) -> bytes:
        """The whole request body; 413 past ``limit`` bytes (nothing more is read)."""
        chunks: list[bytes] = []
        seen = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Gone
            chunk = message.get("body", b"")
            seen += len(chunk)
            if seen > self.limit:
                raise HubError(413, _TOO_LARGE)
            chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)
