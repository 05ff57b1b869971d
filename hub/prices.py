"""The hub's price list: what a case costs in ``keys`` mode (CONTRACT §3 ``order-summary``).

``HUB_PRICES`` names a JSON file::

    {"currency": "GBP", "default": "19.99", "models": {"iPhone 15 Pro": "24.99"}}

``models`` is optional and keyed by ``order_data.model``. Without the file every case
costs 19.99 GBP.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from .money import to_minor

__all__ = ["PriceList"]


@dataclass(frozen=True)
class PriceList:
    """Prices in minor units: ``default_minor`` unless ``by_model`` names the model."""

    default_minor: int = 1999
    currency: str = "GBP"
    by_model: dict[str, int] = field(default_factory=dict)

    @classmethod
    def load(cls, path: str | None) -> PriceList:
        """Read a price list file; None gives the default list.

        Raises:
            ValueError: the file is not a price list (with the reason).
        """
        if path is None:
            return cls()
        with open(path, "rb") as f:
            raw = orjson.loads(f.read())
        if not isinstance(raw, dict):
            raise ValueError("HUB_PRICES: expected a JSON object")
        models = {str(k): to_minor(str(v)) for k, v in (raw.get("models") or {}).items()}
        return cls(to_minor(str(raw.get("default", "19.99"))),
                   str(raw.get("currency", "GBP")), models)

    def price_for(self, order_data: dict[str, Any] | None) -> tuple[int, str]:
        """(minor units, currency) for an order's ``model``, or the default price."""
        model = (order_data or {}).get("model")
        minor = self.by_model.get(model, self.default_minor) if isinstance(model, str) \
            else self.default_minor
        return minor, self.currency
