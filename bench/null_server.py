"""The "null" server: every POST answers ``{"ok": true}`` and does nothing.

    python -m bench.null_server PORT

Raw ASGI on the hub's server stack (uvicorn, uvloop, httptools), so its row shows what the
load generator and the HTTP stack cost before any application work.
"""

from __future__ import annotations

import sys

import uvicorn

OK = b'{"ok":true}'
HEADERS = [(b"content-type", b"application/json"), (b"content-length", b"11")]


async def app(scope: dict, receive, send) -> None:
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": OK})


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning",
                loop="uvloop", http="httptools", lifespan="off")
