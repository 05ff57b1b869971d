"""Show a session's QR code: in a terminal (``qrcode``'s ``print_ascii``) or as a PNG.

The QR encodes the ``qr_url`` of ``create-session`` as is; the machine renders it locally,
so showing it needs no further call (the hub's ``GET qr.png`` is the alternative).
"""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import TextIO

import qrcode
from qrcode.constants import ERROR_CORRECT_M

__all__ = ["make_qr", "print_qr", "qr_ascii", "save_qr_png"]


def make_qr(url: str) -> qrcode.QRCode:  # type: ignore[type-arg]
    """A QR code of ``url`` (error correction M, smallest version that fits)."""
    qr = qrcode.QRCode(error_correction=ERROR_CORRECT_M, border=4)
    qr.add_data(url)
    qr.make(fit=True)
    return qr


def qr_ascii(url: str, invert: bool = False) -> str:
    """The QR of ``url`` as text (two modules a character, Unicode half blocks).
    ``invert=True`` for dark-on-light terminals' opposite (light text on dark)."""
    out = io.StringIO()
    make_qr(url).print_ascii(out=out, invert=invert)
    return out.getvalue()


def print_qr(url: str, out: TextIO | None = None, invert: bool = False) -> None:
    """Print the QR of ``url`` to ``out`` (default stdout)."""
    stream = out or sys.stdout
    stream.write(qr_ascii(url, invert))
    stream.flush()


def save_qr_png(url: str, path: str | Path, box_size: int = 10) -> Path:
    """Write the QR of ``url`` as a PNG (``box_size`` px a module, 4-module quiet zone);
    return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    qr = make_qr(url)
    qr.box_size = box_size
    qr.make_image(fill_color="black", back_color="white").save(str(path))
    return path
