"""The broker seam: fan-out of frames to every hub instance holding a socket.

:class:`Broker` carries opaque frame bytes on named channels (``session:{id}``,
``machine:{machine_id}``). Delivery is at-most-once and unordered across publishers:
subscribers order and de-duplicate by ``seq`` and fill gaps from the store
(:mod:`hub.channels`). :mod:`hub.broker.local` is the in-process default; a Redis
pub/sub broker is chosen by ``HUB_REDIS_URL``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

__all__ = ["Broker", "Handler", "session_channel", "machine_channel"]

#: called with (channel, frame bytes) for every message on a subscribed channel
Handler = Callable[[str, bytes], None]


def session_channel(session_id: str) -> str:
    """The channel of one session's events and presence."""
    return f"session:{session_id}"


def machine_channel(machine_id: str) -> str:
    """The channel of every event of one machine's sessions."""
    return f"machine:{machine_id}"


class Broker(Protocol):
    """Publish/subscribe between hub instances."""

    name: str  #: ``local`` or ``redis``, reported by ``test-connection``

    async def open(self, handler: Handler,
                   on_reconnect: Callable[[], None] | None = None) -> None:
        """Start; ``handler`` receives every message of every subscribed channel, and
        ``on_reconnect`` is called after an outage (messages may have been missed)."""

    async def close(self) -> None: ...
    async def ping(self) -> None:
        """Raise if publishing would fail now (for ``/ready``)."""

    async def publish(self, channel: str, frame: bytes) -> None:
        """Send ``frame`` to every instance subscribed to ``channel``."""

    def deliver_here(self, channel: str, frame: bytes) -> None:
        """Hand ``frame`` to this instance's handler now, if it listens on ``channel``
        (a frame this instance published by other means, such as in a store commit;
        the copy that comes back over the broker is dropped by ``seq``)."""

    async def subscribe(self, channel: str) -> None:
        """Start receiving ``channel`` on this instance (called on its first local socket)."""

    async def unsubscribe(self, channel: str) -> None:
        """Stop receiving ``channel`` (called when its last local socket closes)."""
