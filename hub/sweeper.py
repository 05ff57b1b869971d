"""The expiry sweeper: sessions past their deadline become ``expired`` within 1 s
(CONTRACT §2). It is one more caller of :meth:`hub.service.Hub.expire`."""

from __future__ import annotations

import asyncio
import logging

from .service import Hub

__all__ = ["sweep_once", "sweep_forever"]

log = logging.getLogger("hub.sweeper")

BATCH = 500


async def sweep_once(hub: Hub) -> int:
    """Expire every overdue session (in batches of 500); return how many were looked at."""
    total = 0
    while True:
        due = await hub.store.due(hub.clock(), BATCH)
        for sid in due:
            try:
                await hub.expire(sid)
            except Exception:
                log.exception("could not expire %s", sid)
        total += len(due)
        if len(due) < BATCH:
            return total


async def sweep_forever(hub: Hub, interval: float) -> None:
    """Sweep every ``interval`` seconds until cancelled (cancelling is safe: each
    expiry is its own atomic transaction)."""
    while True:
        try:
            await sweep_once(hub)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("sweep failed; retrying in %.1f s", interval)
        await asyncio.sleep(interval)
