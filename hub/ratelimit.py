"""Fixed-window rate limits (CONTRACT §1: 429 ``Rate limit exceeded`` with ``Retry-After``)."""

from __future__ import annotations

import math

from .errors import HubError

__all__ = ["RateLimiter"]


class RateLimiter:
    """Counts hits per key in one-minute windows, in this process.

    ``hit`` raises :class:`~hub.errors.HubError` 429 with ``Retry-After`` (whole seconds to
    the window's end) when a key is over its limit. Old windows are dropped as time moves.
    """

    def __init__(self, window_ms: int = 60_000) -> None:
        self.window_ms = window_ms
        self._window = -1
        self._counts: dict[str, int] = {}

    def hit(self, key: str, limit: int, now: int) -> None:
        window = now // self.window_ms
        if window != self._window:
            self._window, self._counts = window, {}
        n = self._counts.get(key, 0) + 1
        self._counts[key] = n
        if n > limit:
            retry = math.ceil(((window + 1) * self.window_ms - now) / 1000)
            raise HubError(429, "Rate limit exceeded", {"Retry-After": str(max(retry, 1))})

    def over(self, key: str, limit: int, now: int) -> bool:
        """True when ``key`` has already used up ``limit`` in the current window."""
        return now // self.window_ms == self._window and self._counts.get(key, 0) >= limit
