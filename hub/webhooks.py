"""Webhook delivery to legacy machines with a ``callback_url`` (CONTRACT §5).

Each ``order.summary`` and terminal event of such a machine's sessions is queued in the
store's outbox in the same atomic step as the event itself, so nothing is lost across
restarts. :class:`WebhookSender` posts them, signed::

    X-Hub-Signature: sha256=<hex HMAC-SHA256 of the raw body with the webhook secret>
    X-Hub-Event-Id: {session_id}:{seq}

A 2xx ends a delivery. Anything else (or no answer in 10 s) is retried after 1, 2, 4 …
s (capped at 60 s, each delay scaled by a random 0.5–1.0: "equal jitter") for up to 10
minutes from the event, then given up and logged. One attempt is in flight per machine
(a lease in the store), so a machine receives its webhooks one at a time, in order.
Delivery is at-least-once: a receiver de-duplicates by ``X-Hub-Event-Id``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import random
from decimal import Decimal
from typing import Any

import httpx
import msgspec

from .codec import dumps
from .metrics import webhook_attempt
from .store import Delivery, Store

__all__ = ["WebhookSender", "sign", "order_summary_body"]

log = logging.getLogger("hub.webhooks")

GIVE_UP_MS = 10 * 60 * 1000
_exact = msgspec.json.Decoder(float_hook=Decimal)  # amounts stay exact: 19.90, not 19.9
LEASE_MS = 30_000


def sign(secret: str, body: bytes) -> str:
    """``sha256=`` + hex HMAC-SHA256 of ``body`` with ``secret`` (CONTRACT §5)."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def order_summary_body(frame: bytes, image: tuple[str, bytes] | None,
                       current_order_id: str | None) -> bytes:
    """The guide's order-summary payload plus ``order_id``, design image included (as the
    ``data:`` URL the phone sent) while that order is still the session's."""
    ev = _exact.decode(frame)
    data: dict[str, Any] = dict(ev["data"])
    order_data = dict(data.get("order_data") or {})
    order_data.pop("design_image_url", None)
    if image is not None and data.get("order_id") == current_order_id:
        order_data["designImage"] = (f"data:{image[0]};base64,"
                                     + base64.b64encode(image[1]).decode())
    return dumps({"session_id": data["session_id"], "order_data": order_data,
                  "payment_amount": data["payment_amount"], "currency": data["currency"],
                  "order_id": data["order_id"]})


class WebhookSender:
    """The delivery loop. Args: store; clock (epoch ms); base_s: the first retry delay
    (1 s; tests shorten it); interval_s: how often the outbox is looked at."""

    def __init__(self, store: Store, clock: Any, base_s: float = 1.0,
                 interval_s: float = 0.2) -> None:
        self.store, self.clock = store, clock
        self.base_s, self.interval_s = base_s, interval_s
        self.http = httpx.AsyncClient(timeout=10.0, follow_redirects=False)
        self._inflight: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        """Deliver until cancelled (cancelling is safe: an attempt in flight is retried
        after its lease expires)."""
        while True:
            try:
                for d in await self.store.outbox_due(self.clock(), 100):
                    if await self.store.outbox_claim(d.machine_id, LEASE_MS):
                        task = asyncio.create_task(self._attempt(d))
                        self._inflight.add(task)
                        task.add_done_callback(self._inflight.discard)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("webhook outbox scan failed")
            await asyncio.sleep(self.interval_s)

    async def aclose(self) -> None:
        for task in list(self._inflight):
            task.cancel()
        await self.http.aclose()

    async def _attempt(self, d: Delivery) -> None:
        ok = False
        try:
            body = await self._body(d)
            machine = await self.store.machine(d.machine_id)
            if body is None or machine is None or not machine.webhook_secret:
                log.warning("dropping webhook %s:%s (no event or no secret)",
                            d.session_id, d.seq)
                webhook_attempt("dropped")
                await self.store.outbox_settle(d, None)
                return
            r = await self.http.post(d.url, content=body, headers={
                "Content-Type": "application/json",
                "X-Hub-Signature": sign(machine.webhook_secret, body),
                "X-Hub-Event-Id": f"{d.session_id}:{d.seq}"})
            ok = 200 <= r.status_code < 300
            if not ok:
                log.warning("webhook %s:%s to %s got %s", d.session_id, d.seq,
                            d.url, r.status_code)
        except (httpx.HTTPError, OSError) as exc:
            log.warning("webhook %s:%s to %s failed: %r", d.session_id, d.seq,
                        d.url, exc)
        except Exception:
            log.exception("webhook %s:%s failed", d.session_id, d.seq)
        now = self.clock()
        if ok:
            webhook_attempt("delivered")
            await self.store.outbox_settle(d, None)
            return
        delay_ms = int(min(60.0, self.base_s * 2 ** d.attempts) * random.uniform(0.5, 1.0)
                       * 1000)
        if now + delay_ms - d.created_at > GIVE_UP_MS:
            log.error("giving up webhook %s:%s after %d attempts", d.session_id, d.seq,
                      d.attempts + 1)
            webhook_attempt("given_up")
            await self.store.outbox_settle(d, None)
        else:
            webhook_attempt("failed")
            await self.store.outbox_settle(d, now + delay_ms)

    async def _body(self, d: Delivery) -> bytes | None:
        frames = await self.store.events_after(d.session_id, d.seq - 1)
        if not frames:
            return None
        frame = frames[0]
        if b'"event":"order.summary"' not in frame:
            return frame
        session = await self.store.load(d.session_id)
        image = await self.store.design_image(d.session_id)
        order_id = session.order.order_id if session and session.order else None
        return order_summary_body(frame, image, order_id)
