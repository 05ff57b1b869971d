"""REST routes of CONTRACT §3, one explicit list (:data:`routes`).

Each endpoint reads the credential, hands the raw body to the matching
:class:`~hub.service.Hub` command and renders its dict; refusals become
``{"detail": ...}`` through :mod:`hub.http.errors`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from .. import __version__
from ..clock import iso
from ..errors import HubError
from ..metrics import CONTENT_TYPE, render
from ..qr import MIME, qr_url
from ..service import Caller, Hub
from .auth import bearer, client_address
from .commands import Command
from .middleware import ORDER_LIMIT
from .errors import JSON

__all__ = ["routes", "ACTIONS"]

API_VERSION = "2.0.0"


def _hub(request: Request) -> Hub:
    return request.app.state.hub  # type: ignore[no-any-return]


async def _call(request: Request, command: Callable[[Hub, Caller], Awaitable[Any]],
                anonymous_ok: bool = False) -> Any:
    """Authenticate, run ``command(hub, caller)``; a 403 counts as a failed credential."""
    hub = _hub(request)
    client = client_address(request, hub.settings.trusted_proxies)
    caller = await hub.authenticate(bearer(request), client, anonymous_ok)
    try:
        return await command(hub, caller)
    except HubError as exc:
        if exc.status == 403 and caller.role != "open":
            await hub.auth_failed(client)
        raise


async def create_session(request: Request) -> Response:
    raw = await request.body()
    return JSON(await _call(request, lambda hub, caller: hub.create_session(caller, raw)))


async def design_image(request: Request) -> Response:
    sid = request.path_params["session_id"]
    mime, data = await _call(request, lambda hub, caller: hub.design_image(caller, sid))
    # the URL stays when the order is replaced: never cache; never sniff the bytes
    return Response(data, media_type=mime, headers={"Cache-Control": "no-store",
                                                    "X-Content-Type-Options": "nosniff"})


async def qr_image(request: Request) -> Response:
    """``GET /session/{id}/qr.png|qr.svg?scale=N`` (N px a module, 1..40, default 10)."""
    sid, fmt = request.path_params["session_id"], request.path_params["fmt"]
    if fmt not in MIME:
        raise HubError(404, "Not Found")
    s = await _call(request, lambda hub, caller: hub.session_for(caller, sid, ("machine",)))
    raw = request.query_params.get("scale", "10")
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 2 and 1 <= int(raw) <= 40):
        raise HubError(422, "Invalid scale: expected an integer from 1 to 40")
    hub = _hub(request)
    url = qr_url(hub.settings.qr_base, s.machine_id, s.session_id, s.location)
    data = await request.app.state.qr.get(sid, url, fmt, int(raw))
    return Response(data, media_type=MIME[fmt], headers={"Cache-Control": "max-age=3600"})


async def test_connection(request: Request) -> Response:
    """The guide's health check: who answers and how it is configured."""
    hub = _hub(request)
    mode = hub.settings.auth
    message = "Vending Hub is reachable"
    if mode == "open":
        message += " (open mode: credentials are not checked; for local trials only)"
    return JSON({"status": "success", "message": message, "api_version": API_VERSION,
                 "hub_version": __version__, "timestamp": iso(hub.clock()),
                 "auth_mode": mode, "store": hub.store.name, "broker": hub.broker.name})


async def metrics(request: Request) -> Response:
    """Prometheus text format (:mod:`hub.metrics`), for operators, like the health routes."""
    return Response(render(), media_type=CONTENT_TYPE)


async def health(request: Request) -> Response:
    """Liveness: the process answers."""
    return JSON({"status": "ok"})


async def ready(request: Request) -> Response:
    """Readiness: 200 when the store and broker answer, else 503 naming the failing one."""
    hub = _hub(request)
    for name, dep in (("store", hub.store), ("broker", hub.broker)):
        try:
            await dep.ping()
        except Exception:
            return JSON({"status": "unavailable", "detail": f"{name} unavailable"}, 503)
    return JSON({"status": "ready", "store": hub.store.name, "broker": hub.broker.name})


_S = "/api/vending/session/{session_id}"

#: (method, action) → command for ``/api/vending/session/{id}/{action}`` (``""``: the
#: session itself): raw ASGI apps, Starlette routes here, served directly by
#: :mod:`hub.http.direct`
ACTIONS: dict[tuple[str, str], Command] = {
    ("GET", "status"): Command("status", False),
    ("POST", "register-user"): Command("register_user", True, anonymous_ok=True),
    ("POST", "progress"): Command("progress", True),
    ("POST", "order-summary"): Command("order_summary", True, limit=ORDER_LIMIT),
    ("GET", "order-info"): Command("order_info", False),
    ("POST", "confirm-payment"): Command("confirm_payment", True),
    ("POST", "app-payment"): Command("app_payment", True),
    ("POST", "validate"): Command("validate", False),
    ("DELETE", ""): Command("cancel", False),
}

routes: list[BaseRoute] = [
    Route("/api/vending/create-session", create_session, methods=["POST"]),
    *(Route(_S + (f"/{action}" if action else ""), endpoint, methods=[method])
      for (method, action), endpoint in ACTIONS.items()),
    Route(_S + "/design-image", design_image, methods=["GET"]),
    Route(_S + "/qr.{fmt:str}", qr_image, methods=["GET"]),
    Route("/api/chinese/test-connection", test_connection, methods=["GET"]),
    Route("/health", health, methods=["GET"]),
    Route("/metrics", metrics, methods=["GET"]),
    Route("/ready", ready, methods=["GET"]),
]
