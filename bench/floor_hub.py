"""The "floor" hub: the hub's wire protocol on the hub's server stack, with no hub in it.

    python -m bench.floor_hub PORT

Raw ASGI on uvicorn (the hub's settings: uvloop, httptools, websockets' sans-I/O protocol,
no permessage-deflate), speaking just enough of CONTRACT §3–4 for the load generator: it
creates sessions in a dict, accepts machine and phone sockets, and relays each
``order-summary`` (REST call or socket op) to the machine's and the phone's socket as an
``order.summary`` event, then answers. No validation, no state machine, no store, no
authentication. Its throughput row is the most this stack can deliver per core with the
hub's frames, so ``hub / floor`` is the share of the stack's capacity the hub keeps, and
``floor / peer`` shows what no hub code can change.
"""

from __future__ import annotations

import itertools
import sys
from typing import Any

import orjson
import uvicorn

JSON = [(b"content-type", b"application/json")]
machines: dict[str, Any] = {}  #: machine id → its socket's ASGI send
phones: dict[str, Any] = {}  #: session id → its phone socket's ASGI send
owner: dict[str, str] = {}  #: session id → machine id
counter = itertools.count(1)


async def _body(receive: Any) -> bytes:
    chunks = []
    while True:
        m = await receive()
        chunks.append(m.get("body", b""))
        if not m.get("more_body"):
            return b"".join(chunks)


async def _answer(send: Any, obj: Any) -> None:
    body = orjson.dumps(obj)
    await send({"type": "http.response.start", "status": 200,
                "headers": JSON + [(b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def _relay(sid: str, order: dict) -> dict:
    """Push the order to the session's machine and phone sockets; the command's answer."""
    n = next(counter)
    frame = orjson.dumps({"type": "event", "event": "order.summary", "session_id": sid,
                          "seq": n, "data": {"order_data": order.get("order_data")}}
                         ).decode()
    for send in (machines.get(owner.get(sid, "")), phones.get(sid)):
        if send is not None:
            await send({"type": "websocket.send", "text": frame})
    return {"success": True, "session_id": sid, "status": "payment_pending"}


async def http(scope: dict, receive: Any, send: Any) -> None:
    path = scope["path"]
    body = await _body(receive)
    if path == "/api/vending/create-session":
        mid = orjson.loads(body)["machine_id"]
        sid = f"{mid}_20261130_120000_{next(counter):08X}"
        owner[sid] = mid
        await _answer(send, {"success": True, "session_id": sid,
                             "expires_at": "2026-11-30T14:00:00Z"})
    elif path.endswith("/order-summary"):
        await _answer(send, await _relay(path.split("/")[4], orjson.loads(body)))
    else:  # register-user, delete and the rest: nothing to do
        await _answer(send, {"success": True})


async def websocket(scope: dict, receive: Any, send: Any) -> None:
    parts = scope["path"].split("/")  # /api/vending/{machine|session}/{id}/ws
    kind, key = parts[3], parts[4]
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    table = machines if kind == "machine" else phones
    table[key] = send
    await send({"type": "websocket.send", "text": '{"type":"snapshot"}'})
    try:
        while True:
            m = await receive()
            if m["type"] == "websocket.disconnect":
                return
            op = orjson.loads(m.get("text") or m.get("bytes") or b"{}")
            if op.get("op") == "order_summary":
                body = await _relay(key, op)
                await send({"type": "websocket.send", "text": orjson.dumps(
                    {"type": "ack", "id": op["id"], "code": 200, "body": body}).decode()})
    finally:
        if table.get(key) is send:
            del table[key]


async def app(scope: dict, receive: Any, send: Any) -> None:
    if scope["type"] == "http":
        await http(scope, receive, send)
    elif scope["type"] == "websocket":
        await websocket(scope, receive, send)


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning",
                loop="uvloop", http="httptools", lifespan="off", ws_max_size=64 * 1024,
                ws_per_message_deflate=False)
