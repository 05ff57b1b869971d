"""A socket's send queue (hub.channels.Conn): sends that complete at once go out on the
pusher's stack; one that suspends (the transport's flow control) goes on in a writer task
and every later frame waits behind it, in order. The real-server paths (a stalled reader
closed 4408, acks before closes) are in test_cluster.py and test_sockets.py."""

from __future__ import annotations

import asyncio

from hub.channels import Conn


class Transport:
    """A send coroutine like uvicorn's: it waits only while ``writable`` is clear."""

    def __init__(self) -> None:
        self.writable = asyncio.Event()
        self.writable.set()
        self.sent: list[str] = []
        self.closes: list[tuple[int, str]] = []
        self.fail = False

    async def send(self, text: str) -> None:
        await self.writable.wait()
        if self.fail:
            raise ConnectionError("peer gone")
        self.sent.append(text)

    async def close(self, code: int, reason: str) -> None:
        self.closes.append((code, reason))


def _conn(t: Transport) -> Conn:
    c = Conn(t.send, t.close, role="machine", machine_id="VM_1")
    c.start()
    return c


async def test_writable_sends_go_out_at_once_without_a_task() -> None:
    t = Transport()
    c = _conn(t)
    c.push("a")
    c.push("b")
    assert t.sent == ["a", "b"]  # before any await: written on the pusher's stack
    assert c._writer is None


async def test_a_suspended_send_finishes_in_a_task_and_keeps_order() -> None:
    t = Transport()
    c = _conn(t)
    t.writable.clear()  # the transport's buffer is full
    c.push("a")
    c.push("b")
    assert t.sent == [] and c._writer is not None
    await asyncio.sleep(0.01)
    assert t.sent == []  # still waiting, nothing lost, nothing reordered
    t.writable.set()
    await asyncio.sleep(0)
    c.push("c")  # the writer is still draining: "c" queues behind it
    await asyncio.wait_for(c._writer, 1)
    assert t.sent == ["a", "b", "c"]
    c.push("d")  # writable again: at once
    assert t.sent[-1] == "d"


async def test_cancelling_a_suspended_send_drops_the_rest() -> None:
    t = Transport()
    c = _conn(t)
    t.writable.clear()
    c.push("a")
    c.push("b")
    writer = c._writer
    assert writer is not None
    c.abort(4408, "Slow consumer")  # cancels the writer, closes
    await asyncio.sleep(0.01)
    assert writer.cancelled()
    assert t.sent == [] and t.closes == [(4408, "Slow consumer")]


async def test_a_failed_send_marks_the_socket_closed() -> None:
    t = Transport()
    c = _conn(t)
    t.fail = True
    c.push("a")  # raises inside the eager send: caught
    assert c.closed and t.sent == []
    t2 = Transport()
    c2 = _conn(t2)
    t2.writable.clear()
    c2.push("a")
    t2.fail = True
    t2.writable.set()
    await asyncio.wait_for(c2._writer, 1)  # raises inside the resumed send: caught
    assert c2.closed


async def test_finish_closes_after_the_queue_and_open_ops() -> None:
    t = Transport()
    c = _conn(t)
    c.inflight = 1
    c.push("event")
    c.finish(1000, "Session over")
    await asyncio.sleep(0.01)
    assert t.closes == []  # an op is still being answered
    c.push("ack")
    c.acked()
    await c.wait_closed()
    assert t.sent == ["event", "ack"] and t.closes == [(1000, "Session over")]
