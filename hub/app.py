"""Wiring: build the Starlette app from :class:`~hub.config.Settings`.

One lifespan opens the store, the broker, the channels and the sweeper, and closes them
in reverse order; on shutdown every socket is closed with 1012 (server restarting).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.middleware import Middleware

from . import logs, tasks
from .broker import Broker
from .broker.local import LocalBroker
from .channels import Channels
from .config import Settings
from .http import pages, rest, sockets
from .http.direct import HubApp
from .http.errors import exception_handlers
from .http.middleware import BodyLimit, JsonCORS
from .clock import now_ms
from .presence import LocalPresence, Presence, RedisPresence
from .qr import QrRenderer
from .ratelimit import LocalRateLimiter, RateLimiter, RedisRateLimiter
from .service import Hub
from .store import Store
from .store.sqlite import SqliteStore
from .sweeper import sweep_forever
from .webhooks import WebhookSender

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["create_app", "make_backends", "Backends"]

log = logging.getLogger("hub")
#: connections to Redis per hub process for commands (pub/sub has its own)
REDIS_CONNECTIONS = 256


@dataclass
class Backends:
    """The seams an instance runs on: embedded (SQLite + in-process) or Redis."""

    store: Store
    broker: Broker
    limits: RateLimiter
    presence: Presence
    redis: Redis | None = None  #: the Redis client to close, if any

    async def aclose(self) -> None:
        if isinstance(self.presence, RedisPresence):
            await self.presence.close()
        if self.redis is not None:
            await self.redis.aclose()


def _hiredis_packed() -> type:
    from redis.asyncio import Connection
    from redis.connection import HiredisRespSerializer

    class HiredisPacked(Connection):
        """redis-py's asyncio connection, packing commands with hiredis as its sync
        connection does (the asyncio one packs in Python: 9% of a Redis command)."""

        _packer = HiredisRespSerializer()

        def pack_command(self, *args: Any) -> list[bytes]:
            return self._packer.pack(*args)  # type: ignore[no-any-return]

    return HiredisPacked


def make_backends(settings: Settings) -> Backends:
    """The backends ``HUB_REDIS_URL`` selects: Redis for state, fan-out, rate limits and
    presence when set; else SQLite (``HUB_DB``) and this process."""
    if not settings.redis_url:
        broker = LocalBroker()
        return Backends(SqliteStore(settings.db, broker.deliver_here), broker,
                        LocalRateLimiter(), LocalPresence())
    from redis.asyncio import BlockingConnectionPool, Redis
    from redis.asyncio.retry import Retry
    from redis.backoff import ExponentialWithJitterBackoff, NoBackoff

    from .broker.redis import RedisBroker
    from .store.redis import RedisStore

    _HiredisPacked = _hiredis_packed()

    prefix = settings.redis_prefix
    retry = Retry(ExponentialWithJitterBackoff(base=0.05, cap=1.0), 3)
    # a burst waits up to 2 s for one of REDIS_CONNECTIONS connections (redis-py's own
    # pool refuses at once past its cap, which answered 503 under a burst)
    plain = {"connection_class": _HiredisPacked} \
        if settings.redis_url.startswith("redis://") else {}  # TLS and sockets: as given
    pool = BlockingConnectionPool.from_url(
        settings.redis_url, max_connections=REDIS_CONNECTIONS, timeout=2, retry=retry,
        socket_timeout=5, socket_connect_timeout=2, health_check_interval=15, **plain)
    redis = Redis(connection_pool=pool)
    # the listener sees every loss itself (no silent retry) so it can run recovery
    listener = Redis.from_url(settings.redis_url, retry=Retry(NoBackoff(), 0),
                              socket_connect_timeout=2)
    broker = RedisBroker(listener, prefix)
    return Backends(RedisStore(redis, prefix, publish=broker.deliver_here), broker,
                    RedisRateLimiter(redis, prefix), RedisPresence(redis, prefix, now_ms),
                    redis)


def create_app(settings: Settings | None = None) -> HubApp:
    """The ASGI app. ``settings`` default to :meth:`Settings.from_env`."""
    settings = settings or Settings.from_env()
    logs.install()
    backends = make_backends(settings)
    store, broker = backends.store, backends.broker
    hub = Hub(settings, store, broker, backends.limits)
    channels = Channels(store, broker, backends.presence)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await store.open()
        await broker.open(channels.on_message, channels.recover_all)
        if settings.open_mode:
            log.warning("HUB_AUTH=open: credentials are NOT checked; for local trials only")
        # what start-up made (modules, classes, the app) lives as long as the process:
        # freeze it out of the collector's full passes, and collect young objects less
        # often, so that a pass costs less and comes more rarely (bench/RESULTS.md)
        gc.collect()
        gc.freeze()
        gc.set_threshold(10_000, 20, 20)
        sweeper = asyncio.create_task(sweep_forever(hub, settings.sweep_interval_s))
        sender = WebhookSender(store, now_ms, settings.webhook_base_s)
        delivering = asyncio.create_task(sender.run())
        try:
            yield
        finally:
            for task in (sweeper, delivering):
                await tasks.stop(task)
            await sender.aclose()
            await channels.shutdown()
            await broker.close()
            await store.close()
            await backends.aclose()

    middleware = [Middleware(BodyLimit)]
    if settings.cors_origins:
        middleware.insert(0, Middleware(
            JsonCORS, allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type"]))
    # CORS must see every request: then only the sockets skip Starlette's stack
    app = HubApp(routes=rest.routes + sockets.routes + pages.routes, middleware=middleware,
                 exception_handlers=exception_handlers, lifespan=lifespan,
                 direct_http=not settings.cors_origins)
    app.state.hub = hub
    app.state.channels = channels
    app.state.settings = settings
    app.state.qr = QrRenderer()
    return app
