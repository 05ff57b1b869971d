"""Socket routes of CONTRACT §4: the session socket and the machine-wide socket.

Every socket is accepted first and then, if refused, closed with the contract's code, so a
client always reads it. After setup the route only reads client frames (``ping`` and the
ops, answered with acks through the same :class:`~hub.service.Hub` commands as REST);
delivery is :mod:`hub.channels`' work.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from starlette.routing import BaseRoute, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from ..broker import machine_channel, session_channel
from ..channels import Channels, Conn
from ..codec import dumps
from ..errors import CloseCode, HubError, close_code_for
from ..ids import is_machine_id
from ..service import Caller, Hub
from ..store import UNAVAILABLE
from ..lifecycle import Session
from ..metrics import closed_with, refused
from ..views import status_body
from .auth import bearer, client_address

__all__ = ["routes"]

log = logging.getLogger("hub.sockets")

#: op name → (Hub method, whether it takes the frame as its body)
OPS = {"progress": ("progress", True), "order_summary": ("order_summary", True),
       "confirm_payment": ("confirm_payment", True), "cancel": ("cancel", False)}


class _Envelope(msgspec.Struct):
    """What a client frame's routing needs (CONTRACT §4); the op's own fields are read by
    its command from the same text. Parsing only these skips building the rest."""

    op: str | None = None
    id: int | str | bool | float | None = None  #: checked below: an int or a string
    session_id: Any = None


_envelope = msgspec.json.Decoder(_Envelope)
_INT64, _UINT64 = -(2**63), 2**64 - 1


class Refuse(Exception):
    """Close the socket with ``code`` (raised during setup)."""

    def __init__(self, code: int, reason: str = "") -> None:
        self.code, self.reason = code, reason


async def _authenticate(ws: WebSocket, hub: Hub) -> tuple[Caller, str]:
    """The caller and its socket role: ``machine`` or ``phone`` (in ``open`` mode, the
    ``?role=`` parameter, default ``machine``)."""
    client = client_address(ws, hub.settings.trusted_proxies)
    caller = await hub.authenticate(bearer(ws, query_ok=True), client)
    if caller.role != "open":
        return caller, caller.role
    role = ws.query_params.get("role", "machine")
    if role not in ("machine", "phone"):
        raise Refuse(CloseCode.MALFORMED, "role must be machine or phone")
    return caller, role


def _since(ws: WebSocket) -> int | None:
    raw = ws.query_params.get("since")
    if raw is None:
        return None
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        raise Refuse(CloseCode.MALFORMED, "since must be a non-negative integer")
    return int(raw)


async def session_socket(ws: WebSocket) -> None:
    """``/api/vending/session/{id}/ws[?since=N]``: snapshot or replay, then live events."""
    hub: Hub = ws.app.state.hub
    sid = ws.path_params["session_id"]
    await ws.accept()
    try:
        caller, role = await _authenticate(ws, hub)
        since = _since(ws)
        s = await hub.snapshot(caller, sid)
        if since is None and s.finished:
            raise Refuse(CloseCode.SESSION_OVER, "Session already over")
        if since is not None and since > s.seq:
            raise Refuse(CloseCode.MALFORMED, "since is ahead of the session")
    except (HubError, Refuse, *UNAVAILABLE) as exc:
        await _refuse(ws, hub, exc)
        return
    conn = Conn(ws.send_text, ws.close, role=role, machine_id=s.machine_id, session_id=sid,
                drop=_dropper(ws), send_timeout=hub.settings.send_timeout_s)

    async def start() -> list[str]:
        await _session_start(hub, ws.app.state.channels, conn, sid, since, s)
        return [sid]

    await _serve(ws, hub, conn, caller, session_channel(sid), start)


async def _session_start(hub: Hub, channels: Channels, conn: Conn, sid: str,
                         since: int | None, s: Session) -> None:
    """Queue the snapshot, or with ``since`` the missed events (CONTRACT §4): when the
    hub no longer holds them all, a snapshot with ``"recovered": false``."""
    current = await hub.store.load(sid) or s
    frames = None if since is None else await hub.store.events_after(sid, since)
    if frames is None:
        conn.last[sid] = current.seq
        snapshot = {"type": "snapshot", "session": status_body(current), "seq": current.seq}
        if since is not None:
            snapshot["recovered"] = False
        snapshot["presence"] = await channels.presence.of(sid, current.machine_id)
        conn.push_obj(snapshot)
    else:
        conn.last[sid] = since  # type: ignore[assignment]
        channels.replay(conn, frames)
    if since is not None and current.finished and conn.last[sid] >= current.seq:
        conn.finish(CloseCode.NORMAL, "Session over")


async def machine_socket(ws: WebSocket) -> None:
    """``/api/vending/machine/{machine_id}/ws``: every event of every session of a machine."""
    hub: Hub = ws.app.state.hub
    mid = ws.path_params["machine_id"]
    await ws.accept()
    try:
        caller, role = await _authenticate(ws, hub)
        if role != "machine":
            raise HubError(403, "Forbidden")
        if not is_machine_id(mid):
            raise HubError(400, "Invalid machine ID format")
        if caller.role == "machine" and caller.machine_id != mid:
            raise HubError(403, "Forbidden")
        if await hub.store.machine(mid) is None:
            raise HubError(404, "Machine not found")
    except (HubError, Refuse, *UNAVAILABLE) as exc:
        await _refuse(ws, hub, exc)
        return
    conn = Conn(ws.send_text, ws.close, role="machine", machine_id=mid, drop=_dropper(ws),
                send_timeout=hub.settings.send_timeout_s)

    async def start() -> list[str]:
        sessions = await hub.store.open_sessions(mid)
        for s in sessions:
            conn.last[s.session_id] = s.seq
        conn.push_obj({"type": "snapshot", "sessions": [status_body(s) for s in sessions]})
        return [s.session_id for s in sessions]

    await _serve(ws, hub, conn, caller, machine_channel(mid), start)


def _dropper(ws: WebSocket) -> Callable[[], None]:
    """Abort the socket's TCP connection. ASGI has no message for it (a close frame
    waits behind what the client has not read, and uvicorn closes the connection only
    once its buffer drains): the uvicorn protocol behind ``send`` has the transport."""
    def drop() -> None:
        transport = getattr(getattr(ws._send, "__self__", None), "transport", None)
        if transport is not None:
            transport.abort()
    return drop


async def _refuse(ws: WebSocket, hub: Hub, exc: BaseException) -> None:
    """Close a socket refused during setup with the contract's code (after accept)."""
    if isinstance(exc, HubError):
        if exc.status == 403:
            await hub.auth_failed(client_address(ws, hub.settings.trusted_proxies))
        await _close(ws, close_code_for(exc), exc.detail)
    elif isinstance(exc, Refuse):
        await _close(ws, exc.code, exc.reason)
    else:
        await _close(ws, CloseCode.RESTARTING, "Service temporarily unavailable")


async def _serve(ws: WebSocket, hub: Hub, conn: Conn, caller: Caller, channel: str,
                 start: Callable[[], Awaitable[list[str]]]) -> None:
    """Subscribe, run ``start`` (queue the first frames; it returns the sessions the
    socket is present in), go live, answer client frames until the socket closes."""
    channels: Channels = ws.app.state.channels
    await channels.attach(conn, channel)
    try:
        try:
            ids = await start()
        except UNAVAILABLE:
            await _close(ws, CloseCode.RESTARTING, "Service temporarily unavailable")
            return
        channels.go_live(conn)
        conn.start()
        await channels.online(conn, ids)
        try:
            await _read_loop(ws, hub, conn, caller, conn.session_id)
        finally:
            await channels.offline(conn, ids)
    finally:
        await conn.stop()
        await channels.detach(conn)


async def _read_loop(ws: WebSocket, hub: Hub, conn: Conn, caller: Caller,
                     sid: str | None) -> None:
    """Answer client frames until the socket closes (either side)."""
    while not conn.closed:
        try:
            message = await ws.receive()
        except (WebSocketDisconnect, RuntimeError):
            break
        if message["type"] == "websocket.disconnect":
            break
        text = message.get("text")
        if text is None:
            data = message.get("bytes") or b""
            try:
                text = data.decode()
            except UnicodeDecodeError:
                conn.finish(CloseCode.MALFORMED, "Frames must be UTF-8 JSON")
                break
        reply = await _answer(hub, conn, caller, sid, text)
        if reply is None:
            # acks and events already queued go out first (CONTRACT §4: an op's ack
            # always comes before the socket closes)
            conn.finish(CloseCode.MALFORMED, "Malformed frame")
            break
        conn.push(reply)


async def _answer(hub: Hub, conn: Conn, caller: Caller, sid: str | None,
                  text: str) -> str | None:
    """The reply to one client frame, or None when the frame is malformed (4400)."""
    try:
        msg = _envelope.decode(text)
    except (msgspec.DecodeError, RecursionError):  # not JSON, not an object, too deep
        return None
    op, op_id = msg.op, msg.id
    if op == "ping":
        return '{"type":"pong"}'
    if op not in OPS or isinstance(op_id, bool) or not (
            isinstance(op_id, str) or (isinstance(op_id, int) and _INT64 <= op_id <= _UINT64)):
        return None  # an id the ack could not echo as JSON is malformed too
    named = msg.session_id
    target = sid if sid is not None else named
    if not isinstance(target, str):
        return None
    if sid is not None and named is not None and named != sid:
        return dumps({"type": "ack", "id": op_id, "code": 400,
                      "body": {"detail": "Session ID mismatch"}}).decode()
    name, with_body = OPS[op]
    conn.inflight += 1
    try:
        args: list[Any] = [caller, target] + ([text.encode()] if with_body else [])
        code, body = 200, await getattr(hub, name)(*args)
    except HubError as exc:
        code, body = exc.status, {"detail": exc.detail}
        refused(code)
    except UNAVAILABLE:
        code, body = 503, {"detail": "Service temporarily unavailable"}
        refused(503)
    finally:
        conn.acked()
    return dumps({"type": "ack", "id": op_id, "code": code, "body": body}).decode()


async def _close(ws: WebSocket, code: int, reason: str) -> None:
    closed_with(code)
    try:
        await ws.close(code, reason[:120])
    except Exception:  # the peer left first
        log.debug("close %s on a socket already gone", code)


routes: list[BaseRoute] = [
    WebSocketRoute("/api/vending/session/{session_id}/ws", session_socket),
    WebSocketRoute("/api/vending/machine/{machine_id}/ws", machine_socket),
]
