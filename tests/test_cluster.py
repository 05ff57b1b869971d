"""Several hub instances on one Redis: fan-out, races, outages (CONTRACT §4, issue 3)."""

from __future__ import annotations

import asyncio
import secrets
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
import websockets

from .api import (Api, ORDER_DATA, auth, close_code, connect, recv_json, recv_until,
                  stalling_socket)
from .redis_server import RedisServer
from .server import HubServer

FAST = {"HUB_SESSION_MINUTE_S": "0.5", "HUB_SWEEP_INTERVAL_S": "0.1"}


def pair(tmp: Path, url: str, **env: str) -> tuple[HubServer, HubServer]:
    shared = {"HUB_REDIS_URL": url, "HUB_REDIS_PREFIX": f"c{uuid.uuid4().hex[:8]}:", **env}
    a = HubServer(tmp / "a.db", dict(shared)).start()
    b = HubServer(tmp / "b.db", dict(shared)).start()
    return a, b


@pytest.fixture
def cluster(tmp_path: Path, redis_url: str) -> Iterator[tuple[HubServer, HubServer]]:
    a, b = pair(tmp_path, redis_url)
    yield a, b
    a.stop()
    b.stop()


async def test_machine_on_a_hears_phone_on_b(cluster) -> None:  # type: ignore[no-untyped-def]
    a, b = cluster
    key = a.add_machine("VM_CL_1")
    async with Api(a) as on_a, Api(b) as on_b:
        sid = await on_a.new_session("VM_CL_1", key)
        machine = await connect(a, f"/api/vending/session/{sid}/ws", key)
        wide = await connect(a, "/api/vending/machine/VM_CL_1/ws", key)
        await recv_json(machine)
        await recv_json(wide)
        token = (await on_b.register(sid, "VM_CL_1")).json()["phone_token"]
        phone = await connect(b, f"/api/vending/session/{sid}/ws", token)
        await recv_json(phone)
        for step in ("brand_selected", "design_complete", "payment_reached"):
            assert (await on_b.progress(sid, token, step)).status_code == 200
        assert (await on_b.order(sid, token)).status_code == 200
        assert (await on_b.confirm(sid, key, "TXN_CL_1")).status_code == 200
        for ws in (machine, wide):
            got = await recv_until(ws, "payment.completed", kinds=("event", "presence"))
            events = [f for f in got if f["type"] == "event"]
            assert [f["seq"] for f in events] == list(range(2, 8))
            assert {"type": "presence", "session_id": sid, "role": "phone",
                    "online": True} in got
        assert await close_code(machine) == 1000
        pgot = await recv_until(phone, "payment.completed")
        assert [f["seq"] for f in pgot] == list(range(3, 8))
        await wide.close()


async def test_50_confirms_over_two_instances(cluster) -> None:  # type: ignore[no-untyped-def]
    a, b = cluster
    key = a.add_machine("VM_CL_2")
    async with Api(a) as on_a, Api(b) as on_b:
        sid, _ = await on_a.to_pending("VM_CL_2", key)
        apis = [on_a, on_b] * 25
        same = await asyncio.gather(*(api.confirm(sid, key, "TXN_ONE") for api in apis))
        assert [r.status_code for r in same] == [200] * 50
        assert len({r.content for r in same}) == 1
        st = (await on_b.status(sid, key)).json()
        assert st["seq"] == 7 and st["status"] == "payment_completed"

        sid2, _ = await on_b.to_pending("VM_CL_2", key)
        many = await asyncio.gather(*(api.confirm(sid2, key, f"TXN_M_{i}")
                                      for i, api in enumerate(apis)))
        assert sorted(r.status_code for r in many) == [200] + [409] * 49
        ws = await connect(b, f"/api/vending/session/{sid2}/ws", key, since=6)
        paid = await recv_json(ws)
        assert paid["event"] == "payment.completed" and paid["seq"] == 7
        assert await close_code(ws) == 1000


async def test_one_expiry_event_with_two_sweepers(tmp_path: Path, redis_url: str) -> None:
    a, b = pair(tmp_path, redis_url, **FAST)
    try:
        key = a.add_machine("VM_CL_3")
        async with Api(a) as on_a:
            sids = [await on_a.new_session("VM_CL_3", key, session_timeout_minutes=1)
                    for _ in range(20)]
            await asyncio.sleep(1.5)
            for sid in sids:
                ws = await connect(b, f"/api/vending/session/{sid}/ws", key, since=0)
                frames = [await recv_json(ws), await recv_json(ws)]
                assert [f["event"] for f in frames] == ["session.created", "session.expired"]
                assert await close_code(ws) == 1000
                assert (await on_a.status(sid, key)).json()["seq"] == 2
    finally:
        a.stop()
        b.stop()


async def test_subscribes_only_while_it_holds_a_socket(cluster, redis_url: str) -> None:  # type: ignore[no-untyped-def]
    a, _ = cluster
    key = a.add_machine("VM_CL_4")
    client = redis.Redis.from_url(redis_url)
    prefix = a.env_overrides["HUB_REDIS_PREFIX"]
    async with Api(a) as api:
        sid = await api.new_session("VM_CL_4", key)
        channel = f"{prefix}session:{sid}"
        assert dict(client.pubsub_numsub(channel))[channel.encode()] == 0
        ws = await connect(a, f"/api/vending/session/{sid}/ws", key)
        await recv_json(ws)
        assert dict(client.pubsub_numsub(channel))[channel.encode()] == 1
        second = await connect(a, f"/api/vending/session/{sid}/ws", key)
        await recv_json(second)
        assert dict(client.pubsub_numsub(channel))[channel.encode()] == 1
        await ws.close()
        await second.close()
        for _ in range(50):
            if dict(client.pubsub_numsub(channel))[channel.encode()] == 0:
                break
            await asyncio.sleep(0.05)
        assert dict(client.pubsub_numsub(channel))[channel.encode()] == 0
        assert not client.pubsub_channels(f"{prefix}machine:*")  # no firehose
    client.close()


async def test_redis_restart_mid_session(tmp_path: Path) -> None:
    """Redis dies and comes back: writes answer 503 meanwhile, /ready says so, and every
    event reaches the machine socket once, within 5 s of Redis coming back."""
    rs = RedisServer(tmp_path / "redis").start()
    a, b = pair(tmp_path, rs.url)
    try:
        key = a.add_machine("VM_CL_5")
        async with Api(a) as on_a, Api(b) as on_b:
            sid = await on_a.new_session("VM_CL_5", key)
            machine = await connect(a, f"/api/vending/session/{sid}/ws", key)
            await recv_json(machine)
            token = (await on_b.register(sid, "VM_CL_5")).json()["phone_token"]
            assert (await recv_json(machine))["seq"] == 2
            rs.stop(signal.SIGKILL)
            r = await on_b.progress(sid, token, "brand_selected")
            assert r.status_code == 503
            assert r.json() == {"detail": "Service temporarily unavailable"}
            ready = await on_a.http.get("/ready")
            assert ready.status_code == 503 and "detail" in ready.json()
            rs.start()
            back = time.monotonic()
            while (await on_b.progress(sid, token, "brand_selected")).status_code != 200:
                await asyncio.sleep(0.1)
                assert time.monotonic() - back < 5
            assert (await on_b.progress(sid, token, "design_complete")).status_code == 200
            got = await recv_until(machine, "progress", timeout=5)
            got += await recv_until(machine, "progress", timeout=5)
            assert time.monotonic() - back < 5
            assert [f["seq"] for f in got] == [3, 4]
            assert (await on_a.http.get("/ready")).status_code == 200
            await on_b.order(sid, token)
            assert (await recv_json(machine))["seq"] == 5
            with pytest.raises(asyncio.TimeoutError):  # nothing twice
                await recv_json(machine, timeout=0.5)
    finally:
        a.stop()
        b.stop()
        rs.stop()


async def test_instance_killed_machine_resumes_on_the_other(cluster) -> None:  # type: ignore[no-untyped-def]
    a, b = cluster
    key = a.add_machine("VM_CL_6")
    async with Api(b) as on_b:
        sid = await on_b.new_session("VM_CL_6", key)
        token = (await on_b.register(sid, "VM_CL_6")).json()["phone_token"]
        machine = await connect(a, f"/api/vending/session/{sid}/ws", key)
        last = (await recv_json(machine))["seq"]
        a.stop(signal.SIGKILL)
        with pytest.raises(websockets.ConnectionClosed):
            await recv_json(machine)
        await on_b.progress(sid, token, "brand_selected")
        await on_b.order(sid, token)
        again = await connect(b, f"/api/vending/session/{sid}/ws", key, since=last)
        got = [await recv_json(again), await recv_json(again)]
        assert [(f["seq"], f["event"]) for f in got] == [(3, "progress"), (4, "order.summary")]
        await on_b.confirm(sid, key, "TXN_CL_6")
        assert (await recv_json(again))["seq"] == 5
        assert await close_code(again) == 1000


async def test_stalled_reader_closed_4408_healthy_socket_unaffected(cluster) -> None:  # type: ignore[no-untyped-def]
    a, _ = cluster
    key = a.add_machine("VM_CL_7")
    async with Api(a) as api:
        sid = await api.new_session("VM_CL_7", key)
        token = (await api.register(sid, "VM_CL_7")).json()["phone_token"]
        stalled = await stalling_socket(a, f"/api/vending/session/{sid}/ws", key)
        await recv_json(stalled)
        healthy = await websockets.connect(
            f"{a.ws}/api/vending/session/{sid}/ws", additional_headers=auth(token),
            max_size=None)
        await recv_json(healthy)
        # incompressible (permessage-deflate is on), 800 KB a frame uncompressed
        filler = {**ORDER_DATA, "notes": secrets.token_urlsafe(600_000)}
        received: list[int] = []
        pongs = 0

        async def read_healthy() -> None:
            nonlocal pongs
            while len(received) < 30 or pongs < 30:
                frame = await recv_json(healthy, timeout=10)
                if frame["type"] == "event":
                    received.append(frame["seq"])
                elif frame["type"] == "pong":
                    pongs += 1

        reader = asyncio.create_task(read_healthy())
        for _ in range(30):
            r = await api.order(sid, token, order_data=filler)
            assert r.status_code == 200, r.text
            await healthy.send('{"op":"ping"}')
        await reader
        assert received == list(range(3, 33)) and pongs == 30
        # the stalled socket reads again: what was sent, then the 4408 close
        assert await close_code(stalled, timeout=10) == 4408
        resumed = await connect(a, f"/api/vending/session/{sid}/ws", key, since=2)
        seqs = [(await recv_json(resumed))["seq"] for _ in range(30)]
        assert seqs == list(range(3, 33))
        await resumed.close()
        await healthy.close()


def test_ready_names_redis_when_it_is_down(tmp_path: Path) -> None:
    rs = RedisServer(tmp_path / "r").start()
    a = HubServer(tmp_path / "a.db", {"HUB_REDIS_URL": rs.url}).start()
    try:
        assert httpx.get(a.url + "/ready").json()["store"] == "redis"
        rs.stop(signal.SIGKILL)
        r = httpx.get(a.url + "/ready", timeout=10)
        assert r.status_code == 503 and r.json()["detail"] in (
            "store unavailable", "broker unavailable")
    finally:
        a.stop()
        rs.stop()


async def test_commands_on_a_stale_copy_decide_on_the_stored_state(cluster) -> None:  # type: ignore[no-untyped-def]
    """Instance B checks a phone's commands on the state it last committed (one Redis
    round trip); when A changed the session since, B's commit finds its copy stale and
    decides again on the stored state: the answer is the one a single hub would give."""
    a, b = cluster
    key = a.add_machine("VM_CL_STALE")
    async with Api(a) as on_a, Api(b) as on_b:
        sid = await on_a.new_session("VM_CL_STALE", key)
        token = (await on_b.register(sid, "VM_CL_STALE")).json()["phone_token"]
        assert (await on_b.progress(sid, token, "brand_selected")).status_code == 200
        # A moves the session on twice behind B's back: B's copy is two commits old
        assert (await on_a.progress(sid, token, "design_complete")).status_code == 200
        r = await on_b.progress(sid, token, "brand_selected")  # older: a no-op on the store
        assert r.status_code == 200 and r.json()["user_progress"] == "design_complete"
        assert (await on_a.cancel(sid, key)).status_code == 200
        r = await on_b.order(sid, token)
        assert (r.status_code, r.json()) == (410, {"detail": "Session has been cancelled"})
        st = (await on_b.status(sid, key)).json()
        assert st["status"] == "cancelled" and st["seq"] == 5
