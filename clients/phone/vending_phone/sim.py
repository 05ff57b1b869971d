"""The phone simulator: REST calls of the phone, its socket, and a generated design PNG."""

from __future__ import annotations

import asyncio
import base64
import json
import struct
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import websockets

__all__ = ["PhoneSimulator", "ORDER_DATA", "data_url", "design_png", "parse_qr_url"]

#: the guide's order (§3), without the image (added per order)
ORDER_DATA: dict[str, Any] = {
    "brand": "iPhone", "model": "iPhone 15 Pro", "color": "Natural Titanium",
    "template": {"id": "retro-remix", "name": "Retro Remix"},
    "inputText": "My Custom Text", "selectedFont": "Arial", "selectedTextColor": "#ffffff",
}


def design_png(width: int = 90, height: int = 180, seed: int = 7) -> bytes:
    """A small PNG of a phone-case design (RGB, gradient, camera ring, a band of text-ish
    blocks); ``seed`` changes the colours. Pure Python (zlib), a few KiB."""
    r0, g0, b0 = (seed * 53) % 256, (seed * 97) % 256, (seed * 193) % 256
    rows = []
    cx, cy, rad = width // 4, height // 8, max(4, width // 8)
    for y in range(height):
        row = bytearray([0])  # filter: none
        for x in range(width):
            t = (x + y) / (width + height)
            r, g, b = int(r0 + (255 - r0) * t), int(g0 * (1 - t)), int(b0 + (128 - b0) * t)
            d2 = (x - cx) ** 2 + (y - cy) ** 2
            if rad * rad * 0.5 < d2 <= rad * rad:
                r, g, b = 30, 30, 30
            if height * 0.6 < y < height * 0.68 and width * 0.15 < x < width * 0.85 and (
                    x // 6) % 2 == 0:
                r, g, b = 255, 255, 255
            row += bytes((r & 255, g & 255, b & 255))
        rows.append(bytes(row))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"".join(rows), 9)) + chunk(b"IEND", b""))


def data_url(image: bytes, mime: str = "image/png") -> str:
    """``data:image/png;base64,…`` of ``image`` (the guide's ``designImage`` form)."""
    return f"data:{mime};base64,{base64.b64encode(image).decode()}"


def parse_qr_url(qr_url: str) -> dict[str, str]:
    """The parameters a QR URL carries: ``machine_id``, ``session_id`` and, when given,
    ``location`` (percent-decoded)."""
    query = parse_qs(urlsplit(qr_url).query)
    return {k: v[0] for k, v in query.items() if k in ("machine_id", "session_id", "location")}


class PhoneSimulator:
    """One shopper's phone against a hub at ``base_url`` (e.g. ``http://127.0.0.1:8000``).

    Every call returns the hub's JSON body (amounts as ``Decimal``) and raises
    :class:`httpx.HTTPStatusError` on a 4xx/5xx. After :meth:`register` the phone keeps
    its ``phone_token`` and sends it as ``Authorization: Bearer`` (and ``?token=`` on
    its socket).
    """

    def __init__(self, base_url: str, *, user_agent: str = "vending-phone-sim/0.1",
                 timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.ws_url = "ws" + self.base_url[4:] if self.base_url.startswith("http") else \
            self.base_url
        self.user_agent = user_agent
        self.http = httpx.AsyncClient(base_url=self.base_url, timeout=timeout,
                                      headers={"User-Agent": user_agent})
        self.session_id: str | None = None
        self.machine_id: str | None = None
        self.location: str | None = None
        self.phone_token: str | None = None
        self.design_image: bytes | None = None

    async def aclose(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> PhoneSimulator:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _path(self, tail: str = "") -> str:
        if self.session_id is None:
            raise RuntimeError("scan a QR code (or register) first")
        return f"/api/vending/session/{self.session_id}{tail}"

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.phone_token}"} if self.phone_token else {}

    async def _call(self, method: str, tail: str, body: Any = None) -> dict[str, Any]:
        r = await self.http.request(method, self._path(tail), json=body, headers=self._auth())
        r.raise_for_status()
        return r.json(parse_float=Decimal)  # type: ignore[no-any-return]

    async def scan(self, qr_url: str) -> dict[str, Any]:
        """Open the QR's URL as the web app does: read its parameters and register."""
        params = parse_qr_url(qr_url)
        self.location = params.get("location")
        return await self.register(params["session_id"], params["machine_id"])

    async def register(self, session_id: str | None = None,
                       machine_id: str | None = None) -> dict[str, Any]:
        """``POST register-user`` → ``success, session_id, machine_info, expires_at,
        user_progress, phone_token``; keeps the token (the same phone again: 200)."""
        self.session_id = session_id or self.session_id
        self.machine_id = machine_id or self.machine_id
        body: dict[str, Any] = {"machine_id": self.machine_id, "session_id": self.session_id,
                                "user_agent": self.user_agent}
        if self.location:
            body["location"] = self.location
        out = await self._call("POST", "/register-user", body)
        self.phone_token = out.get("phone_token") or self.phone_token
        return out

    async def progress(self, user_progress: str) -> dict[str, Any]:
        """``POST progress`` with ``brand_selected``, ``design_complete`` or
        ``payment_reached`` → ``success, session_id, status, user_progress``."""
        return await self._call("POST", "/progress", {"user_progress": user_progress})

    async def design(self, steps: tuple[str, ...] = ("brand_selected", "design_complete",
                                                     "payment_reached"),
                     pause: float = 0.0) -> None:
        """Walk the design steps, ``pause`` seconds apart."""
        for step in steps:
            if pause:
                await asyncio.sleep(pause)
            await self.progress(step)

    async def order_summary(self, order_data: dict[str, Any] | None = None,
                            payment_amount: Decimal | float | str = Decimal("19.99"),
                            currency: str = "GBP", image: bytes | None = None
                            ) -> dict[str, Any]:
        """``POST order-summary`` ("Pay via Machine"): the guide's payload with a
        generated PNG design (or ``image``) as a data URL → ``success, message, order_id,
        payment_amount, currency, status: "payment_pending"``. The image sent is kept in
        :attr:`design_image`."""
        self.design_image = image if image is not None else design_png()
        data = dict(ORDER_DATA if order_data is None else order_data)
        data["designImage"] = data_url(self.design_image)
        body = {"session_id": self.session_id, "order_data": data,
                "payment_amount": float(payment_amount) if isinstance(payment_amount, Decimal)
                else payment_amount, "currency": currency}
        return await self._call("POST", "/order-summary", body)

    async def status(self) -> dict[str, Any]:
        """``GET status`` of the phone's session."""
        return await self._call("GET", "/status")

    async def walk(self, qr_url: str, pause: float = 0.0, **order: Any) -> dict[str, Any]:
        """The whole phone side of the guide's flow: scan, design, send the order; return
        the order-summary answer."""
        await self.scan(qr_url)
        await self.design(pause=pause)
        if pause:
            await asyncio.sleep(pause)
        return await self.order_summary(**order)

    @asynccontextmanager
    async def socket(self, since: int | None = None
                     ) -> AsyncIterator[websockets.ClientConnection]:
        """The phone's session socket (``?token=…&role=phone``, ``since`` to resume):
        yields the connection; ``json.loads(await ws.recv())`` reads a frame."""
        query = f"?role=phone&token={self.phone_token or ''}"
        if since is not None:
            query += f"&since={since}"
        async with websockets.connect(self.ws_url + self._path("/ws") + query,
                                      open_timeout=5, close_timeout=2) as ws:
            yield ws

    async def frames(self, ws: websockets.ClientConnection, timeout: float = 10.0
                     ) -> AsyncIterator[dict[str, Any]]:
        """Frames of a socket from :meth:`socket`, until it closes or is quiet for
        ``timeout`` seconds."""
        while True:
            try:
                raw = await asyncio.wait_for(ws.recv(), timeout)
            except (TimeoutError, websockets.ConnectionClosed):
                return
            yield json.loads(raw, parse_float=Decimal)
