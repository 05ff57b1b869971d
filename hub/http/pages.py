"""Pages the hub serves to browsers (the phone demo at the QR landing path)."""

from __future__ import annotations

from starlette.routing import BaseRoute

__all__ = ["routes"]

routes: list[BaseRoute] = []
