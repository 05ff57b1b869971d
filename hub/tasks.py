"""Stopping background tasks (sweeper, webhook sender, pub/sub listener, heartbeats).

A cancellation can be lost inside a library's timeout block when both fire together
(redis-py issue #2551): the task then goes on as if nothing happened, and a shutdown that
awaits it hangs. :func:`stop` repeats the cancellation until the task ends, within a
bounded time.
"""

from __future__ import annotations

import asyncio
import logging

__all__ = ["stop"]

log = logging.getLogger("hub")


async def stop(task: asyncio.Task[object] | None, timeout: float = 3.0) -> None:
    """Cancel ``task`` and wait for it to end, at most ``timeout`` seconds, cancelling
    it again every 0.1 s while it runs on. Never raises; a task that will not end is
    logged and left behind."""
    if task is None:
        return
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not task.done() and loop.time() < deadline:
        task.cancel()
        await asyncio.wait({task}, timeout=0.1)
    if not task.done():
        log.warning("background task %s did not stop in %.0f s", task.get_name(), timeout)
    elif not task.cancelled() and task.exception() is not None:
        log.warning("background task %s ended with %r", task.get_name(), task.exception())
