"""The hub's REST routes a machine calls (CONTRACT §3), with retries where they are safe.

Bodies are JSON; amounts are read as :class:`~decimal.Decimal` (``19.99`` stays exact)
and sent as decimal strings (``"19.99"``), which the hub accepts.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx

__all__ = ["HubClient", "HubError", "HubUnreachable", "RetryPolicy", "full_jitter",
           "format_amount", "API"]

log = logging.getLogger("vending_machine.http")

API = "/api/vending"


class HubError(Exception):
    """The hub refused a call with a 4xx (or, once retries are spent, a 5xx).

    ``status`` is the HTTP code, ``detail`` the hub's ``{"detail": ...}`` text (e.g. 410
    ``Session has expired``, 409 ``Payment already confirmed``).
    """

    def __init__(self, status: int, detail: str, method: str = "", path: str = "") -> None:
        super().__init__(f"{method} {path}: {status} {detail}".strip())
        self.status, self.detail, self.method, self.path = status, detail, method, path


class HubUnreachable(Exception):
    """No answer from the hub (connection refused, timeout, reset) within the retries
    allowed; ``__cause__`` is the last network error."""


def full_jitter(attempt: int, base: float, cap: float) -> float:
    """Seconds to wait before retry ``attempt`` (0, 1, 2 …): uniform in
    ``[0, min(cap, base * 2**attempt)]`` ("full jitter", so clients spread out)."""
    return random.uniform(0.0, min(cap, base * (2 ** min(attempt, 30))))


@dataclass(frozen=True)
class RetryPolicy:
    """How long a call keeps trying: at most ``attempts`` tries (``None``: no limit) and
    no new try after ``deadline_s`` seconds; waits by :func:`full_jitter` with
    ``base_s``/``cap_s`` (seconds)."""

    attempts: int | None = 6
    deadline_s: float = 30.0
    base_s: float = 0.25
    cap_s: float = 5.0

    def delay(self, attempt: int) -> float:
        return full_jitter(attempt, self.base_s, self.cap_s)


#: a single try (polling retries by polling again)
NO_RETRY = RetryPolicy(attempts=1)


def format_amount(value: Decimal | float | int | str) -> str:
    """``19.99`` → ``"19.99"``: two decimals, exact (floats go through ``str``)."""
    return str(Decimal(str(value)).quantize(Decimal("0.01")))


class HubClient:
    """REST client of one machine.

    ``base_url``: the hub, e.g. ``https://hub.example`` (no trailing ``/api``).
    ``machine_key``: the key ``hub machines add`` printed (``keys`` mode), sent as
    ``Authorization: Bearer``; ``None`` for an ``open`` hub. ``timeout``: seconds per
    request. ``retry``: default policy of idempotent calls.
    """

    def __init__(self, base_url: str, machine_id: str, machine_key: str | None = None, *,
                 timeout: float = 10.0, retry: RetryPolicy = RetryPolicy(),
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.machine_id = machine_id
        self.machine_key = machine_key
        self.retry = retry
        headers = {"User-Agent": "vending-hub-machine/0.1"}
        if machine_key:
            headers["Authorization"] = f"Bearer {machine_key}"
        self.http = httpx.AsyncClient(base_url=self.base_url, timeout=timeout,
                                      headers=headers, transport=transport)
        #: tries sent, by ``"<METHOD> <last path segment>"`` (``"POST confirm-payment"``,
        #: ``"GET status"``, ``"DELETE session"``)
        self.attempts: Counter[str] = Counter()

    async def aclose(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> HubClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    @staticmethod
    def session_path(session_id: str, tail: str = "") -> str:
        return f"{API}/session/{session_id}{tail}"

    async def request(self, method: str, path: str, *, json: Any = None,
                      retry: RetryPolicy | None = None, sent_only: bool = False
                      ) -> httpx.Response:
        """Send a request and return its 2xx response.

        Retries (per ``retry``, default :attr:`retry`) on network errors, 5xx and 429
        (waiting ``Retry-After`` when given). With ``sent_only`` (calls that are not
        idempotent) it retries only when the request surely never arrived: connect
        errors, 503, 429.

        Raises:
            HubError: a 4xx (at once), or the last 5xx when retries are spent.
            HubUnreachable: the last network error when retries are spent.
        """
        policy = retry or self.retry
        started = time.monotonic()
        attempt = 0
        name = "DELETE session" if method == "DELETE" else \
            f"{method} {path.rstrip('/').rsplit('/', 1)[-1]}"
        while True:
            wait: float | None = None
            self.attempts[name] += 1
            try:
                r = await self.http.request(method, path, json=json)
            except httpx.TransportError as exc:
                retriable = not sent_only or isinstance(
                    exc, (httpx.ConnectError, httpx.ConnectTimeout))
                if not retriable or not self._again(policy, attempt, started):
                    raise HubUnreachable(f"{method} {path}: {exc!r}") from exc
                log.info("%s %s: %r, retrying", method, path, exc)
            else:
                if r.status_code < 400:
                    return r
                retriable = r.status_code in (429, 503) or (
                    r.status_code >= 500 and not sent_only)
                if not retriable or not self._again(policy, attempt, started):
                    raise HubError(r.status_code, _detail(r), method, path)
                log.info("%s %s: %s, retrying", method, path, r.status_code)
                after = r.headers.get("Retry-After", "")
                if after.isdigit():
                    wait = min(float(after), policy.cap_s)
            await asyncio.sleep(policy.delay(attempt) if wait is None else wait)
            attempt += 1

    @staticmethod
    def _again(policy: RetryPolicy, attempt: int, started: float) -> bool:
        if policy.attempts is not None and attempt + 1 >= policy.attempts:
            return False
        return time.monotonic() - started < policy.deadline_s

    async def _json(self, method: str, path: str, **kw: Any) -> dict[str, Any]:
        r = await self.request(method, path, **kw)
        return r.json(parse_float=Decimal)  # type: ignore[no-any-return]

    # -- the routes ---------------------------------------------------------------------

    async def test_connection(self) -> dict[str, Any]:
        """``GET /api/chinese/test-connection``: ``status, api_version, auth_mode, store,
        broker`` …"""
        return await self._json("GET", "/api/chinese/test-connection")

    async def create_session(self, location: str | None = None,
                             session_timeout_minutes: int | None = None,
                             metadata: dict[str, Any] | None = None) -> dict[str, Any]:
        """``POST create-session`` → ``success, session_id, qr_url, expires_at,
        timeout_minutes, machine_info{id,name,location}``.

        ``location`` ≤ 200 characters; ``session_timeout_minutes`` 1..120 (hub default
        30); ``metadata`` a JSON object ≤ 4 KiB. Retried only when the request surely
        never arrived (a retry must not leave two sessions). 429 ``Rate limit exceeded``
        (10 a minute per machine) is waited out within the retry policy.
        """
        body: dict[str, Any] = {"machine_id": self.machine_id}
        if location is not None:
            body["location"] = location
        if session_timeout_minutes is not None:
            body["session_timeout_minutes"] = session_timeout_minutes
        if metadata is not None:
            body["metadata"] = metadata
        return await self._json("POST", f"{API}/create-session", json=body, sent_only=True)

    async def status(self, session_id: str, retry: RetryPolicy | None = None
                     ) -> dict[str, Any]:
        """``GET status`` → ``session_id, status, user_progress, expires_at, created_at,
        last_activity, machine_id, seq`` (+ ``order_id, payment_amount, currency`` once
        ordered, + ``transaction_id, payment_method`` once paid)."""
        return await self._json("GET", self.session_path(session_id, "/status"),
                                retry=retry)

    async def order_info(self, session_id: str) -> dict[str, Any]:
        """``GET order-info`` → ``order_id, order_summary{…no image}, payment_amount,
        currency, machine_info, session_status{…}``; 404 before an order."""
        return await self._json("GET", self.session_path(session_id, "/order-info"))

    async def design_image(self, session_id: str) -> tuple[str, bytes]:
        """``GET design-image`` → (MIME type, image bytes); 404 without an image."""
        r = await self.request("GET", self.session_path(session_id, "/design-image"))
        return r.headers.get("content-type", "application/octet-stream"), r.content

    async def confirm_payment(self, session_id: str, *, payment_method: str,
                              payment_amount: Decimal | float | str, transaction_id: str,
                              payment_data: dict[str, Any] | None = None,
                              retry: RetryPolicy | None = None) -> dict[str, Any]:
        """``POST confirm-payment`` → ``success, message, session_id, transaction_id,
        status: "payment_completed", next_steps``.

        Every retry sends the same body with the same ``transaction_id``; the hub treats
        a repeat as the same payment (same 200, nothing recorded twice), so retrying on
        network errors and 5xx is safe. 4xx are final: 400 ``Payment amount does not
        match order total`` / ``Invalid payment method``, 409 ``Session not ready for
        payment confirmation`` / ``Payment already confirmed`` / ``Transaction ID already
        used``, 410 expired or cancelled.
        """
        body: dict[str, Any] = {
            "session_id": session_id, "payment_method": payment_method,
            "payment_amount": format_amount(payment_amount), "transaction_id": transaction_id}
        if payment_data is not None:
            body["payment_data"] = payment_data
        return await self._json("POST", self.session_path(session_id, "/confirm-payment"),
                                json=body, retry=retry)

    async def cancel(self, session_id: str) -> dict[str, Any]:
        """``DELETE session/{id}`` → ``success, message, session_id, status``. An open
        session is cancelled; a finished one answers its status and stays as it is."""
        return await self._json("DELETE", self.session_path(session_id))


def _detail(r: httpx.Response) -> str:
    try:
        body = r.json()
    except ValueError:
        return r.text[:200]
    if isinstance(body, dict) and isinstance(body.get("detail"), str):
        return body["detail"]
    return r.text[:200]
