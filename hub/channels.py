"""Live channels: the local socket registry, per-socket send queues, order and presence.

Transport-free: a :class:`Conn` is given two coroutines, ``send(text)`` and
``close(code, reason)``, by the socket route. :class:`Channels` subscribes the broker to
a channel on its first local socket and unsubscribes on the last, parses each message
once and hands the same text to every local socket of that channel.

Per connection and session, frames go out in ``seq`` order with no gaps and no
duplicates (CONTRACT §4): older or repeated ``seq`` are dropped, and a gap is filled from
the store (:meth:`~hub.store.Store.events_after`) while newer live frames wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from .codec import dumps
from .broker import Broker, machine_channel, session_channel
from .errors import CloseCode
from .lifecycle import TERMINAL
from .metrics import closed_with, socket_closed, socket_opened
from .presence import LocalPresence, Presence
from .store import UNAVAILABLE, Store

__all__ = ["Conn", "Channels", "SEND_QUEUE_LIMIT"]

log = logging.getLogger("hub.channels")

#: this process's name in shared presence sets
INSTANCE = uuid.uuid4().hex[:12]

#: bytes of live frames one socket may have queued before it is closed with 4408
SEND_QUEUE_LIMIT = 1 << 20


class _Resume:
    """Awaiting it finishes a coroutine its caller already stepped once, that step having
    yielded ``waiting`` (as Python 3.12's eager tasks do): so a send that completes at
    once needs no task, and one that suspends goes on in a task, in order."""

    __slots__ = ("coro", "waiting")

    def __init__(self, coro: Any, waiting: Any) -> None:
        self.coro, self.waiting = coro, waiting

    def __await__(self) -> Any:
        coro, waiting = self.coro, self.waiting
        while True:
            try:
                value = yield waiting
            except BaseException as exc:  # cancelled (or thrown into): pass it on
                try:
                    waiting = coro.throw(exc)
                except StopIteration as done:
                    return done.value
                continue
            try:
                waiting = coro.send(value)
            except StopIteration as done:
                return done.value


class Conn:
    """One client socket: its send queue (bounded), writer and delivery position.

    An idle socket holds no task: a writer task is started when a frame is queued and
    ends when the queue is empty (``bench/RESULTS.md``: memory per idle socket).

    Args:
        send: coroutine sending one text frame; close: coroutine closing with (code, reason).
        role: ``machine`` or ``phone``; machine_id: the machine it belongs to.
        session_id: the session of a session socket, None for a machine-wide socket.
        limit: bytes of queued live frames before a 4408 close (a replay does not count).
        drop: drops the connection at once (TCP reset), for a client that has stopped
            reading: its close frame cannot go out either. send_timeout: seconds one
            send (or the close) may wait for the client to read before ``drop``.
    """

    __slots__ = ("_send", "_close", "role", "machine_id", "session_id", "limit", "queue",
                 "queued", "last", "pending", "gaps", "inflight", "closing", "closed",
                 "_started", "_writer", "_closer", "_close_sent", "_done", "_drop",
                 "send_timeout", "__weakref__")

    def __init__(self, send: Callable[[str], Awaitable[None]],
                 close: Callable[[int, str], Awaitable[None]], *, role: str,
                 machine_id: str, session_id: str | None = None,
                 limit: int = SEND_QUEUE_LIMIT, drop: Callable[[], None] | None = None,
                 send_timeout: float | None = None) -> None:
        self._send, self._close, self._drop = send, close, drop
        self.send_timeout = send_timeout
        self.role, self.machine_id, self.session_id = role, machine_id, session_id
        self.limit = limit
        self.queue: deque[tuple[str, int]] = deque()
        self.queued = 0  #: bytes of live frames waiting
        self.last: dict[str, int] = {}  #: session id → last seq sent
        self.pending: list[tuple[dict[str, Any], str]] | None = []  #: frames held during setup
        self.gaps: dict[str, list[tuple[dict[str, Any], str]]] = {}  #: held while filling a gap
        self.inflight = 0  #: ops being answered: the socket never closes before their ack
        self.closing: tuple[int, str] | None = None
        self.closed = False  #: the close went out, or the peer is gone
        self._started = False
        self._writer: asyncio.Task[None] | None = None
        self._closer: asyncio.Task[None] | None = None
        self._close_sent = False
        self._done: asyncio.Future[None] | None = None  #: made by wait_closed

    @property
    def member(self) -> str:
        """This socket's name in presence sets."""
        return f"{INSTANCE}:{id(self):x}"

    def start(self) -> None:
        """Setup is over: send what is queued, and from now on whatever is pushed."""
        self._started = True
        self._kick()

    def _kick(self) -> None:
        """Write what is queued now, on the caller's stack, while sends complete without
        suspending (the transport takes the bytes); the first send that suspends (flow
        control), and the close, continue in a writer task."""
        if not self._started or self._closer is not None or (
                self._writer is not None and not self._writer.done()):
            return
        queue = self.queue
        while queue:
            text, n = queue.popleft()
            self.queued -= n
            send = self._send(text)
            try:
                waiting = send.send(None)
            except StopIteration:
                continue
            except Exception as exc:  # the peer went away: the reader sees the disconnect
                log.debug("send failed: %r", exc)
                self._mark_closed()
                return
            self._writer = asyncio.create_task(self._write_queued(_Resume(send, waiting)))
            return
        if self.closing is not None:
            self._writer = asyncio.create_task(self._write_queued())

    def push(self, text: str, live: bool = True) -> None:
        """Queue one frame; over :attr:`limit` bytes of live frames closes with 4408."""
        if self.closing is not None and self.closing[0] != CloseCode.NORMAL:
            return
        n = len(text) if live else 0
        self.queue.append((text, n))
        self.queued += n
        if self.queued > self.limit:
            self.abort(CloseCode.SLOW_CONSUMER, "Slow consumer")
            return
        self._kick()

    def push_obj(self, obj: Any) -> None:
        """Queue ``obj`` as a JSON text frame (a snapshot, not counted as live)."""
        self.push(dumps(obj).decode(), live=False)

    def acked(self) -> None:
        """One op was answered (its ack is queued): a pending close may go out now."""
        self.inflight -= 1
        self._kick()

    def finish(self, code: int, reason: str = "") -> None:
        """Close with ``code`` once the queue is sent and every op is acked."""
        if self.closing is None:
            self.closing = (code, reason)
        self._kick()

    def abort(self, code: int, reason: str) -> None:
        """Drop what is queued and close now (slow consumer, bad frame, shutdown)."""
        self.queue.clear()
        self.queued = 0
        self.closing = (code, reason)
        if self._writer is not None and not self._writer.done():
            self._writer.cancel()
        if self._closer is None:
            self._closer = asyncio.create_task(self._final_close())

    def _mark_closed(self) -> None:
        self.closed = True
        if self._done is not None and not self._done.done():
            self._done.set_result(None)

    async def _final_close(self) -> None:
        if self._close_sent:
            return
        self._close_sent = True
        code, reason = self.closing or (CloseCode.NORMAL, "")
        closed_with(code)
        try:
            await self._timed(self._close(code, reason))
        except Exception as exc:  # the peer left first
            log.debug("close %s failed: %r", code, exc)
        finally:
            self._mark_closed()

    async def _timed(self, send: Any) -> None:
        """Await ``send`` for at most :attr:`send_timeout`; past it the client is not
        reading: drop the connection (and raise ``TimeoutError``)."""
        if self.send_timeout is None:
            await send
            return
        try:
            await asyncio.wait_for(send, self.send_timeout)
        except asyncio.TimeoutError:
            log.warning("a %s socket read nothing for %ss: dropped", self.role,
                        self.send_timeout)
            if self._drop is not None:
                self._drop()
            raise

    async def _write_queued(self, started: _Resume | None = None) -> None:
        """Finish the send ``started`` (if any), send queued frames in order, then the
        close if one is due; cancelling it is safe (frames left are dropped)."""
        try:
            if started is not None:
                await self._timed(started)
            while self.queue:
                text, n = self.queue.popleft()
                self.queued -= n
                await self._timed(self._send(text))
        except Exception as exc:  # the peer went away: the reader sees the disconnect
            log.debug("send failed: %r", exc)
            self._mark_closed()
            return
        if self.closing is not None and self.inflight == 0:
            await self._final_close()

    async def stop(self) -> None:
        """The handler is ending: let a close under way (``finish`` or ``abort``) go out,
        at most 5 s, else stop the writer. Safe to call more than once."""
        pending = self._closer
        if pending is None and self.closing is not None and self._writer is not None \
                and not self._writer.done():
            pending = self._writer  # it sends what is queued, then the close
        if pending is not None:
            with contextlib.suppress(Exception, asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(pending), 5)
        self.queue.clear()
        self._started = False
        if self._writer is not None and not self._writer.done():
            self._writer.cancel()
        self._mark_closed()

    async def wait_closed(self) -> None:
        if self.closed:
            return
        if self._done is None:
            self._done = asyncio.get_running_loop().create_future()
        await self._done


def presence_frame(session_id: str, role: str, online: bool) -> bytes:
    """CONTRACT §4's presence frame."""
    return orjson.dumps({"type": "presence", "session_id": session_id, "role": role,
                         "online": online})


class Channels:
    """The local registry: which sockets listen on which channel, and delivery to them."""

    def __init__(self, store: Store, broker: Broker, presence: Presence | None = None
                 ) -> None:
        self.store, self.broker = store, broker
        self.subs: dict[str, set[Conn]] = {}
        self.presence: Presence = presence or LocalPresence()
        self.conns: set[Conn] = set()
        #: the last frame parsed, with its parse: each event is published on two channels
        self._parsed: tuple[bytes | None, dict[str, Any], str] = (None, {}, "")

    # -- registry -------------------------------------------------------------------
    async def attach(self, conn: Conn, channel: str) -> None:
        """Add ``conn`` to ``channel``; subscribes the broker on the first local socket."""
        if conn not in self.conns:
            self.conns.add(conn)
            socket_opened(conn.role)
        members = self.subs.get(channel)
        if members is None:
            members = self.subs[channel] = set()
            members.add(conn)
            await self.broker.subscribe(channel)
        else:
            members.add(conn)

    async def detach(self, conn: Conn) -> None:
        """Remove ``conn`` from every channel; unsubscribes channels left empty."""
        if conn in self.conns:
            self.conns.discard(conn)
            socket_closed(conn.role)
        for channel in [c for c, m in self.subs.items() if conn in m]:
            members = self.subs[channel]
            members.discard(conn)
            if not members:
                del self.subs[channel]
                with contextlib.suppress(Exception):
                    await self.broker.unsubscribe(channel)

    # -- delivery -------------------------------------------------------------------
    def on_message(self, channel: str, frame: bytes) -> None:
        """Broker handler: parse once, offer the same text to every local socket."""
        members = self.subs.get(channel)
        if not members:
            return
        if frame is self._parsed[0]:  # the same event on its machine's channel: parsed
            meta, text = self._parsed[1], self._parsed[2]
        else:
            try:
                meta = orjson.loads(frame)
            except orjson.JSONDecodeError:
                log.warning("dropped a malformed frame on %s", channel)
                return
            text = frame.decode()
            self._parsed = (frame, meta, text)
        for conn in tuple(members):
            self.offer(conn, meta, text)

    def offer(self, conn: Conn, meta: dict[str, Any], text: str) -> None:
        """Deliver one frame to one socket, keeping its per-session seq order."""
        if meta.get("type") == "presence":
            if meta.get("role") != conn.role and conn.pending is None:
                conn.push(text)
            return
        if conn.pending is not None:
            conn.pending.append((meta, text))
            return
        sid, seq = meta["session_id"], meta["seq"]
        held = conn.gaps.get(sid)
        if held is not None:
            held.append((meta, text))
            return
        last = conn.last.get(sid, 0)
        if seq <= last:
            return
        if seq > last + 1:
            conn.gaps[sid] = [(meta, text)]
            asyncio.create_task(self._fill_gap(conn, sid))
            return
        self._send_event(conn, sid, seq, meta.get("status"), text, live=True)

    def _send_event(self, conn: Conn, sid: str, seq: int, status: str | None, text: str,
                    live: bool) -> None:
        conn.last[sid] = seq
        conn.push(text, live=live)
        if conn.session_id is not None and status in TERMINAL:
            conn.finish(CloseCode.NORMAL, "Session over")

    async def _fill_gap(self, conn: Conn, sid: str) -> None:
        try:
            frames = await self.store.events_after(sid, conn.last.get(sid, 0)) or []
        except Exception:
            log.exception("could not fill a gap for %s", sid)
            frames = []
        for frame in frames:
            meta = orjson.loads(frame)
            if meta["seq"] == conn.last.get(sid, 0) + 1:
                self._send_event(conn, sid, meta["seq"], meta.get("status"), frame.decode(),
                                 live=False)
        for meta, text in conn.gaps.pop(sid, []):
            self.offer(conn, meta, text)

    def replay(self, conn: Conn, frames: list[bytes]) -> None:
        """Send a resume's missed events (not counted against the queue limit)."""
        for frame in frames:
            meta = orjson.loads(frame)
            sid = meta["session_id"]
            if meta["seq"] == conn.last.get(sid, 0) + 1:
                self._send_event(conn, sid, meta["seq"], meta.get("status"), frame.decode(),
                                 live=False)

    def go_live(self, conn: Conn) -> None:
        """End setup: deliver what arrived meanwhile, skipping what was already sent."""
        held, conn.pending = conn.pending or [], None
        for meta, text in held:
            self.offer(conn, meta, text)

    # -- presence -------------------------------------------------------------------
    async def online(self, conn: Conn, session_ids: list[str]) -> None:
        """Count ``conn`` present; publish presence where its party came online."""
        await self._mark(conn, session_ids, True)

    async def offline(self, conn: Conn, session_ids: list[str]) -> None:
        """Uncount ``conn``; publish presence where its party went offline."""
        await self._mark(conn, session_ids, False)

    async def _mark(self, conn: Conn, session_ids: list[str], online: bool) -> None:
        """Presence is best effort: a store or broker outage is logged, not raised."""
        change = self.presence.join if online else self.presence.leave
        try:
            if await change(conn.member, conn.machine_id, conn.session_id, conn.role):
                await self._announce(conn, session_ids, online)
        except UNAVAILABLE as exc:
            log.warning("presence not recorded: %r", exc)

    async def _announce(self, conn: Conn, session_ids: list[str], online: bool) -> None:
        for sid in session_ids:
            frame = presence_frame(sid, conn.role, online)
            await self.broker.publish(session_channel(sid), frame)
            if conn.role == "phone":
                await self.broker.publish(machine_channel(conn.machine_id), frame)

    def recover_all(self) -> None:
        """After a broker outage: fill every local socket's gaps from the store, and tell
        machine-wide sockets about sessions created meanwhile."""
        for conn in list(self.conns):
            if conn.pending is not None or conn.closed:
                continue
            if conn.session_id is None:
                asyncio.create_task(self._recover_machine(conn))
            else:
                self._recover(conn, conn.session_id)

    def _recover(self, conn: Conn, sid: str) -> None:
        if sid not in conn.gaps:
            conn.gaps[sid] = []
            asyncio.create_task(self._fill_gap(conn, sid))

    async def _recover_machine(self, conn: Conn) -> None:
        try:
            sessions = await self.store.open_sessions(conn.machine_id)
        except Exception:
            log.exception("could not list sessions of %s", conn.machine_id)
            return
        for sid in {s.session_id for s in sessions} | set(conn.last):
            self._recover(conn, sid)

    # -- shutdown -------------------------------------------------------------------
    async def shutdown(self, timeout: float = 5.0) -> None:
        """Close every socket with 1012 (server restarting) and wait, up to ``timeout`` s."""
        conns = list(self.conns)
        for conn in conns:
            conn.abort(CloseCode.RESTARTING, "Server restarting")
        if conns:
            await asyncio.wait([asyncio.create_task(c.wait_closed()) for c in conns],
                               timeout=timeout)
