"""Stopping background tasks when a library swallows a cancellation (hub.tasks)."""

from __future__ import annotations

import asyncio
import time

from hub.tasks import stop


async def test_stop_repeats_a_swallowed_cancellation() -> None:
    seen = []

    async def loop_that_loses_one_cancel() -> None:  # as redis-py #2551 can
        while True:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                if seen:
                    raise
                seen.append("swallowed")

    task = asyncio.create_task(loop_that_loses_one_cancel())
    await asyncio.sleep(0)
    await stop(task, timeout=2)
    assert task.cancelled() and seen == ["swallowed"]


async def test_stop_gives_up_on_a_task_that_will_not_end() -> None:
    held = True

    async def stubborn() -> None:
        while held:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                pass

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    started = time.monotonic()
    await stop(task, timeout=0.3)  # returns, it does not hang
    assert not task.done() and time.monotonic() - started < 1
    held = False
    await stop(task)  # now it ends
    assert task.done()
    await stop(None)
