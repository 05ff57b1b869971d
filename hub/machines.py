"""Registered machines and their credentials (CONTRACT §1, ``hub machines add``).

A machine key is printed once at registration; the hub keeps only its SHA-256. With a
callback URL the machine also gets a webhook signing secret, which the hub keeps (it
signs with it, CONTRACT §5).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

__all__ = ["Machine", "new_machine_key", "new_phone_token", "key_hash", "MACHINE_KEY_PREFIX",
           "PHONE_TOKEN_PREFIX"]

MACHINE_KEY_PREFIX = "mk_"
PHONE_TOKEN_PREFIX = "pt_"


@dataclass(frozen=True, slots=True)
class Machine:
    """A registered machine. ``key_hash`` is the hex SHA-256 of its key (None for machines
    registered on first use in ``open`` mode); ``created_at`` in epoch ms."""

    machine_id: str
    name: str
    location: str | None
    key_hash: str | None
    created_at: int
    callback_url: str | None = None
    webhook_secret: str | None = None

    def info(self) -> dict[str, str | None]:
        """The ``machine_info`` object of CONTRACT §3: ``{id, name, location}``."""
        return {"id": self.machine_id, "name": self.name, "location": self.location}


def key_hash(key: str) -> str:
    """Hex SHA-256 of a credential (keys are 256-bit random, so no salt is needed)."""
    return hashlib.sha256(key.encode()).hexdigest()


def new_machine_key() -> str:
    """A new machine key: ``mk_`` + 43 URL-safe characters (256 bits)."""
    return MACHINE_KEY_PREFIX + secrets.token_urlsafe(32)


def new_phone_token() -> str:
    """A new phone token: ``pt_`` + 32 URL-safe characters (192 bits)."""
    return PHONE_TOKEN_PREFIX + secrets.token_urlsafe(24)
