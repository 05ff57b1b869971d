"""The integration guide's ``VendingMachineController``, as a real asyncio class.

One controller drives one machine, one session at a time::

    created = await controller.generate_qr_session()   # create, show the QR
    final = await controller.monitor_session()          # events until paid/expired/cancelled

While monitoring, it holds the session's live socket
(``/api/vending/session/{id}/ws?since=<last seq>``, or the machine-wide socket), and when
the socket cannot be held it polls ``GET status`` every ``poll_interval`` seconds, trying
the socket again after a full-jitter backoff. Events are de-duplicated by ``seq`` and
handed to ``on_event``; an order summary comes with its design image and starts
``on_payment_request``, whose :class:`~vending_machine.events.Payment` is confirmed with
retries that reuse the transaction id (so a retry can never pay twice).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import re
import sys
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal, TextIO

import websockets
from websockets.exceptions import ConnectionClosed, WebSocketException

from .events import (
    OrderSummary, Payment, PaymentCompleted, PhoneRegistered, Presence, Progress,
    SessionCancelled, SessionCreated, SessionEvent, SessionExpired,
)
from .http import HubClient, HubError, HubUnreachable, NO_RETRY, RetryPolicy, full_jitter
from .qr import print_qr, save_qr_png

__all__ = ["VendingMachineController", "PaymentNotConfirmed", "EventHandler",
           "PaymentHandler"]

log = logging.getLogger("vending_machine")

#: called with every event; may be a plain function or a coroutine function
EventHandler = Callable[[SessionEvent], Awaitable[None] | None]
#: called with an order; returns the payment taken, or None when none was
PaymentHandler = Callable[[OrderSummary], Awaitable[Payment | None]]

PROGRESS = ("started", "qr_scanned", "brand_selected", "design_complete", "payment_reached",
            "payment_pending", "payment_completed")
PHONE_STEPS = ("brand_selected", "design_complete", "payment_reached")
FINAL = ("payment_completed", "expired", "cancelled")
#: socket close codes that reconnecting as is cannot fix (bad credential, unknown session,
#: session over …): the controller polls at once instead, and the poll reports the error
#: or the session's end
REFUSED = (4400, 4401, 4403, 4404, 4410)


class PaymentNotConfirmed(Exception):
    """Money was taken but the hub did not record it: ``payment`` is what was taken,
    ``__cause__`` the :class:`HubError` (e.g. 410 ``Session has expired``) or
    :class:`HubUnreachable` (retries spent; the payment *may* have been recorded —
    :meth:`VendingMachineController.confirm_payment` with the same payment again is
    safe and tells). Refund or retry."""

    def __init__(self, payment: Payment, cause: Exception) -> None:
        super().__init__(f"payment {payment.transaction_id} not confirmed: {cause}")
        self.payment = payment


def _rank(progress: str | None) -> int:
    return PROGRESS.index(progress) if progress in PROGRESS else -1


def _decimal(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))


class VendingMachineController:
    """A machine's side of the hub flow (guide Appendix), with live events.

    Args:
        machine_id: the machine's id (1..50 of ``A-Z a-z 0-9 _ -``).
        api_base_url: the hub, e.g. ``https://hub.example`` (``http://127.0.0.1:8000``).
        machine_key: the key from ``hub machines add`` (``keys`` mode); ``None`` for an
            ``open`` hub.
        location, session_timeout_minutes, metadata: sent with ``create-session``
            (location ≤ 200 characters; timeout 1..120 minutes, hub default 30;
            metadata a JSON object ≤ 4 KiB).
        on_event: called with each :class:`SessionEvent`, in order, once per event
            (a plain or ``async`` function; an exception it raises is logged, not
            propagated, so a UI bug cannot stop the machine).
        on_payment_request: ``async`` function called with each :class:`OrderSummary`,
            in its own task; it takes the money and returns the :class:`Payment`, or
            ``None`` when nothing was taken. A returned payment is confirmed with the
            hub (see :meth:`confirm_payment`). The task is cancelled when the session
            ends otherwise or a newer order replaces this one.
        channel: ``"session"`` (the session socket, resumed with ``?since=``),
            ``"machine"`` (the machine-wide socket) or ``"poll"`` (no socket).
        ws_base_url: the socket base (default: ``api_base_url`` with ``ws``/``wss``).
        poll_interval: seconds between ``GET status`` calls while the socket cannot be
            held (the guide says 10–15).
        reconnect_base, reconnect_cap: full-jitter backoff of socket attempts, seconds:
            attempt *n* waits ``uniform(0, min(cap, base * 2**n))``.
        stable_after: seconds a socket must stay up for the backoff to start over.
        confirm_retry: how long :meth:`confirm_payment` keeps retrying network errors
            and 5xx (default: up to 5 minutes, the hub's payment window).
        qr_png_path: write the QR code there as a PNG for each new session.
        qr_out: text stream the QR is printed to (default stdout); ``show_qr=False``
            prints nothing.
        http_timeout, ws_open_timeout: seconds.
    """

    def __init__(self, machine_id: str, api_base_url: str, *,
                 machine_key: str | None = None, location: str | None = None,
                 session_timeout_minutes: int | None = None,
                 metadata: dict[str, Any] | None = None,
                 on_event: EventHandler | None = None,
                 on_payment_request: PaymentHandler | None = None,
                 channel: Literal["session", "machine", "poll"] = "session",
                 ws_base_url: str | None = None, poll_interval: float = 12.0,
                 reconnect_base: float = 0.5, reconnect_cap: float = 30.0,
                 stable_after: float = 5.0,
                 confirm_retry: RetryPolicy = RetryPolicy(attempts=None, deadline_s=300.0,
                                                          base_s=0.5, cap_s=10.0),
                 qr_png_path: str | Path | None = None, qr_out: TextIO | None = None,
                 show_qr: bool = True, http_timeout: float = 10.0,
                 ws_open_timeout: float = 5.0) -> None:
        if channel not in ("session", "machine", "poll"):
            raise ValueError("channel must be 'session', 'machine' or 'poll'")
        self.machine_id = machine_id
        self.api_base_url = api_base_url.rstrip("/")
        self.machine_key = machine_key
        self.location = location
        self.session_timeout_minutes = session_timeout_minutes
        self.metadata = metadata
        self.on_event = on_event
        self.on_payment_request = on_payment_request
        self.channel = channel
        self.ws_base_url = (ws_base_url or re.sub(r"^http", "ws", self.api_base_url)
                            ).rstrip("/")
        self.poll_interval = poll_interval
        self.reconnect_base, self.reconnect_cap = reconnect_base, reconnect_cap
        self.stable_after = stable_after
        self.confirm_retry = confirm_retry
        self.qr_png_path = Path(qr_png_path) if qr_png_path else None
        self.qr_out, self.show_qr = qr_out, show_qr
        self.ws_open_timeout = ws_open_timeout
        self.http = HubClient(self.api_base_url, machine_id, machine_key, timeout=http_timeout)

        #: the session being watched (the guide's ``current_session``)
        self.current_session: str | None = None
        #: the latest ``seq`` seen; a socket resumes after it
        self.last_seq = 0
        #: every event of the current session, in the order handed out
        self.history: list[SessionEvent] = []
        #: ``"socket"`` while a socket is held, ``"poll"`` while polling, else ``None``
        self.transport: str | None = None
        #: counters: socket_connects, socket_failures, polls, poll_failures, duplicates
        self.stats: dict[str, int] = dict.fromkeys(
            ("socket_connects", "socket_failures", "polls", "poll_failures", "duplicates"), 0)
        self.order: OrderSummary | None = None
        self._reset(None)

    # -- lifecycle ----------------------------------------------------------------------

    async def aclose(self) -> None:
        """Stop a payment task and close the HTTP client."""
        await self._stop_payment()
        await self.http.aclose()

    async def __aenter__(self) -> VendingMachineController:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _reset(self, session_id: str | None, last_seq: int = 0) -> None:
        self.current_session = session_id
        self.last_seq = last_seq
        self.history = []
        self.order = None
        self._status: str | None = None
        self._progress: str | None = None
        self._order_id: str | None = None
        self._phone_online: bool | None = None
        self._terminal: SessionEvent | None = None
        self._payment_task: asyncio.Task[Any] | None = None
        self._confirming = False
        self._fatal: asyncio.Future[None] | None = None
        self._payment_error: BaseException | None = None
        self._wake = asyncio.Event()
        self._poll_asap = False
        self._since_refused = False
        self._replay_until = 0  # events up to this seq were history when attached
        self._replay_order: str | None = None

    # -- the guide's steps --------------------------------------------------------------

    async def generate_qr_session(self) -> SessionCreated:
        """Create a session (``POST create-session``), show its QR code, and return the
        :class:`SessionCreated` event (also handed to ``on_event``).

        Raises:
            HubError: e.g. 401 ``Not authenticated``, 429 ``Rate limit exceeded``.
            HubUnreachable: the hub did not answer.
        """
        await self._stop_payment()
        body = await self.http.create_session(self.location, self.session_timeout_minutes,
                                              self.metadata)
        sid = body["session_id"]
        self._reset(sid, last_seq=1)  # creation is the session's event 1
        self._status, self._progress = "active", "started"
        png = save_qr_png(body["qr_url"], self.qr_png_path) if self.qr_png_path else None
        created = SessionCreated(
            session_id=sid, seq=1, status="active", user_progress="started", source="rest",
            qr_url=body["qr_url"], expires_at=body["expires_at"],
            timeout_minutes=int(body["timeout_minutes"]),
            machine_info=body.get("machine_info") or {}, qr_png=png)
        self.display_qr_code(created)
        await self._emit(created)
        return created

    def display_qr_code(self, created: SessionCreated) -> None:
        """Show the QR: printed to ``qr_out`` (the PNG, if asked, is already written).
        Override to draw it on the kiosk's screen."""
        if self.show_qr:
            print_qr(created.qr_url, self.qr_out or sys.stdout)

    async def attach(self, session_id: str, last_seq: int = 0) -> dict[str, Any]:
        """Watch an existing session of this machine (e.g. after the kiosk restarted):
        the next :meth:`monitor_session` hands out its events after ``last_seq``
        (``0``: all of them). Returns its current ``status`` body. Replayed orders
        start ``on_payment_request`` only if still payable (the session's current order
        at ``payment_pending``).

        Raises:
            HubError: 403 another machine's session, 404 ``Session not found`` …
        """
        await self._stop_payment()
        body = await self.http.status(session_id)
        self._reset(session_id, last_seq)
        self._replay_until = int(body.get("seq") or 0)
        if body.get("status") == "payment_pending":
            self._replay_order = body.get("order_id")
        return body

    async def monitor_session(self, abandon_after: float | None = None) -> SessionEvent:
        """Watch the current session until it ends; return its terminal event
        (:class:`PaymentCompleted`, :class:`SessionExpired` or :class:`SessionCancelled`).

        ``abandon_after``: seconds after which the session is cancelled (``DELETE``)
        unless a payment is being confirmed — the shopper walked away.

        Raises:
            HubError: the hub refuses this machine the session (401, 403, 404).
            PaymentNotConfirmed: a payment taken by ``on_payment_request`` was not
                recorded; refund it or confirm it again.
        """
        if self.current_session is None:
            raise RuntimeError("no session: call generate_qr_session() or attach() first")
        if self._terminal is not None:
            return self._terminal
        loop = asyncio.get_running_loop()
        self._fatal = fatal = loop.create_future()
        watcher = asyncio.create_task(self._watch())
        abandon = asyncio.create_task(self._abandon(abandon_after)) if abandon_after else None
        try:
            await asyncio.wait({watcher, fatal}, return_when=asyncio.FIRST_COMPLETED)
            self._raise_payment_error()
            terminal = watcher.result()
        except BaseException:
            await self._stop_payment()
            raise
        finally:
            self._fatal = None
            for task in (watcher, abandon):
                if task is not None and not task.done():
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
        await self._settle_payment()
        self._raise_payment_error()
        return terminal

    async def run_session(self, abandon_after: float | None = None) -> SessionEvent:
        """:meth:`generate_qr_session` then :meth:`monitor_session`. If monitoring stops
        by an error or cancellation (kiosk shutting down), the open session is cancelled
        so no phone can go on with it."""
        await self.generate_qr_session()
        try:
            return await self.monitor_session(abandon_after)
        except BaseException:
            if self._terminal is None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self.cancel_session(), 5)
            raise

    async def handle_payment_request(self, order: OrderSummary) -> dict[str, Any] | None:
        """The guide's payment step: take the money (:meth:`process_payment`) and, if
        some was taken, confirm it (:meth:`confirm_payment`); return the hub's answer,
        or ``None`` when nothing was taken."""
        payment = await self.process_payment(order)
        if payment is None:
            return None
        return await self.confirm_payment(payment, order)

    async def process_payment(self, order: OrderSummary) -> Payment | None:
        """Take the money for ``order`` with the machine's payment system. The default
        calls ``on_payment_request``; override it in a subclass instead if you prefer."""
        if self.on_payment_request is None:
            return None
        return await self.on_payment_request(order)

    async def confirm_payment(self, payment: Payment, order: OrderSummary | None = None
                              ) -> dict[str, Any]:
        """``POST confirm-payment`` for the current session; returns the hub's body
        (``success, transaction_id, status: "payment_completed"`` …).

        The amount is ``payment.amount`` or else the order's total. Network errors and
        5xx are retried per ``confirm_retry`` with the same body and transaction id,
        which the hub records once; calling this again with the same payment is safe.

        Raises:
            PaymentNotConfirmed: a 4xx (the hub's ``detail`` in the cause), or no answer
                within ``confirm_retry``.
        """
        sid = self._require_session()
        order = order or self.order
        amount = payment.amount if payment.amount is not None else (
            order.payment_amount if order is not None else None)
        if amount is None:
            raise ValueError("payment.amount is needed when there is no order summary")
        self._confirming = True
        try:
            body = await self.http.confirm_payment(
                sid, payment_method=payment.method, payment_amount=amount,
                transaction_id=payment.transaction_id, payment_data=payment.data,
                retry=self.confirm_retry)
        except (HubError, HubUnreachable) as exc:
            raise PaymentNotConfirmed(payment, exc) from exc
        finally:
            self._confirming = False
        self._poll_soon()
        return body

    async def cancel_session(self) -> dict[str, Any]:
        """``DELETE`` the current session (the shopper walked away, the kiosk shuts
        down). Returns ``success, message, session_id, status``; a finished session
        keeps its status. The :class:`SessionCancelled` event follows on the stream."""
        body = await self.http.cancel(self._require_session())
        self._poll_soon()
        return body

    async def cleanup_session(self) -> None:
        """The guide's cleanup: cancel the session if still open, and forget it."""
        if self.current_session is not None:
            with contextlib.suppress(HubError, HubUnreachable):
                await self.http.cancel(self.current_session)
        await self._stop_payment()
        self._reset(None)

    async def get_session_status(self) -> dict[str, Any]:
        """``GET status`` of the current session (amounts as ``Decimal``)."""
        return await self.http.status(self._require_session())

    async def fetch_design_image(self, session_id: str | None = None) -> tuple[str, bytes]:
        """``GET design-image``: (MIME type, bytes) of the order's design image.

        Raises:
            HubError: 404 ``No design image available for this session`` and others.
            HubUnreachable: no answer.
        """
        return await self.http.design_image(session_id or self._require_session())

    # -- watching -----------------------------------------------------------------------

    def _require_session(self) -> str:
        if self.current_session is None:
            raise RuntimeError("no current session")
        return self.current_session

    def _poll_soon(self) -> None:
        """Something changed by our own call: poll at once if polling."""
        self._poll_asap = True
        self._wake.set()

    async def _abandon(self, after: float) -> None:
        await asyncio.sleep(after)
        while self._confirming:
            await asyncio.sleep(0.1)
        if self._terminal is None:
            log.info("session %s abandoned after %.0f s: cancelling", self.current_session,
                     after)
            try:
                await self.cancel_session()
            except (HubError, HubUnreachable) as exc:
                log.warning("cancel of an abandoned session failed: %s", exc)

    async def _watch(self) -> SessionEvent:
        """Socket first; poll while it cannot be held; back to it after a backoff."""
        failures = 0
        polling = self.channel == "poll"
        now = time.monotonic()
        next_socket = now if self.channel != "poll" else float("inf")
        next_poll = now if polling else float("inf")
        while self._terminal is None:
            now = time.monotonic()
            if now >= next_socket:
                connected, held_for = await self._socket_once()
                if self._terminal is not None:
                    break
                now = time.monotonic()
                if not connected:
                    failures += 1
                    self.stats["socket_failures"] += 1
                    if not polling:  # fall back: poll now, then every poll_interval
                        polling, next_poll = True, now
                else:
                    polling = False
                    failures = 0 if held_for >= self.stable_after else failures + 1
                next_socket = now + full_jitter(failures, self.reconnect_base,
                                                self.reconnect_cap)
                if not polling:
                    next_poll = float("inf")
            if (polling or self.channel == "poll") and (now >= next_poll or self._poll_asap):
                self._poll_asap = False
                await self._poll_once()
                next_poll = time.monotonic() + self.poll_interval
                continue
            if not polling:
                self._poll_asap = False  # the socket will bring what changed
            await self._sleep_until(min(next_socket, next_poll))
        assert self._terminal is not None
        return self._terminal

    async def _sleep_until(self, when: float) -> None:
        delay = when - time.monotonic()
        if delay > 0 and not self._wake.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)
        self._wake.clear()

    def _socket_url(self) -> str:
        if self.channel == "machine":
            return f"{self.ws_base_url}/api/vending/machine/{self.machine_id}/ws"
        url = f"{self.ws_base_url}/api/vending/session/{self.current_session}/ws"
        # resume after the last event seen; if the hub refused that (4400: it no longer
        # knows so many events), take a snapshot instead
        return url if self._since_refused else f"{url}?since={self.last_seq}"

    async def _socket_once(self) -> tuple[bool, float]:
        """Hold one socket until it closes or the session ends: (whether it was held,
        seconds it was up). Refusals (:data:`REFUSED`) count as not held."""
        headers = {"Authorization": f"Bearer {self.machine_key}"} if self.machine_key else {}
        started: float | None = None
        code: int | None = None
        try:
            async with websockets.connect(
                    self._socket_url(), additional_headers=headers,
                    open_timeout=self.ws_open_timeout, close_timeout=2,
                    user_agent_header="vending-hub-machine/0.1") as ws:
                started = time.monotonic()
                self.transport = "socket"
                self.stats["socket_connects"] += 1
                log.debug("socket up: %s", self._socket_url())
                async for raw in ws:
                    await self._on_frame(json.loads(raw, parse_float=Decimal))
                    if self._terminal is not None:
                        break
                else:  # the hub closed normally (1000: the session is over)
                    code = ws.close_code
        except ConnectionClosed as exc:
            code = exc.rcvd.code if exc.rcvd else None
            log.info("socket closed: %s", code)
        except (OSError, TimeoutError, WebSocketException) as exc:
            log.info("socket unavailable: %r", exc)
        except (HubError, HubUnreachable) as exc:  # a catch-up call failed: reconnect
            log.info("catch-up failed: %s", exc)
        except ValueError as exc:
            log.warning("bad frame from the hub: %s", exc)
        finally:
            self.transport = None
        if code == 4400 and self.channel == "session":
            self._since_refused = not self._since_refused
        if started is None or code in REFUSED or (code == 1000 and self._terminal is None):
            return False, 0.0
        return True, time.monotonic() - started

    async def _poll_once(self) -> None:
        """One ``GET status``; a 401/403/404 (or 400) is final and raised."""
        sid = self._require_session()
        try:
            body = await self.http.status(sid, retry=NO_RETRY)
            self.transport = "poll"
            self.stats["polls"] += 1
            await self._apply_status(body, "poll")
        except HubError as exc:
            if exc.status in (400, 401, 403, 404):
                raise
            self.stats["poll_failures"] += 1
            log.info("poll failed: %s", exc)
        except HubUnreachable as exc:
            self.stats["poll_failures"] += 1
            log.info("poll failed: %s", exc)

    # -- frames and states → events -----------------------------------------------------

    async def _on_frame(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        sid = self.current_session
        if kind == "event":
            if frame.get("session_id") == sid:
                await self._on_event_frame(frame)
        elif kind == "snapshot":
            if "session" in frame:
                await self._apply_status(frame["session"], "socket")
                phone = (frame.get("presence") or {}).get("phone")
                if phone is not None:
                    await self._presence("phone", bool(phone))
            elif "sessions" in frame:  # machine socket: catch up on ours
                mine = [s for s in frame["sessions"] if s.get("session_id") == sid]
                if mine:
                    await self._apply_status(mine[0], "socket")
                else:  # over already: learn how
                    await self._apply_status(await self.http.status(sid), "poll")
        elif kind == "presence":
            if frame.get("session_id") == sid and frame.get("role") in ("phone", "machine"):
                await self._presence(frame["role"], bool(frame.get("online")))

    async def _presence(self, role: str, online: bool) -> None:
        if role == "phone":
            if self._phone_online == online or (self._phone_online is None and not online):
                self._phone_online = online
                return
            self._phone_online = online
        await self._emit(Presence(session_id=self._require_session(), seq=None,
                                  status=self._status, user_progress=self._progress,
                                  source="socket", role=role, online=online))

    async def _on_event_frame(self, frame: dict[str, Any]) -> None:
        seq = int(frame["seq"])
        if seq <= self.last_seq:
            self.stats["duplicates"] += 1
            return
        name, data = frame.get("event"), frame.get("data") or {}
        common: dict[str, Any] = dict(
            session_id=frame["session_id"], seq=seq, at=frame.get("at"),
            status=frame.get("status"), user_progress=frame.get("user_progress"),
            source="socket")
        event: SessionEvent | None = None
        if name == "phone.registered":
            event = PhoneRegistered(**common, expires_at=data.get("expires_at"))
        elif name == "progress":
            event = Progress(**common, expires_at=data.get("expires_at"))
        elif name == "order.summary":
            order_data = dict(data.get("order_data") or {})
            event = await self._order_event(common, data["order_id"], order_data,
                                            data.get("payment_amount"), data.get("currency"))
        elif name == "payment.completed":
            event = PaymentCompleted(
                **common, transaction_id=data.get("transaction_id"),
                payment_method=data.get("payment_method"),
                payment_amount=_decimal(data.get("payment_amount")),
                currency=data.get("currency"))
        elif name == "session.expired":
            event = SessionExpired(**common)
        elif name == "session.cancelled":
            event = SessionCancelled(**common)
        # session.created (we made it) and unknown future events: only the seq moves
        self.last_seq = seq
        self._status, self._progress = common["status"], common["user_progress"]
        if isinstance(event, OrderSummary):
            self._order_id = event.order_id
        if event is not None:
            await self._emit(event)

    async def _order_event(self, common: dict[str, Any], order_id: str,
                           order_data: dict[str, Any], amount: Any, currency: str | None
                           ) -> OrderSummary:
        sid = common["session_id"]
        order_data.pop("designImage", None)
        order_data.setdefault("design_image_url", HubClient.session_path(sid, "/design-image"))
        mime: str | None = None
        image: bytes | None = None
        try:
            mime, image = await self.http.design_image(sid)
        except (HubError, HubUnreachable) as exc:
            log.warning("design image of %s not fetched: %s", sid, exc)
        return OrderSummary(**common, order_id=order_id, order_data=order_data,
                            payment_amount=Decimal(str(amount)), currency=currency or "GBP",
                            design_image=image, design_image_type=mime)

    async def _apply_status(self, body: dict[str, Any], source: str) -> None:
        """Turn a status body (poll, or a socket snapshot) into the events it implies
        since the last known state. All data is fetched before anything is handed out,
        so a failed fetch leaves the state as it was (the next poll tries again)."""
        seq = int(body.get("seq") or 0)
        status, progress = body.get("status"), body.get("user_progress")
        if seq <= self.last_seq:
            if status in FINAL and self._terminal is None:  # its end was seen, not kept
                self._progress = progress
                await self._emit(self._final_event(status, body, seq, source))
            return
        common: dict[str, Any] = dict(session_id=body["session_id"], seq=seq, at=None,
                                      status=status, user_progress=progress, source=source)
        events: list[SessionEvent] = []
        old = _rank(self._progress)
        if old < _rank("qr_scanned") <= _rank(progress):
            events.append(PhoneRegistered(**common, expires_at=body.get("expires_at")))
        if progress in PHONE_STEPS and _rank(progress) > max(old, _rank("qr_scanned")):
            events.append(Progress(**common, expires_at=body.get("expires_at")))
        order_id = body.get("order_id")
        if status == "payment_pending" and order_id and order_id != self._order_id:
            info = await self.http.order_info(body["session_id"])
            events.append(await self._order_event(
                common, info["order_id"], dict(info.get("order_summary") or {}),
                info["payment_amount"], info.get("currency")))
        if status in FINAL:
            events.append(self._final_event(status, body, seq, source))
        self.last_seq = seq
        self._status, self._progress = status, progress
        if order_id:
            self._order_id = next((e.order_id for e in events if isinstance(e, OrderSummary)),
                                  order_id)
        for event in events:
            await self._emit(event)

    @staticmethod
    def _final_event(status: str, body: dict[str, Any], seq: int, source: str
                     ) -> SessionEvent:
        """The terminal event a finished status body stands for."""
        common: dict[str, Any] = dict(session_id=body["session_id"], seq=seq, at=None,
                                      status=status, user_progress=body.get("user_progress"),
                                      source=source)
        if status == "payment_completed":
            return PaymentCompleted(
                **common, transaction_id=body.get("transaction_id"),
                payment_method=body.get("payment_method"),
                payment_amount=_decimal(body.get("payment_amount")),
                currency=body.get("currency"))
        if status == "expired":
            return SessionExpired(**common)
        return SessionCancelled(**common)

    async def _emit(self, event: SessionEvent) -> None:
        self.history.append(event)
        if event.terminal:
            self._terminal = event
        if self.on_event is not None:
            try:
                result = self.on_event(event)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("on_event failed on %s", event.name)
        if isinstance(event, OrderSummary):
            self.order = event
            self._start_payment(event)
        elif event.terminal and not self._confirming:
            await self._stop_payment()

    # -- the payment task ---------------------------------------------------------------

    def _wants_payment(self) -> bool:
        overridden = (type(self).process_payment is not VendingMachineController.process_payment
                      or type(self).handle_payment_request
                      is not VendingMachineController.handle_payment_request)
        return overridden or self.on_payment_request is not None

    def _start_payment(self, order: OrderSummary) -> None:
        if not self._wants_payment():
            return
        if order.seq is not None and order.seq <= self._replay_until and \
                order.order_id != self._replay_order:
            return  # a replayed order already replaced, paid or over
        task = self._payment_task
        if task is not None and not task.done():
            if self._confirming:  # an older order is being confirmed: let it finish
                return
            task.cancel()  # a newer order replaces it
        self._payment_task = asyncio.create_task(self.handle_payment_request(order))
        self._payment_task.add_done_callback(self._payment_done)

    def _payment_done(self, task: asyncio.Task[Any]) -> None:
        if task.cancelled() or task.exception() is None:
            return
        self._payment_error = task.exception()
        if self._fatal is not None and not self._fatal.done():
            self._fatal.set_result(None)  # wake monitor_session, which raises it

    def _raise_payment_error(self) -> None:
        error, self._payment_error = self._payment_error, None
        if error is not None:
            raise error

    async def _stop_payment(self) -> None:
        """Cancel a payment task still waiting for the shopper (keeping its error if it
        failed already)."""
        task, self._payment_task = self._payment_task, None
        if task is None:
            return
        if task.done():
            self._payment_done(task)
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def _settle_payment(self) -> None:
        """After the end: let a confirmation in flight finish (its error is kept for
        :meth:`monitor_session` to raise); stop a payment still waiting for the shopper."""
        task = self._payment_task
        if task is not None and not task.done() and self._confirming:
            self._payment_task = None
            with contextlib.suppress(Exception):
                await task
            self._payment_done(task)
        else:
            await self._stop_payment()
