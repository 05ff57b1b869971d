"""Fixed-window rate limits (CONTRACT §1: 429 ``Rate limit exceeded`` with ``Retry-After``).

:class:`LocalRateLimiter` counts in this process; :class:`RedisRateLimiter` counts in
Redis (``INCR`` + ``PEXPIRE`` per window), so every instance shares the counts.
"""

from __future__ import annotations

import math
from typing import Any, Protocol

from .errors import HubError

__all__ = ["RateLimiter", "LocalRateLimiter", "RedisRateLimiter", "WINDOW_MS"]

WINDOW_MS = 60_000


def _refuse(window: int, now: int) -> HubError:
    retry = math.ceil(((window + 1) * WINDOW_MS - now) / 1000)
    return HubError(429, "Rate limit exceeded", {"Retry-After": str(max(retry, 1))})


class RateLimiter(Protocol):
    """Counts hits per key in one-minute windows."""

    async def hit(self, key: str, limit: int, now: int) -> None:
        """Count one hit. Raises HubError 429 (with ``Retry-After``) once over ``limit``."""

    async def check(self, key: str, limit: int, now: int) -> None:
        """Raise HubError 429 when ``key`` has used up ``limit``, without counting."""


class LocalRateLimiter:
    """:class:`RateLimiter` in this process; old windows are dropped as time moves."""

    def __init__(self) -> None:
        self._window = -1
        self._counts: dict[str, int] = {}

    def _count(self, key: str, now: int, add: int) -> tuple[int, int]:
        window = now // WINDOW_MS
        if window != self._window:
            self._window, self._counts = window, {}
        n = self._counts.get(key, 0) + add
        if add:
            self._counts[key] = n
        return window, n

    async def hit(self, key: str, limit: int, now: int) -> None:
        window, n = self._count(key, now, 1)
        if n > limit:
            raise _refuse(window, now)

    async def check(self, key: str, limit: int, now: int) -> None:
        window, n = self._count(key, now, 0)
        if n >= limit:
            raise _refuse(window, now)


class RedisRateLimiter:
    """:class:`RateLimiter` shared by all instances through Redis keys
    ``{prefix}rl:{key}:{window}`` that expire with their window."""

    def __init__(self, redis: Any, prefix: str) -> None:
        self.redis, self.prefix = redis, prefix

    def _key(self, key: str, window: int) -> str:
        return f"{self.prefix}rl:{key}:{window}"

    async def hit(self, key: str, limit: int, now: int) -> None:
        window = now // WINDOW_MS
        k = self._key(key, window)
        async with self.redis.pipeline(transaction=True) as pipe:
            n, _ = await pipe.incr(k).pexpire(k, WINDOW_MS * 2).execute()
        if n > limit:
            raise _refuse(window, now)

    async def check(self, key: str, limit: int, now: int) -> None:
        window = now // WINDOW_MS
        n = await self.redis.get(self._key(key, window))
        if n is not None and int(n) >= limit:
            raise _refuse(window, now)
