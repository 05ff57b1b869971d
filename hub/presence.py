"""Who is online in a session (CONTRACT §4 presence).

A party is online while it has at least one socket: a session socket of its role, or
for the machine also its machine-wide socket. :class:`LocalPresence` counts in this
process; :class:`RedisPresence` keeps each socket as a member of a Redis sorted set
scored by its last heartbeat, so every instance sees the same answer and the sockets of
an instance that died drop out after :data:`STALE_MS`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from typing import Any, Protocol

from .tasks import stop

__all__ = ["Presence", "LocalPresence", "RedisPresence", "STALE_MS"]

STALE_MS = 30_000  #: a socket not refreshed for this long is counted offline (Redis)
REFRESH_S = 10.0  #: how often an instance refreshes its sockets' heartbeats


class Presence(Protocol):
    """Socket membership per (session, role) and per machine (machine-wide sockets)."""

    async def join(self, member: str, machine_id: str, session_id: str | None,
                   role: str) -> bool:
        """Add a socket; True when its party (role in that session, or the machine) was
        offline before."""

    async def leave(self, member: str, machine_id: str, session_id: str | None,
                    role: str) -> bool:
        """Remove a socket; True when its party has no socket left."""

    async def of(self, session_id: str, machine_id: str) -> dict[str, bool]:
        """The snapshot's ``presence`` object: ``{"machine": bool, "phone": bool}``."""


class LocalPresence:
    """:class:`Presence` counted in this process (the embedded default)."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = defaultdict(int)

    @staticmethod
    def _key(machine_id: str, session_id: str | None, role: str) -> str:
        return f"m:{machine_id}" if session_id is None else f"s:{session_id}:{role}"

    async def join(self, member: str, machine_id: str, session_id: str | None,
                   role: str) -> bool:
        key = self._key(machine_id, session_id, role)
        self.counts[key] += 1
        return self.counts[key] == 1

    async def leave(self, member: str, machine_id: str, session_id: str | None,
                    role: str) -> bool:
        key = self._key(machine_id, session_id, role)
        self.counts[key] -= 1
        if self.counts[key] > 0:
            return False
        del self.counts[key]
        return True

    async def of(self, session_id: str, machine_id: str) -> dict[str, bool]:
        return {"machine": self.counts.get(f"s:{session_id}:machine", 0) > 0
                or self.counts.get(f"m:{machine_id}", 0) > 0,
                "phone": self.counts.get(f"s:{session_id}:phone", 0) > 0}


class RedisPresence:
    """:class:`Presence` in Redis sorted sets ``{prefix}pr:…`` (member → heartbeat ms)."""

    def __init__(self, redis: Any, prefix: str, clock: Any) -> None:
        self.redis, self.prefix, self.clock = redis, prefix, clock
        self.local: dict[str, set[str]] = defaultdict(set)
        self._task: asyncio.Task[None] | None = None

    def _key(self, machine_id: str, session_id: str | None, role: str) -> str:
        if session_id is None:
            return f"{self.prefix}pr:m:{machine_id}"
        return f"{self.prefix}pr:s:{session_id}:{role}"

    def _live(self, pipe: Any, key: str) -> None:
        now = self.clock()
        pipe.zremrangebyscore(key, "-inf", now - STALE_MS)
        pipe.zcard(key)

    async def join(self, member: str, machine_id: str, session_id: str | None,
                   role: str) -> bool:
        key = self._key(machine_id, session_id, role)
        self.local[key].add(member)
        async with self.redis.pipeline(transaction=True) as pipe:
            self._live(pipe, key)
            pipe.zadd(key, {member: self.clock()})
            pipe.pexpire(key, STALE_MS * 2)
            _, before, _, _ = await pipe.execute()
        self._ensure_refresh()
        return int(before) == 0

    async def leave(self, member: str, machine_id: str, session_id: str | None,
                    role: str) -> bool:
        key = self._key(machine_id, session_id, role)
        self.local[key].discard(member)
        if not self.local[key]:
            del self.local[key]
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zrem(key, member)
            self._live(pipe, key)
            _, _, after = await pipe.execute()
        return int(after) == 0

    async def of(self, session_id: str, machine_id: str) -> dict[str, bool]:
        floor = self.clock() - STALE_MS
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in (self._key(machine_id, session_id, "machine"),
                        self._key(machine_id, None, "machine"),
                        self._key(machine_id, session_id, "phone")):
                pipe.zcount(key, floor, "+inf")
            machine, wide, phone = await pipe.execute()
        return {"machine": machine > 0 or wide > 0, "phone": phone > 0}

    def _ensure_refresh(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._refresh_forever())

    async def _refresh_forever(self) -> None:
        """Re-score this instance's sockets every :data:`REFRESH_S` s (safe to cancel)."""
        while self.local:
            await asyncio.sleep(REFRESH_S)
            with contextlib.suppress(Exception):
                async with self.redis.pipeline(transaction=False) as pipe:
                    now = self.clock()
                    for key, members in list(self.local.items()):
                        pipe.zadd(key, dict.fromkeys(members, now))
                        pipe.pexpire(key, STALE_MS * 2)
                    await pipe.execute()

    async def close(self) -> None:
        await stop(self._task)
