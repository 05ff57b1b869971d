"""QR codes of a session's ``qr_url`` (CONTRACT §3), rendered with the ``qrcode`` library.

Rendering runs in a worker thread, never on the event loop, and each image is cached
(bounded LRU) per (session, format, scale): a kiosk that reloads its QR costs nothing.
"""

from __future__ import annotations

import asyncio
import io
from collections import OrderedDict
from urllib.parse import quote

import qrcode
import qrcode.image.svg
from qrcode.constants import ERROR_CORRECT_M

__all__ = ["qr_url", "QrRenderer", "MIME"]

MIME = {"png": "image/png", "svg": "image/svg+xml"}


def qr_url(base: str, machine_id: str, session_id: str, location: str | None) -> str:
    """``base`` + ``?qr=true&machine_id=…&session_id=…[&location=…]``.

    Every value is percent-encoded (RFC 3986, nothing left unescaped but unreserved
    characters), so a decoder gets back exactly the values sent. A ``base`` that already
    has a query gets ``&`` instead of ``?``.
    """
    parts = [("qr", "true"), ("machine_id", machine_id), ("session_id", session_id)]
    if location is not None:
        parts.append(("location", location))
    query = "&".join(f"{k}={quote(v, safe='')}" for k, v in parts)
    return base + ("&" if "?" in base else "?") + query


def render(text: str, fmt: str, scale: int) -> bytes:
    """Render ``text`` as a QR code: ``fmt`` ``png`` or ``svg``, ``scale`` px a module,
    error correction M, a 4-module quiet zone."""
    factory = qrcode.image.svg.SvgPathImage if fmt == "svg" else None
    qr = qrcode.QRCode(error_correction=ERROR_CORRECT_M, box_size=scale, border=4,
                       image_factory=factory)
    qr.add_data(text)
    qr.make(fit=True)
    buf = io.BytesIO()
    qr.make_image().save(buf)
    return buf.getvalue()


class QrRenderer:
    """Renders off the loop and keeps the last ``size`` images (bytes) in memory."""

    def __init__(self, size: int = 512) -> None:
        self.size = size
        self._cache: OrderedDict[tuple[str, str, int], bytes] = OrderedDict()

    async def get(self, session_id: str, text: str, fmt: str, scale: int) -> bytes:
        """The image bytes for ``text``; cancelling is safe (the render still fills the cache)."""
        key = (session_id, fmt, scale)
        found = self._cache.get(key)
        if found is not None:
            self._cache.move_to_end(key)
            return found
        data = await asyncio.to_thread(render, text, fmt, scale)
        self._cache[key] = data
        if len(self._cache) > self.size:
            self._cache.popitem(last=False)
        return data
