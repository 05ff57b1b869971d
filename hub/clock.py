"""Time as integer Unix milliseconds, written as ISO 8601 UTC with ``Z`` (CONTRACT §1)."""

from __future__ import annotations

import functools
import time
from datetime import datetime, timezone

__all__ = ["now_ms", "iso", "parse_iso"]


def now_ms() -> int:
    """Return the wall clock as integer milliseconds since the Unix epoch."""
    return time.time_ns() // 1_000_000


@functools.lru_cache(maxsize=4096)
def _second(s: int) -> str:
    return datetime.fromtimestamp(s, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")


def iso(ms: int) -> str:
    """Format epoch milliseconds as ``2025-01-23T15:00:22.000Z`` (the second is cached)."""
    return f"{_second(ms // 1000)}.{ms % 1000:03d}Z"


def parse_iso(text: str) -> int:
    """Parse any ISO 8601 timestamp to epoch milliseconds (naive means UTC).

    Raises:
        ValueError: not an ISO 8601 timestamp.
    """
    dt = datetime.fromisoformat(text.replace("z", "Z"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return int(dt.timestamp() * 1000)
