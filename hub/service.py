"""The commands: authorise, apply the lifecycle, commit, publish (ARCHITECTURE "one path").

REST routes and socket ops call the same :class:`Hub` method and get the same answer; the
sweeper is one more caller (:meth:`Hub.expire`). Checks run in CONTRACT §1's order:
credential (401), id format (400), existence (404), ownership (403), body (422, then 400
for refused values), state (409/410). Every refusal is a :class:`~hub.errors.HubError`.
"""

from __future__ import annotations

import hmac
import logging
import time
import os
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import lifecycle as L
from . import schemas as S
from .broker import Broker, machine_channel, session_channel
from .clock import now_ms
from .config import Settings
from .errors import HubError
from .ids import is_machine_id, new_session_id, parse_session_id
from .machines import MACHINE_KEY_PREFIX, PHONE_TOKEN_PREFIX, Machine, key_hash, new_phone_token
from .metrics import count_event, observe_commit
from .money import from_minor
from .prices import PriceList
from .qr import qr_url
from .ratelimit import LocalRateLimiter, RateLimiter
from .store import Committed, Store
from .views import order_info_body, payment_body, register_body, status_body, validate_body

__all__ = ["Hub", "Caller", "PAYMENT_METHODS"]

log = logging.getLogger("hub.service")
_random = random.Random()  # seeded from os.urandom, and again in a forked child
os.register_at_fork(after_in_child=_random.seed)

PAYMENT_METHODS = frozenset({"card", "cash", "contactless", "mobile"})
#: how long a resolved credential is trusted without asking the store again (a machine
#: key replaced with ``hub machines add`` stops working within this time)
CREDENTIAL_TTL_MS = 10_000


def _order_id() -> str:
    """A random (version 4) UUID string, RFC 9562 §5.4: ``str(uuid.uuid4())`` without a
    ``UUID`` object or a system call per order (it is on every order's hot path). An
    order id names an order; it grants nothing, so it need not come from a CSPRNG."""
    h = f"{_random.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling. ``role``: ``machine``, ``phone``, ``app``, ``anonymous`` (no
    credential: only ``register-user`` and health routes accept it) or ``open`` (``open``
    mode, where nothing is checked). ``token`` is a phone token sent in ``open`` mode."""

    role: str
    machine_id: str | None = None
    session_id: str | None = None
    token: str | None = None


class Hub:
    """The service: every command of CONTRACT §3–4 as one coroutine.

    Args:
        settings: the configuration. store, broker: the two seams.
        clock: epoch-ms clock (injected so tests can move time).
    """

    def __init__(self, settings: Settings, store: Store, broker: Broker,
                 limits: RateLimiter | None = None,
                 clock: Callable[[], int] = now_ms) -> None:
        self.settings, self.store, self.broker, self.clock = settings, store, broker, clock
        self.policy = L.Policy(int(settings.session_minute_s * 1000),
                               int(settings.payment_timeout_s * 1000))
        self.prices = PriceList.load(settings.prices)
        self.limits: RateLimiter = limits or LocalRateLimiter()
        #: credential → (valid until, caller): polls skip the store for their key
        self._callers: dict[str, tuple[int, Caller]] = {}

    # -- credentials ------------------------------------------------------------------
    async def authenticate(self, token: str | None, client: str,
                           anonymous_ok: bool = False) -> Caller:
        """Resolve a bearer credential (CONTRACT §1).

        Raises:
            HubError: 401 ``Not authenticated``; 429 after 20 failures a minute from
            ``client`` (the address the request came from).
        """
        if self.settings.open_mode:
            return Caller("open", token=token)
        await self.limits.check("authfail:" + client, self.settings.auth_fail_rate,
                                self.clock())
        caller = await self._resolve(token)
        if caller is None and (token is not None or not anonymous_ok):
            await self.auth_failed(client)
            raise HubError(401, "Not authenticated")
        return caller or Caller("anonymous")

    async def auth_failed(self, client: str) -> None:
        """Count one failed credential (401 or 403) for ``client``'s rate limit."""
        try:
            await self.limits.hit("authfail:" + client, self.settings.auth_fail_rate,
                                  self.clock())
        except HubError:
            pass

    async def _resolve(self, token: str | None) -> Caller | None:
        if not token:
            return None
        app_key = self.settings.app_key
        if app_key and hmac.compare_digest(token.encode(), app_key.encode()):
            return Caller("app")
        now = self.clock()
        cached = self._callers.get(token)
        if cached is not None and cached[0] > now:
            return cached[1]
        caller: Caller | None = None
        if token.startswith(MACHINE_KEY_PREFIX):
            m = await self.store.machine_by_key(key_hash(token))
            caller = None if m is None else Caller("machine", machine_id=m.machine_id)
        elif token.startswith(PHONE_TOKEN_PREFIX):
            sid = await self.store.session_for_token(token)
            caller = None if sid is None else Caller("phone", session_id=sid, token=token)
        if caller is not None:  # only good credentials are kept, for CREDENTIAL_TTL_MS
            if len(self._callers) >= 100_000:
                self._callers.clear()
            self._callers[token] = (now + CREDENTIAL_TTL_MS, caller)
        return caller

    # -- common steps -----------------------------------------------------------------
    async def session_for(self, caller: Caller, session_id: str, roles: tuple[str, ...],
                          recent_ok: bool = False) -> L.Session:
        """Check the id (400), load (404), check ownership (403); expire it if overdue.

        ``recent_ok``: for a command that reads nothing of the state but what never
        changes (machine, ids) and decides on the state its commit reads: a recent copy
        will do (:meth:`~hub.store.Store.load`; on Redis it saves a round trip)."""
        if parse_session_id(session_id) is None:
            raise HubError(400, "Invalid session ID format")
        s = await self.store.load(session_id, recent_ok)
        if s is None:
            raise HubError(404, "Session not found")
        if caller.role != "open":
            own = (caller.role == "machine" and caller.machine_id == s.machine_id) or \
                  (caller.role == "phone" and caller.session_id == s.session_id) or \
                  caller.role in ("app", "anonymous")
            if caller.role not in roles or not own:
                raise HubError(403, "Forbidden")
        overdue = L.check_expiry(s, self.clock())
        if overdue is not None:
            s = (await self.commit(session_id, lambda cur: L.expire(cur, self.clock()))
                 ).outcome.session
        return s

    async def commit(self, session_id: str, decide: Callable[[L.Session], L.Outcome],
                     image: tuple[str, bytes] | None = None) -> Committed:
        """Apply ``decide`` atomically, publish what it committed, then raise its refusal."""
        started = time.perf_counter()
        done = await self.store.apply(session_id, decide, image)
        await self.publish(done)
        observe_commit(time.perf_counter() - started)
        for ev in done.outcome.events:
            count_event(ev.event)
        if done.outcome.refusal is not None:
            raise done.outcome.refusal
        return done

    async def publish(self, done: Committed) -> None:
        """Publish committed frames to the session's and the machine's channel.

        A broker failure is logged, not raised: the events are committed, and sockets
        recover them from the store by ``seq``. A store that published them itself, in
        its commit (``done.published``), has also handed them to this instance's
        sockets: a socket op's own event comes before its ack."""
        if done.published:
            return
        s = done.outcome.session
        for frame in done.frames:
            try:
                await self.broker.publish(session_channel(s.session_id), frame)
                await self.broker.publish(machine_channel(s.machine_id), frame)
            except Exception:
                log.exception("publish failed for %s; sockets will recover it", s.session_id)

    # -- commands ---------------------------------------------------------------------
    async def create_session(self, caller: Caller, raw: Any) -> dict[str, Any]:
        """``POST /create-session`` → the guide's body with ``qr_url``."""
        if caller.role not in ("machine", "open"):
            raise HubError(403, "Forbidden")
        body = S.decode(raw, S.CreateSession)
        if not is_machine_id(body.machine_id):
            raise HubError(400, "Invalid machine ID format")
        if caller.role == "machine" and caller.machine_id != body.machine_id:
            raise HubError(403, "Forbidden")
        S.check_object_size(body.metadata, "metadata", raw=raw)
        now = self.clock()
        await self.limits.hit("create:" + body.machine_id, self.settings.create_rate, now)
        machine = await self.store.machine(body.machine_id)
        if machine is None:  # open mode: registered on first use
            machine = Machine(body.machine_id, body.machine_id, body.location, None, now)
            await self.store.add_machine(machine)
        sid = new_session_id(body.machine_id, now)
        outcome = L.new_session(sid, body.machine_id, machine.info(), body.location,
                                body.metadata, body.session_timeout_minutes, now, self.policy,
                                machine.callback_url)
        await self.publish(await self.store.create(outcome))
        count_event("session.created")
        s = outcome.session
        return {"success": True, "session_id": sid,
                "qr_url": qr_url(self.settings.qr_base, s.machine_id, sid, s.location),
                "expires_at": outcome.events[0].data["expires_at"],
                "timeout_minutes": s.timeout_minutes, "machine_info": s.machine_info}

    async def status(self, caller: Caller, session_id: str) -> dict[str, Any]:
        """``GET /status``: always current; an expired session answers 200."""
        s = await self.session_for(caller, session_id, ("machine", "phone"))
        return status_body(s)

    async def register_user(self, caller: Caller, session_id: str, raw: Any) -> dict[str, Any]:
        """``POST /register-user``: bind the first phone; the same phone again is a no-op."""
        s = await self.session_for(caller, session_id, ("anonymous", "phone"), True)
        body = S.decode(raw, S.RegisterUser)
        if body.session_id != session_id:
            raise HubError(400, "Session ID mismatch")
        if body.machine_id != s.machine_id:
            raise HubError(400, "Machine ID mismatch")
        token, fresh = caller.token, new_phone_token()
        done = await self.commit(session_id, lambda cur: L.register(
            cur, token, fresh, self.settings.open_mode, self.clock(), self.policy))
        return register_body(done.outcome.session)

    async def progress(self, caller: Caller, session_id: str, raw: Any) -> dict[str, Any]:
        """``POST /progress``: move ``user_progress`` forward; older values are no-ops."""
        await self.session_for(caller, session_id, ("phone",), True)
        body = S.decode(raw, S.Progress)
        if body.user_progress not in L.PHONE_PROGRESS:
            raise HubError(422, "Invalid user_progress")
        done = await self.commit(session_id, lambda cur: L.progress(
            cur, body.user_progress, self.clock(), self.policy))
        s = done.outcome.session
        return {"success": True, "session_id": s.session_id, "status": s.status,
                "user_progress": s.user_progress}

    async def order_summary(self, caller: Caller, session_id: str, raw: Any) -> dict[str, Any]:
        """``POST /order-summary``: record the order; the session becomes payment_pending."""
        await self.session_for(caller, session_id, ("phone",), True)
        body = S.decode(raw, S.OrderSummary)
        data, image = S.order_data(body.order_data, raw=raw)
        if body.session_id is not None and body.session_id != session_id:
            raise HubError(400, "Session ID mismatch")
        price, price_currency = self.prices.price_for(data)
        if self.settings.open_mode and not S.is_null(body.payment_amount):
            amount, currency = S.amount(body.payment_amount), S.currency(body.currency)
        else:
            amount, currency = price, price_currency
            sent = None if S.is_null(body.payment_amount) else S.amount(body.payment_amount)
            sent_cur = S.currency(body.currency, price_currency)
            if (sent is not None and sent != price) or sent_cur != price_currency:
                raise HubError(409, "Payment amount does not match price")
        order = L.Order(_order_id(), data, amount, currency)
        url = f"/api/vending/session/{session_id}/design-image" if image else None
        await self.commit(session_id, lambda cur: L.order_summary(
            cur, order, url, self.clock(), self.policy), image)
        return {"success": True, "message": "Order summary sent to vending machine",
                "session_id": session_id, "order_id": order.order_id,
                "payment_amount": from_minor(amount), "currency": currency,
                "status": "payment_pending"}

    async def order_info(self, caller: Caller, session_id: str) -> dict[str, Any]:
        """``GET /order-info``: the order without its image; 404 before an order."""
        s = await self.session_for(caller, session_id, ("machine", "phone"))
        if s.order is None:
            raise HubError(404, "No order information available for this session")
        return order_info_body(s)

    async def design_image(self, caller: Caller, session_id: str) -> tuple[str, bytes]:
        """``GET /design-image``: (mime type, bytes) of the order's design image."""
        await self.session_for(caller, session_id, ("machine",))
        found = await self.store.design_image(session_id)
        if found is None:
            raise HubError(404, "No design image available for this session")
        return found

    async def confirm_payment(self, caller: Caller, session_id: str,
                              raw: Any) -> dict[str, Any]:
        """``POST /confirm-payment``: exactly once per (machine, ``transaction_id``)."""
        s = await self.session_for(caller, session_id, ("machine",))
        body = S.decode(raw, S.ConfirmPayment)
        amount = S.amount(body.payment_amount)
        S.check_object_size(body.payment_data, "payment_data", raw=raw)
        if body.session_id != session_id:
            raise HubError(400, "Session ID mismatch")
        if body.payment_method not in PAYMENT_METHODS:
            raise HubError(400, "Invalid payment method")
        currency = s.order.currency if s.order is not None else self.prices.currency
        payment = L.Payment(s.machine_id, body.transaction_id, body.payment_method, amount,
                            currency, self.clock(), body.payment_data)
        return await self._pay(session_id, payment)

    async def app_payment(self, caller: Caller, session_id: str, raw: Any) -> dict[str, Any]:
        """``POST /app-payment`` ("Pay on App", authorised by ``HUB_APP_KEY``)."""
        s = await self.session_for(caller, session_id, ("app",))
        body = S.decode(raw, S.AppPayment)
        amount = S.amount(body.payment_amount)
        data, _ = S.order_data(body.order_data, raw=raw) if body.order_data is not None else (None, None)
        price, price_currency = self.prices.price_for(data)
        currency = S.currency(body.currency, s.order.currency if s.order else price_currency)
        app_order = None if data is None else L.Order(_order_id(), data, price,
                                                      price_currency)
        payment = L.Payment("app", body.transaction_id, "app", amount, currency,
                            self.clock())
        return await self._pay(session_id, payment, app_order, (price, price_currency))

    async def _pay(self, session_id: str, payment: L.Payment, app_order: L.Order | None = None,
                   list_price: tuple[int, str] | None = None) -> dict[str, Any]:
        done = await self.commit(session_id, lambda cur: L.pay(
            cur, payment, self.clock(), app_order, list_price))
        return payment_body(done.outcome.session)

    async def cancel(self, caller: Caller, session_id: str) -> dict[str, Any]:
        """``DELETE /session/{id}``: cancel an open session; a finished one is left as is."""
        await self.session_for(caller, session_id, ("machine",), True)
        done = await self.commit(session_id, lambda cur: L.cancel(cur, self.clock()))
        s = done.outcome.session
        return {"success": True, "message": "Session cancelled successfully",
                "session_id": s.session_id, "status": s.status}

    async def validate(self, caller: Caller, session_id: str) -> dict[str, Any]:
        """``POST /validate``: health of a session for anyone with access to it."""
        s = await self.session_for(caller, session_id, ("machine", "phone", "app"))
        return validate_body(s)

    async def snapshot(self, caller: Caller, session_id: str) -> L.Session:
        """The session for a socket's snapshot (machine or phone), expired if overdue."""
        return await self.session_for(caller, session_id, ("machine", "phone"))

    async def expire(self, session_id: str) -> None:
        """The sweeper's command: expire the session if its deadline has passed."""
        await self.commit(session_id, lambda cur: L.expire(cur, self.clock()))
