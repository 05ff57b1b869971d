"""The Redis broker: pub/sub fan-out between hub instances, with a supervised listener.

An instance subscribes only to the channels it holds sockets for (CONTRACT §4; no
firehose). One listener task drains the pub/sub connection and hands each message to the
handler; it does nothing else. If Redis drops or restarts, the listener reconnects with
full-jitter exponential backoff (0.1 s doubling to 2 s), resubscribes every local channel
in one command, and then calls ``on_reconnect`` so the channels refill every socket from
the store's history: what was published during the outage is not lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..metrics import broker_reconnected
from ..tasks import stop
from . import Handler

__all__ = ["RedisBroker"]

log = logging.getLogger("hub.broker.redis")

_LOST = (RedisConnectionError, RedisTimeoutError, OSError, RedisError)


class RedisBroker:
    """:class:`~hub.broker.Broker` over Redis pub/sub; channels are ``{prefix}{channel}``.

    Args:
        redis: client used to publish (and to make the pub/sub connection).
        prefix: channel prefix (``HUB_REDIS_PREFIX``).
    """

    name = "redis"

    def __init__(self, redis: Redis, prefix: str = "hub:") -> None:
        self.redis, self.prefix = redis, prefix
        self.channels: set[str] = set()
        self.connected = asyncio.Event()
        self._pubsub: PubSub | None = None
        self._handler: Handler | None = None
        self._on_reconnect: Callable[[], None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._confirmed: dict[str, asyncio.Event] = {}

    async def open(self, handler: Handler, on_reconnect: Callable[[], None] | None = None
                   ) -> None:
        self._handler, self._on_reconnect = handler, on_reconnect
        self._task = asyncio.create_task(self._supervise())

    async def close(self) -> None:
        await stop(self._task)
        if self._pubsub is not None:
            with contextlib.suppress(Exception):
                await self._pubsub.aclose()

    async def ping(self) -> None:
        """Raise while the pub/sub connection is down (the listener keeps it up)."""
        if not self.connected.is_set():
            raise RedisConnectionError("pub/sub connection is down")

    async def publish(self, channel: str, frame: bytes) -> None:
        await self.redis.publish(self.prefix + channel, frame)

    def deliver_here(self, channel: str, frame: bytes) -> None:
        if self._handler is not None and channel in self.channels:
            self._handler(channel, frame)

    async def subscribe(self, channel: str) -> None:
        """Subscribe and wait (up to 2 s) for Redis to confirm, so that a snapshot read
        after this call cannot miss an event published before the subscription began."""
        self.channels.add(channel)
        if self._pubsub is None or not self.connected.is_set():
            return  # the supervisor subscribes it on (re)connect
        done = self._confirmed.setdefault(channel, asyncio.Event())
        try:
            await self._pubsub.subscribe(self.prefix + channel)
            await asyncio.wait_for(done.wait(), 2.0)
        except (asyncio.TimeoutError, *_LOST):
            log.warning("subscribe to %s not confirmed; recovery will fill gaps", channel)
        finally:
            self._confirmed.pop(channel, None)

    async def unsubscribe(self, channel: str) -> None:
        self.channels.discard(channel)
        if self._pubsub is not None and self.connected.is_set():
            with contextlib.suppress(*_LOST):
                await self._pubsub.unsubscribe(self.prefix + channel)

    async def _supervise(self) -> None:
        """Connect, listen, and on any loss reconnect with backoff (cancel to stop)."""
        delay, first = 0.1, True
        while True:
            try:
                self._pubsub = self.redis.pubsub()
                # a placeholder channel keeps the connection subscribed while idle
                await self._pubsub.subscribe(self.prefix + "_hub", *(
                    self.prefix + c for c in self.channels))
                self.connected.set()
                delay = 0.1
                if not first:
                    broker_reconnected()
                if not first and self._on_reconnect is not None:
                    log.warning("Redis pub/sub is back: recovering every local socket")
                    self._on_reconnect()
                first = False
                await self._listen(self._pubsub)
            except asyncio.CancelledError:
                raise
            except _LOST as exc:
                if self.connected.is_set():
                    log.warning("Redis pub/sub lost (%r); reconnecting", exc)
            self.connected.clear()
            if self._pubsub is not None:
                with contextlib.suppress(Exception):
                    await self._pubsub.aclose()
            await asyncio.sleep(random.uniform(0, delay))
            delay = min(delay * 2, 2.0)

    async def _listen(self, pubsub: PubSub) -> None:
        n = len(self.prefix)
        while True:
            msg = await pubsub.get_message(timeout=5.0)
            if msg is None:
                continue
            kind = msg["type"]
            if kind == b"message" or kind == "message":
                if self._handler is not None:
                    self._handler(msg["channel"].decode()[n:], msg["data"])
            elif kind in (b"subscribe", "subscribe"):
                waiter = self._confirmed.get(msg["channel"].decode()[n:])
                if waiter is not None:
                    waiter.set()
