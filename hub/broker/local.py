"""The in-process broker: the embedded default, for a single hub instance."""

from __future__ import annotations

from . import Handler

__all__ = ["LocalBroker"]


class LocalBroker:
    """:class:`~hub.broker.Broker` inside one process: ``publish`` calls the handler at
    once for subscribed channels (synchronously, in publish order)."""

    name = "local"

    def __init__(self) -> None:
        self._handler: Handler | None = None
        self._channels: set[str] = set()

    async def open(self, handler: Handler, on_reconnect: object = None) -> None:
        self._handler = handler

    async def close(self) -> None:
        self._handler = None
        self._channels.clear()

    async def ping(self) -> None:
        return None

    async def publish(self, channel: str, frame: bytes) -> None:
        self.deliver_here(channel, frame)

    def deliver_here(self, channel: str, frame: bytes) -> None:
        if self._handler is not None and channel in self._channels:
            self._handler(channel, frame)

    async def subscribe(self, channel: str) -> None:
        self._channels.add(channel)

    async def unsubscribe(self, channel: str) -> None:
        self._channels.discard(channel)
