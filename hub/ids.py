"""Machine and session identifiers (CONTRACT §1).

A session id is ``{MACHINE_ID}_{YYYYMMDD}_{HHMMSS}_{RANDOM}`` in UTC. It is parsed from the
right, so machine ids that contain ``_`` work (``VM_LONDON_01_20250123_155030_X9Y8Z7``).
"""

from __future__ import annotations

import functools
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone

__all__ = ["MACHINE_ID_RE", "SessionId", "is_machine_id", "new_session_id", "parse_session_id"]

MACHINE_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,50}")
_SESSION_RE = re.compile(
    r"(?P<machine>[A-Za-z0-9_-]{1,50})_(?P<date>[0-9]{8})_(?P<time>[0-9]{6})_(?P<rand>[A-Za-z0-9]{6,16})"
)
_RANDOM_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


@dataclass(frozen=True, slots=True)
class SessionId:
    """A parsed session id: the machine id, the UTC creation second, the random part."""

    machine_id: str
    created: datetime
    random: str


def is_machine_id(value: object) -> bool:
    """Return True when ``value`` is 1..50 characters of ``A-Z a-z 0-9 _ -``."""
    return isinstance(value, str) and MACHINE_ID_RE.fullmatch(value) is not None


@functools.lru_cache(maxsize=4096)
def parse_session_id(value: str) -> SessionId | None:
    """Parse a session id, or return None when it is malformed (bad date, bad characters).

    The regex is anchored on the right-hand date, time and random parts, so the machine id
    keeps every ``_`` it has. Results are memoised (the same ids come back on every poll
    and op; the regex backtracks over the machine id: 4% of a socket op).
    """
    if len(value) > 50 + 1 + 8 + 1 + 6 + 1 + 16:
        return None
    m = _SESSION_RE.fullmatch(value)
    if m is None:
        return None
    d, t = m["date"], m["time"]
    try:  # the constructor checks the calendar (no 20250230) as strptime would, faster
        created = datetime(int(d[:4]), int(d[4:6]), int(d[6:]), int(t[:2]), int(t[2:4]),
                           int(t[4:]), tzinfo=timezone.utc)
    except ValueError:
        return None
    return SessionId(m["machine"], created, m["rand"])


def new_session_id(machine_id: str, now_ms: int) -> str:
    """Make a new session id for ``machine_id`` at ``now_ms`` (Unix epoch milliseconds, UTC).

    RANDOM is 8 characters of ``A-Z0-9`` from :mod:`secrets` (a CSPRNG).
    """
    stamp = datetime.fromtimestamp(now_ms / 1000, tz=timezone.utc).strftime("%Y%m%d_%H%M%S")
    rand = "".join(secrets.choice(_RANDOM_ALPHABET) for _ in range(8))
    return f"{machine_id}_{stamp}_{rand}"
