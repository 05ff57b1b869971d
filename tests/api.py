"""Small async helpers over httpx and websockets for tests against a real hub."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import httpx
import orjson
import websockets

from .server import HubServer

ORDER_DATA = {
    "brand": "iPhone", "model": "iPhone 15 Pro", "color": "Natural Titanium",
    "template": {"id": "retro-remix", "name": "Retro Remix"},
    # a 1x1 PNG
    "designImage": "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlE"
                   "QVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==",
    "inputText": "My Custom Text", "selectedFont": "Arial", "selectedTextColor": "#ffffff",
}


def auth(token: str | None) -> dict[str, str]:
    return {} if token is None else {"Authorization": f"Bearer {token}"}


class Api:
    """REST calls against one hub; each returns the httpx response."""

    def __init__(self, server: HubServer) -> None:
        self.server = server
        self.http = httpx.AsyncClient(base_url=server.url, timeout=10)

    async def aclose(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> Api:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def path(self, sid: str, tail: str = "") -> str:
        return f"/api/vending/session/{sid}{tail}"

    async def create(self, machine_id: str, key: str | None = None, **body: Any
                     ) -> httpx.Response:
        return await self.http.post("/api/vending/create-session",
                                    json={"machine_id": machine_id, **body}, headers=auth(key))

    async def status(self, sid: str, token: str | None) -> httpx.Response:
        return await self.http.get(self.path(sid, "/status"), headers=auth(token))

    async def register(self, sid: str, machine_id: str, token: str | None = None,
                       **extra: Any) -> httpx.Response:
        return await self.http.post(self.path(sid, "/register-user"), headers=auth(token),
                                    json={"machine_id": machine_id, "session_id": sid, **extra})

    async def progress(self, sid: str, token: str | None, value: str) -> httpx.Response:
        return await self.http.post(self.path(sid, "/progress"), headers=auth(token),
                                    json={"user_progress": value})

    async def order(self, sid: str, token: str | None, amount: Any = 19.99,
                    order_data: dict[str, Any] | None = None) -> httpx.Response:
        body = {"session_id": sid, "order_data": order_data or ORDER_DATA,
                "payment_amount": amount, "currency": "GBP"}
        return await self.http.post(self.path(sid, "/order-summary"), headers=auth(token),
                                    json=body)

    async def confirm(self, sid: str, key: str | None, txn: str, amount: Any = 19.99,
                      method: str = "card") -> httpx.Response:
        body = {"session_id": sid, "payment_method": method, "payment_amount": amount,
                "transaction_id": txn,
                "payment_data": {"card_last_four": "1234", "approval_code": "ABCD123"}}
        return await self.http.post(self.path(sid, "/confirm-payment"), headers=auth(key),
                                    json=body)

    async def cancel(self, sid: str, key: str | None) -> httpx.Response:
        return await self.http.delete(self.path(sid), headers=auth(key))

    async def new_session(self, machine_id: str, key: str | None = None,
                          **body: Any) -> str:
        r = await self.create(machine_id, key, **body)
        assert r.status_code == 200, r.text
        return r.json()["session_id"]

    async def to_pending(self, machine_id: str, key: str | None) -> tuple[str, str]:
        """A session of ``machine_id`` walked to ``payment_pending``: (session id, phone token)."""
        sid = await self.new_session(machine_id, key)
        r = await self.register(sid, machine_id)
        assert r.status_code == 200, r.text
        token = r.json()["phone_token"]
        for step in ("brand_selected", "design_complete", "payment_reached"):
            r = await self.progress(sid, token, step)
            assert r.status_code == 200, r.text
        r = await self.order(sid, token)
        assert r.status_code == 200, r.text
        return sid, token


async def connect(server: HubServer, path: str, token: str | None = None,
                  **params: Any) -> websockets.ClientConnection:
    """Open a socket on ``path`` with the credential in the Authorization header."""
    query = "&".join(f"{k}={v}" for k, v in params.items())
    url = server.ws + path + (f"?{query}" if query else "")
    return await websockets.connect(url, additional_headers=auth(token), open_timeout=5)


async def recv_json(ws: websockets.ClientConnection, timeout: float = 5.0) -> dict[str, Any]:
    return orjson.loads(await asyncio.wait_for(ws.recv(), timeout))


async def recv_until(ws: websockets.ClientConnection, event: str, timeout: float = 5.0,
                     kinds: tuple[str, ...] = ("event",)) -> list[dict[str, Any]]:
    """Frames of the given types up to and including the event named ``event``."""
    got: list[dict[str, Any]] = []
    while True:
        frame = await recv_json(ws, timeout)
        if frame["type"] in kinds:
            got.append(frame)
        if frame.get("event") == event:
            return got


async def stalling_socket(server: HubServer, path: str, token: str
                          ) -> websockets.ClientConnection:
    """A socket that soon stops reading: a small receive buffer (it also stops the
    kernel's autotuning, up to 32 MB here) and ``max_queue=1``, so once the test stops
    calling ``recv`` the hub's side must hold what it sends."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    sock.connect(("127.0.0.1", server.port))
    return await websockets.connect(f"{server.ws}{path}", additional_headers=auth(token),
                                    max_queue=1, max_size=None, sock=sock)


async def close_code(ws: websockets.ClientConnection, timeout: float = 5.0) -> int | None:
    """Read until the server closes; return its close code."""
    try:
        while True:
            await asyncio.wait_for(ws.recv(), timeout)
    except websockets.ConnectionClosed as exc:
        return exc.rcvd.code if exc.rcvd else None
