"""Settings from ``HUB_*`` environment variables (CONTRACT §6), each with unit and default.

=============================  ==========================================================
``HUB_AUTH``                   ``keys`` (default): every caller shows a credential;
                               ``open``: none checked (local trials, legacy clients)
``HUB_DB``                     SQLite file of the embedded store (default ``./hub.db``)
``HUB_REDIS_URL``              use Redis for store and broker (unset: embedded)
``HUB_REDIS_PREFIX``           key and channel prefix in Redis (default ``hub:``)
``HUB_QR_BASE``                QR landing URL (default ``https://pimpmycase.shop/``)
``HUB_PRICES``                 JSON price list file (default: 19.99 GBP a case)
``HUB_APP_KEY``                bearer key of the app backend for ``app-payment``
``HUB_PAYMENT_TIMEOUT_S``      deadline once ``payment_pending``, seconds (default 300)
``HUB_CORS_ORIGINS``           comma-separated browser origins allowed (default none)
``HUB_TRUSTED_PROXIES``        comma-separated proxy addresses whose
                               ``X-Forwarded-For`` is believed (default none)
``HUB_SESSION_MINUTE_S``       seconds in one ``session_timeout_minutes`` unit
                               (default 60; tests shorten it)
``HUB_SWEEP_INTERVAL_S``       how often the expiry sweeper looks, seconds (default 0.2)
``HUB_CREATE_RATE``            ``create-session`` calls a minute per machine (default 10)
``HUB_AUTH_FAIL_RATE``         failed credentials a minute per client address (default 20)
``HUB_WEBHOOK_BASE_S``         first webhook retry delay, seconds; doubles up to 60 s
                               (default 1; tests shorten it)
``HUB_WS_DEFLATE``             ``1`` to offer permessage-deflate (RFC 7692) on sockets;
                               default ``0``: frames are small JSON, and compressing
                               each one per socket costs more CPU than it saves bytes
=============================  ==========================================================
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["Settings"]


def _flag(value: str) -> bool:
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(value)


def _list(value: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip())


@dataclass(frozen=True)
class Settings:
    """The hub's configuration; :meth:`from_env` reads it from ``HUB_*`` variables."""

    auth: str = "keys"
    db: str = "./hub.db"
    redis_url: str | None = None
    redis_prefix: str = "hub:"
    qr_base: str = "https://pimpmycase.shop/"
    prices: str | None = None
    app_key: str | None = None
    payment_timeout_s: float = 300.0
    cors_origins: tuple[str, ...] = ()
    trusted_proxies: tuple[str, ...] = field(default=())
    session_minute_s: float = 60.0
    sweep_interval_s: float = 0.2
    create_rate: int = 10
    auth_fail_rate: int = 20
    webhook_base_s: float = 1.0
    ws_deflate: bool = False
    send_timeout_s: float = 30.0

    @property
    def open_mode(self) -> bool:
        return self.auth == "open"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Read ``HUB_*`` variables from ``env`` (default ``os.environ``).

        Raises:
            ValueError: a value that cannot be used, naming the variable.
        """
        env = os.environ if env is None else env
        values: dict[str, object] = {}
        conv = {"auth": str, "db": str, "redis_url": str, "redis_prefix": str,
                "qr_base": str, "prices": str, "app_key": str,
                "payment_timeout_s": float, "cors_origins": _list,
                "trusted_proxies": _list, "session_minute_s": float,
                "sweep_interval_s": float, "create_rate": int, "auth_fail_rate": int,
                "webhook_base_s": float, "ws_deflate": _flag, "send_timeout_s": float}
        for name, fn in conv.items():
            raw = env.get("HUB_" + name.upper())
            if raw is None or raw == "":
                continue
            try:
                values[name] = fn(raw)
            except ValueError:
                raise ValueError(f"HUB_{name.upper()}: cannot use {raw!r}") from None
        values.update({k: v for k, v in overrides.items() if v is not None})
        s = cls(**values)  # type: ignore[arg-type]
        if s.auth not in ("keys", "open"):
            raise ValueError("HUB_AUTH: must be 'keys' or 'open'")
        if not s.send_timeout_s > 0:
            raise ValueError("HUB_SEND_TIMEOUT_S: must be a positive number of seconds")
        return s
