"""Wiring: build the Starlette app from :class:`~hub.config.Settings`.

One lifespan opens the store, the broker, the channels and the sweeper, and closes them
in reverse order; on shutdown every socket is closed with 1012 (server restarting).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware

from .broker.local import LocalBroker
from .channels import Channels
from .config import Settings
from .http import rest, sockets
from .http.errors import exception_handlers
from .http.middleware import BodyLimit
from .qr import QrRenderer
from .service import Hub
from .store.sqlite import SqliteStore
from .sweeper import sweep_forever

__all__ = ["create_app", "make_store"]

log = logging.getLogger("hub")


def make_store(settings: Settings) -> SqliteStore:
    """The store the settings name (the embedded SQLite store)."""
    return SqliteStore(settings.db)


def create_app(settings: Settings | None = None) -> Starlette:
    """The ASGI app. ``settings`` default to :meth:`Settings.from_env`."""
    settings = settings or Settings.from_env()
    store = make_store(settings)
    broker = LocalBroker()
    hub = Hub(settings, store, broker)
    channels = Channels(store, broker)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await store.open()
        await broker.open(channels.on_message)
        if settings.open_mode:
            log.warning("HUB_AUTH=open: credentials are NOT checked; for local trials only")
        sweeper = asyncio.create_task(sweep_forever(hub, settings.sweep_interval_s))
        try:
            yield
        finally:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
            await channels.shutdown()
            await broker.close()
            await store.close()

    middleware = [Middleware(BodyLimit)]
    if settings.cors_origins:
        middleware.insert(0, Middleware(
            CORSMiddleware, allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type"]))
    app = Starlette(routes=rest.routes + sockets.routes, middleware=middleware,
                    exception_handlers=exception_handlers, lifespan=lifespan)
    app.state.hub = hub
    app.state.channels = channels
    app.state.settings = settings
    app.state.qr = QrRenderer()
    return app
