"""Minimal python-socketio peer for bench/: relays a phone's event to its session's room.

    python -m bench.peers.pysio_server PORT [REDIS_URL]

The same behaviour as ``peers/node/server.js``: a socket's ``auth`` is ``{sid, role}`` and
it joins room ``sid``; the phone sends socket event ``relay`` (acked) or ``POST
/relay/{sid}``; the payload is emitted as ``ev`` to the room. ``POST /null`` does
nothing. With REDIS_URL rooms span instances through ``socketio.AsyncRedisManager``.
Served like the hub: uvicorn (uvloop, httptools, websockets), ASGI.
"""

from __future__ import annotations

import sys

import orjson
import socketio
import uvicorn

OK = b'{"ok":true}'


def build(redis_url: str | None) -> socketio.ASGIApp:
    manager = socketio.AsyncRedisManager(redis_url) if redis_url else None
    sio = socketio.AsyncServer(async_mode="asgi", client_manager=manager,
                               transports=["websocket"], cors_allowed_origins=[],
                               http_compression=False, compression_threshold=1 << 30)

    @sio.event
    async def connect(sid: str, environ: dict, auth: dict | None) -> None:
        room = (auth or {}).get("sid")
        if isinstance(room, str):
            await sio.enter_room(sid, room)

    @sio.event
    async def relay(sid: str, payload: dict) -> dict:
        if isinstance(payload, dict) and isinstance(payload.get("sid"), str):
            await sio.emit("ev", payload, room=payload["sid"])
        return {"ok": True}

    async def rest(scope: dict, receive, send) -> None:  # the phone's REST path
        if scope["type"] == "lifespan":
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif msg["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = b""
        while True:
            msg = await receive()
            body += msg.get("body", b"")
            if not msg.get("more_body"):
                break
        path = scope["path"]
        status = 200
        if path.startswith("/relay/") and scope["method"] == "POST":
            await sio.emit("ev", orjson.loads(body), room=path[7:])
        elif path != "/null":
            status = 404
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(OK)).encode())]})
        await send({"type": "http.response.body", "body": OK})

    return socketio.ASGIApp(sio, other_asgi_app=rest)


def main() -> None:
    port = int(sys.argv[1])
    redis_url = sys.argv[2] if len(sys.argv) > 2 else None
    uvicorn.run(build(redis_url), host="127.0.0.1", port=port, log_level="warning",
                loop="uvloop", http="httptools", ws="websockets", lifespan="on")


if __name__ == "__main__":
    main()
