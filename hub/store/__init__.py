"""The store seam: where sessions, their event history and machines live.

Two implementations stand behind :class:`Store`: :mod:`hub.store.sqlite` (the embedded
default) and, chosen by ``HUB_REDIS_URL``, a Redis one. Guarantees every implementation
gives (checked by the same tests on each):

- :meth:`Store.apply` runs ``decide`` on the current state and commits its outcome
  atomically: new state, its events with the next ``seq`` (gapless), the payment's
  idempotency key. Two callers racing on one session get one winner; the loser's
  ``decide`` runs again on the winner's state.
- An event is visible to :meth:`Store.events_after` before ``apply`` returns, so a
  subscriber that sees a gap can always fill it from the store.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import sqlite3

from redis.exceptions import RedisError

from ..broker import machine_channel, session_channel
from ..lifecycle import Outcome, Session
from ..machines import Machine

__all__ = ["Store", "Committed", "Decide", "Delivery", "Publish", "UNAVAILABLE",
           "deliver_here"]

Decide = Callable[[Session], Outcome]
#: ``(channel, frame)`` → None: hands a frame to this instance's sockets
#: (:meth:`hub.broker.Broker.deliver_here`)
Publish = Callable[[str, bytes], None]

#: errors that mean "the store (or Redis) cannot answer now": 503, never a 500
UNAVAILABLE: tuple[type[BaseException], ...] = (RedisError, sqlite3.OperationalError,
                                                 ConnectionError, TimeoutError)


@dataclass(frozen=True, slots=True)
class Committed:
    """What :meth:`Store.apply` committed: the outcome and each event's frame bytes.

    ``published`` is True when the store already published the frames in the same
    atomic step (Redis); else the service publishes them after the commit."""

    outcome: Outcome
    frames: tuple[bytes, ...]
    published: bool = False


@dataclass(frozen=True, slots=True)
class Delivery:
    """One webhook to deliver (CONTRACT §5): event ``seq`` of ``session_id`` to the
    machine's ``url``; ``attempts`` made so far; ``created_at`` in epoch ms."""

    machine_id: str
    session_id: str
    seq: int
    url: str
    attempts: int
    created_at: int


def deliver_here(publish: Publish | None, outcome: Outcome, frames: tuple[bytes, ...]
                 ) -> None:
    """Hand committed ``frames`` to ``publish`` (if any) on the session's and the
    machine's channel, in order: what both stores do right after a commit."""
    if publish is None:
        return
    s = outcome.session
    for frame in frames:
        publish(session_channel(s.session_id), frame)
        publish(machine_channel(s.machine_id), frame)


class Store(Protocol):
    """Durable state. All methods are coroutines; cancelling one may leave its write
    committed or not, never half-done."""

    name: str  #: ``sqlite`` or ``redis``, reported by ``test-connection``

    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def ping(self) -> None:
        """Raise if the store cannot serve requests (for ``/ready``)."""

    async def add_machine(self, machine: Machine) -> None:
        """Insert or replace a machine."""

    async def machine(self, machine_id: str) -> Machine | None: ...
    async def machine_by_key(self, key_hash: str) -> Machine | None: ...
    async def machines(self) -> list[Machine]: ...

    async def create(self, outcome: Outcome) -> Committed:
        """Insert a new session and its ``session.created`` event."""

    async def load(self, session_id: str, recent_ok: bool = False) -> Session | None:
        """The session's state, or None. ``recent_ok``: a state this instance committed or
        read lately will do, for a command's checks (its commit compares it with the
        stored state and decides again on a newer one); reads that answer a client
        leave it False."""

    async def session_for_token(self, phone_token: str) -> str | None:
        """The session id bound to a phone token, or None."""

    async def apply(self, session_id: str, decide: Decide,
                    image: tuple[str, bytes] | None = None) -> Committed:
        """Run ``decide`` on the session's current state and commit what it returns.

        ``image`` (mime type, bytes) is stored as the design image when the outcome
        records an order. Raises :class:`~hub.errors.HubError` 404 when the session is
        gone, 409 ``Transaction ID already used`` when the payment's key belongs to
        another session (nothing is committed then).
        """

    async def events_after(self, session_id: str, seq: int) -> list[bytes] | None:
        """Frames of events ``seq+1 …`` in order, or None when some are no longer held."""

    async def due(self, now: int, limit: int) -> list[str]:
        """Ids of open sessions whose deadline is at or before ``now`` (epoch ms)."""

    async def open_sessions(self, machine_id: str) -> list[Session]:
        """The machine's sessions that are not finished, oldest first."""

    async def design_image(self, session_id: str) -> tuple[str, bytes] | None: ...

    # Webhook outbox: a commit whose events are in NOTIFY_EVENTS, for a session with a
    # callback_url, queues one Delivery per event in the same atomic step.
    async def outbox_due(self, now: int, limit: int) -> list[Delivery]:
        """The oldest pending delivery of each machine whose turn is at or before ``now``
        (one per machine: a machine's webhooks go out one at a time, in order)."""

    async def outbox_claim(self, machine_id: str, lease_ms: int) -> bool:
        """Take the machine's delivery lease (one attempt in flight per machine, across
        instances); False when another holder has it."""

    async def outbox_settle(self, d: Delivery, retry_at: int | None) -> None:
        """Finish an attempt: ``retry_at`` None removes the delivery (delivered or given
        up); else it is tried again then, with ``attempts + 1``. Releases the lease."""
