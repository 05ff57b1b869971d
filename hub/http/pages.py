"""Pages the hub serves to browsers: the phone demo at the QR landing path.

``GET /`` is where ``qr_url`` lands when ``HUB_QR_BASE`` points at the hub itself
(``HUB_QR_BASE=http://127.0.0.1:8000/``): ``/?qr=true&machine_id=…&session_id=…``. It
answers the demo page (``hub/static/index.html``) whatever the query; the page reads
the parameters itself. ``GET /static/{name}`` serves the page's files, the browser client
``hub-client.js`` among them, from a fixed list with explicit content types (nothing else
in the folder is reachable, so no path handling to get wrong).

``hub/static/hub-client.js`` is the one copy of the browser client;
``clients/web/hub-client.js`` in the repository is a symlink to it.
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Route

from ..errors import HubError

__all__ = ["routes", "STATIC_DIR", "STATIC_FILES"]

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"

#: the files ``/static/{name}`` serves, with their content types
STATIC_FILES = {
    "hub-client.js": "text/javascript; charset=utf-8",
    "phone.js": "text/javascript; charset=utf-8",
    "phone.css": "text/css; charset=utf-8",
}

_COMMON = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"}

#: the page talks only to the hub that served it (REST and its sockets)
_PAGE_HEADERS = {
    **_COMMON,
    "Content-Security-Policy": (
        "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data: blob:; "
        "object-src 'none'; base-uri 'none'; frame-ancestors 'none'"),
    "Referrer-Policy": "no-referrer",  # the URL names the session
}


def _file(name: str, media_type: str, headers: dict[str, str]) -> Response:
    path = STATIC_DIR / name
    if not path.is_file():  # an install without the package's static files
        raise HubError(404, "Not Found")
    return FileResponse(path, media_type=media_type, headers=headers)


async def phone_page(request: Request) -> Response:
    """``GET /[?qr=true&machine_id=…&session_id=…]``: the phone demo page."""
    return _file("index.html", "text/html; charset=utf-8", _PAGE_HEADERS)


async def static_file(request: Request) -> Response:
    """``GET /static/{name}``: one of :data:`STATIC_FILES`."""
    name = request.path_params["name"]
    media_type = STATIC_FILES.get(name)
    if media_type is None:
        raise HubError(404, "Not Found")
    return _file(name, media_type, _COMMON)


routes: list[BaseRoute] = [
    Route("/", phone_page, methods=["GET"]),
    Route("/static/{name}", static_file, methods=["GET"]),
]
