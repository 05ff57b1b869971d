"""Session and machine sockets: close codes, resume with ``since``, presence (CONTRACT §4)."""

from __future__ import annotations

import asyncio
import re
import secrets
import time

import orjson
import websockets
import pytest

from .api import ORDER_DATA, Api, close_code, connect, recv_json, stalling_socket
from .server import HubServer


@pytest.fixture(scope="module")
def machine(keys_hub: HubServer) -> tuple[str, str]:
    return "VM_SOCK", keys_hub.add_machine("VM_SOCK")


async def test_refusals_are_close_codes_after_accept(keys_hub: HubServer, machine) -> None:  # type: ignore[no-untyped-def]
    mid, key = machine
    other = keys_hub.add_machine("VM_SOCK_OTHER")
    async with Api(keys_hub) as api:
        sid = await api.new_session(mid, key)
        base = f"/api/vending/session/{sid}/ws"
        cases = [
            (base, None, {}, 4401),
            (base, "mk_wrong", {}, 4401),
            (base, other, {}, 4403),
            ("/api/vending/session/VM_SOCK_20250101_000000_ZZZZZZZZ/ws", key, {}, 4404),
            ("/api/vending/session/VM_SOCK_20251301_000000_ZZZZZZZZ/ws", key, {}, 4400),
            (base, key, {"since": "abc"}, 4400),
            (base, key, {"since": "-1"}, 4400),
            (base, key, {"since": "99"}, 4400),
            ("/api/vending/machine/VM_SOCK/ws", other, {}, 4403),
            ("/api/vending/machine/VM_NOBODY/ws", None, {}, 4401),
        ]
        for path, token, params, code in cases:
            ws = await connect(keys_hub, path, token, **params)  # accepted first
            assert await close_code(ws) == code, (path, token, params)
        await api.cancel(sid, key)
        ws = await connect(keys_hub, base, key)
        assert await close_code(ws) == 4410


async def test_token_in_query_for_browsers(keys_hub: HubServer, machine) -> None:  # type: ignore[no-untyped-def]
    mid, key = machine
    async with Api(keys_hub) as api:
        sid = await api.new_session(mid, key)
        ws = await connect(keys_hub, f"/api/vending/session/{sid}/ws?token={key}")
        assert (await recv_json(ws))["type"] == "snapshot"
        await ws.close()


async def test_resume_since_replays_missed_events(keys_hub: HubServer, machine) -> None:  # type: ignore[no-untyped-def]
    mid, key = machine
    async with Api(keys_hub) as api:
        sid = await api.new_session(mid, key)
        token = (await api.register(sid, mid)).json()["phone_token"]
        await api.progress(sid, token, "brand_selected")
        ws = await connect(keys_hub, f"/api/vending/session/{sid}/ws", key, since=1)
        first = await recv_json(ws)
        assert (first["type"], first["seq"], first["event"]) == ("event", 2, "phone.registered")
        assert (await recv_json(ws))["seq"] == 3
        await api.progress(sid, token, "design_complete")
        assert (await recv_json(ws))["seq"] == 4
        await ws.close()
        ws = await connect(keys_hub, f"/api/vending/session/{sid}/ws", key, since=4)
        await api.progress(sid, token, "payment_reached")  # nothing before the next event
        assert (await recv_json(ws))["seq"] == 5
        await ws.close()
        await api.cancel(sid, key)
        ws = await connect(keys_hub, f"/api/vending/session/{sid}/ws", key, since=4)
        got = [await recv_json(ws), await recv_json(ws)]
        assert [f["event"] for f in got] == ["progress", "session.cancelled"]
        assert await close_code(ws) == 1000


async def test_presence_frames(keys_hub: HubServer, machine) -> None:  # type: ignore[no-untyped-def]
    mid, key = machine
    async with Api(keys_hub) as api:
        sid = await api.new_session(mid, key)
        token = (await api.register(sid, mid)).json()["phone_token"]
        phone = await connect(keys_hub, f"/api/vending/session/{sid}/ws", token)
        assert (await recv_json(phone))["presence"] == {"machine": False, "phone": False}
        wide = await connect(keys_hub, f"/api/vending/machine/{mid}/ws", key)
        snap = await recv_json(wide)
        assert sid in [s["session_id"] for s in snap["sessions"]]
        assert await recv_json(phone) == {"type": "presence", "session_id": sid,
                                          "role": "machine", "online": True}
        await wide.close()
        assert await recv_json(phone) == {"type": "presence", "session_id": sid,
                                          "role": "machine", "online": False}
        machine_ws = await connect(keys_hub, f"/api/vending/session/{sid}/ws", key)
        assert (await recv_json(machine_ws))["presence"] == {"machine": False, "phone": True}
        assert (await recv_json(phone))["online"] is True
        await phone.close()
        assert await recv_json(machine_ws) == {"type": "presence", "session_id": sid,
                                               "role": "phone", "online": False}
        await machine_ws.close()


async def test_bad_frames_close_4400_and_big_frames_1009(keys_hub: HubServer, machine) -> None:  # type: ignore[no-untyped-def]
    mid, key = machine
    async with Api(keys_hub) as api:
        sid = await api.new_session(mid, key)
        deep = "[" * 20_000 + "]" * 20_000  # 40 KB: under the frame limit
        for frame in ["not json", "[1,2]", '{"op":"dance","id":1}', '{"op":"cancel"}',
                      '{"op":[],"id":1}', '{"op":{},"id":1}', '{"op":"cancel","id":[1]}',
                      '{"op":"cancel","id":1,"x":%s}' % deep, '{"op":"cancel","id":%s}' % deep,
                      '{"op":"cancel","id":1180591620717411303424}']:
            ws = await connect(keys_hub, f"/api/vending/session/{sid}/ws", key)
            await recv_json(ws)
            await ws.send(frame)
            assert await close_code(ws) == 4400, frame
        ws = await connect(keys_hub, f"/api/vending/session/{sid}/ws", key)
        await recv_json(ws)
        await ws.send(orjson.dumps({"op": "ping", "pad": "x" * 70_000}).decode())
        assert await close_code(ws) == 1009
        st = (await api.status(sid, key)).json()
        assert st["status"] == "active" and st["seq"] == 1


async def test_machine_socket_hears_every_session(keys_hub: HubServer) -> None:
    key = keys_hub.add_machine("VM_WIDE")
    async with Api(keys_hub) as api:
        wide = await connect(keys_hub, "/api/vending/machine/VM_WIDE/ws", key)
        assert await recv_json(wide) == {"type": "snapshot", "sessions": []}
        a = await api.new_session("VM_WIDE", key)
        b = await api.new_session("VM_WIDE", key)
        await api.cancel(a, key)
        frames = [await recv_json(wide) for _ in range(3)]
        assert [(f["session_id"], f["event"]) for f in frames] == [
            (a, "session.created"), (b, "session.created"), (a, "session.cancelled")]
        await wide.send(orjson.dumps({"op": "cancel", "id": 9, "session_id": b}).decode())
        got = [await recv_json(wide), await recv_json(wide)]  # the event, then the ack
        assert {"ack", "event"} == {f["type"] for f in got}
        assert [f for f in got if f["type"] == "ack"][0]["code"] == 200
        await wide.close()


async def test_resume_when_history_is_gone_gives_snapshot(keys_hub: HubServer, machine) -> None:  # type: ignore[no-untyped-def]
    """``since`` older than the history the hub still holds: a snapshot, recovered false."""
    mid, key = machine
    async with Api(keys_hub) as api:
        sid = await api.new_session(mid, key)
        token = (await api.register(sid, mid)).json()["phone_token"]
        await api.progress(sid, token, "brand_selected")
        _forget_history(keys_hub, sid, keep_from=3)  # as pruning would, in either backend
        ws = await connect(keys_hub, f"/api/vending/session/{sid}/ws", key, since=1)
        snap = await recv_json(ws)
        assert snap["type"] == "snapshot" and snap["recovered"] is False
        assert snap["seq"] == 3 and snap["session"]["user_progress"] == "brand_selected"
        await api.progress(sid, token, "design_complete")
        assert (await recv_json(ws))["seq"] == 4
        await ws.close()
        ws = await connect(keys_hub, f"/api/vending/session/{sid}/ws", key, since=2)
        assert [(await recv_json(ws))["seq"] for _ in range(2)] == [3, 4]  # still held
        await ws.close()


def _forget_history(server: HubServer, sid: str, keep_from: int) -> None:
    if server.backend == "redis":
        import redis  # noqa: PLC0415

        client = redis.Redis.from_url(server.env_overrides["HUB_REDIS_URL"])
        prefix = server.env_overrides["HUB_REDIS_PREFIX"]
        client.xtrim(f"{prefix}ev:{sid}", minid=f"0-{keep_from}", approximate=False)
        client.close()
    else:
        import sqlite3  # noqa: PLC0415

        with sqlite3.connect(server.db) as db:
            db.execute("DELETE FROM events WHERE session_id = ? AND seq < ?", (sid, keep_from))


async def test_ack_comes_before_a_malformed_frame_closes(keys_hub: HubServer, machine) -> None:  # type: ignore[no-untyped-def]
    mid, key = machine
    async with Api(keys_hub) as api:
        sid = await api.new_session(mid, key)
        ws = await connect(keys_hub, f"/api/vending/session/{sid}/ws", key)
        await recv_json(ws)
        await ws.send('{"op":"cancel","id":1}')
        await ws.send("garbage")
        frames = []
        try:
            while True:
                frames.append(await recv_json(ws))
        except websockets.ConnectionClosed as exc:
            code = exc.rcvd.code if exc.rcvd else None
        kinds = {(f["type"], f.get("event")) for f in frames}
        assert ("ack", None) in kinds and ("event", "session.cancelled") in kinds
        assert code in (4400, 1000)  # the terminal event may close it first, normally
        ws = await connect(keys_hub, f"/api/vending/session/{sid}/ws", key)
        assert await close_code(ws) == 4410


async def test_op_naming_another_session_is_refused(keys_hub: HubServer, machine) -> None:  # type: ignore[no-untyped-def]
    mid, key = machine
    async with Api(keys_hub) as api:
        sid = await api.new_session(mid, key)
        other = await api.new_session(mid, key)
        ws = await connect(keys_hub, f"/api/vending/session/{sid}/ws", key)
        await recv_json(ws)
        await ws.send(orjson.dumps({"op": "cancel", "id": 5, "session_id": other}).decode())
        assert await recv_json(ws) == {"type": "ack", "id": 5, "code": 400,
                                       "body": {"detail": "Session ID mismatch"}}
        assert (await api.status(sid, key)).json()["status"] == "active"
        await ws.close()


@pytest.mark.parametrize("setting,offered", [(None, False), ("1", True)])
async def test_permessage_deflate_only_when_configured(tmp_path, setting, offered) -> None:  # type: ignore[no-untyped-def]
    """The client offers permessage-deflate (RFC 7692); the hub takes it only with
    HUB_WS_DEFLATE=1, and frames arrive whole either way."""
    env = {} if setting is None else {"HUB_WS_DEFLATE": setting}
    server = HubServer(tmp_path / "hub.db", env, open_mode=True).start()
    try:
        async with Api(server) as api:
            sid = await api.new_session("VM_DEFLATE", None)
            ws = await connect(server, f"/api/vending/session/{sid}/ws")
            assert ws.request is not None and ws.response is not None
            assert "permessage-deflate" in ws.request.headers["Sec-WebSocket-Extensions"]
            agreed = ws.response.headers.get("Sec-WebSocket-Extensions") or ""
            assert ("permessage-deflate" in agreed) is offered
            assert (await recv_json(ws))["session"]["session_id"] == sid
            await ws.close()
    finally:
        server.stop()


async def test_invalid_utf8_text_frame_closes_1007_without_a_traceback(keys_hub: HubServer,
                                                                      machine) -> None:  # type: ignore[no-untyped-def]
    """Invalid UTF-8 in a text frame is refused by the WebSocket layer with 1007
    (RFC 6455 §8.1), logged as one warning line; binary frames that are not UTF-8 JSON
    close 4400 (CONTRACT §4)."""
    mid, key = machine
    async with Api(keys_hub) as api:
        sid = await api.new_session(mid, key)
        for send, code in (({"text": True}, 1007), ({}, 4400)):
            ws = await connect(keys_hub, f"/api/vending/session/{sid}/ws", key)
            await recv_json(ws)
            await ws.send(b'{"op":"\xff"}', **send)
            assert await close_code(ws) == code
    log = keys_hub.log.read_text()  # type: ignore[union-attr]
    assert "Invalid UTF-8 in a text frame" in log and "Traceback" not in log


async def test_a_client_that_stops_reading_is_dropped(fresh_hub) -> None:  # type: ignore[no-untyped-def]
    """A client that stops reading: the hub stops queueing for it (4408), and when not
    even the close can go out within HUB_SEND_TIMEOUT_S it drops the TCP connection,
    so the socket is gone from the hub (metrics) although the client still holds it."""
    server: HubServer = fresh_hub(HUB_SEND_TIMEOUT_S="1")
    key = server.add_machine("VM_STALL")
    async with Api(server) as api:
        sid = await api.new_session("VM_STALL", key)
        token = (await api.register(sid, "VM_STALL")).json()["phone_token"]
        stalled = await stalling_socket(server, f"/api/vending/session/{sid}/ws", key)
        await recv_json(stalled)
        filler = {**ORDER_DATA, "notes": secrets.token_urlsafe(600_000)}  # 800 KB a frame
        refused = re.compile(r'^hub_socket_closes_total\{code="4408"\} 1\.0$', re.M)
        for _ in range(60):  # until the kernel's buffers are full and the queue is over
            assert (await api.order(sid, token, order_data=filler)).status_code == 200
            if refused.search((await api.http.get("/metrics")).text):
                break
        else:
            raise AssertionError("never refused as a slow consumer")
        held = re.compile(r'^hub_sockets\{role="machine"\} 1\.0$', re.M)
        deadline = time.monotonic() + 20
        while held.search((await api.http.get("/metrics")).text):
            assert time.monotonic() < deadline, "the stalled socket is still held"
            await asyncio.sleep(0.2)
        assert "read nothing for 1.0s: dropped" in server.log.read_text()
        assert await close_code(stalled, timeout=10) is None  # reset: no close frame came
