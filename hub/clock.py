"""Time as integer Unix milliseconds, written as ISO 8601 UTC with ``Z`` (CONTRACT §1)."""

from __future__ import annotations

import time
from datetime import datetime, timezone

__all__ = ["now_ms", "iso", "parse_iso"]


def now_ms() -> int:
    """Return the wall clock as integer milliseconds since the Unix epoch."""
    return time.time_ns() // 1_000_000


def iso(ms: int) -> str:
    """Format epoch milliseconds as ``2025-01-23T15:00:22.000Z``."""
    dt = datetime.fromtimestamp(ms // 1000, tz=timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + f".{ms % 1000:03d}Z"


def parse_iso(text: str) -> int:
    """Parse any ISO 8601 timestamp to epoch milliseconds (naive means UTC).

    Raises:
        ValueError: not an ISO 8601 timestamp.
    """
    dt = datetime.fromisoformat(text.replace("z", "Z"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return int(dt.timestamp() * 1000)
