"""JSON out: orjson with exact money, and the wire frames of CONTRACT §4.

Amounts travel inside the hub as :class:`~decimal.Decimal` with two places and are written
as JSON numbers with exactly two decimals (``19.90``) through an ``orjson.Fragment``.
Each event is serialised once, when it is committed; sockets send those bytes as they are.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson

from .clock import iso
from .lifecycle import Event

__all__ = ["dumps", "loads", "event_frame", "event_dict"]


def _default(obj: Any) -> Any:
    if isinstance(obj, Decimal):
        return orjson.Fragment(format(obj, ".2f").encode())
    raise TypeError(f"cannot serialise {type(obj).__name__}")


def dumps(obj: Any) -> bytes:
    """Serialise ``obj`` to JSON bytes (Decimal → number with two decimals)."""
    return orjson.dumps(obj, default=_default)


loads = orjson.loads


def event_dict(ev: Event) -> dict[str, Any]:
    """The event frame of CONTRACT §4 as a dict (``at`` in ISO 8601 UTC)."""
    return {"type": "event", "session_id": ev.session_id, "seq": ev.seq, "event": ev.event,
            "at": iso(ev.at), "status": ev.status, "user_progress": ev.user_progress,
            "data": ev.data}


def event_frame(ev: Event) -> bytes:
    """The event frame as JSON bytes, ready to send on every socket."""
    return dumps(event_dict(ev))
