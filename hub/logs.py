"""Keep credentials out of the logs: ``?token=…`` (browser sockets) is redacted from
uvicorn's access and connection lines before they are written."""

from __future__ import annotations

import logging
import re

__all__ = ["RedactTokens", "install"]

_TOKEN = re.compile(r"([?&]token=)[^&\s\"]*")


class RedactTokens(logging.Filter):
    """A logging filter that replaces the value of every ``token=`` query parameter in a
    record's arguments with ``***``."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and record.args:
            record.args = tuple(_TOKEN.sub(r"\1***", a) if isinstance(a, str) else a
                                for a in record.args)
        elif isinstance(record.msg, str) and "token=" in record.msg:
            record.msg = _TOKEN.sub(r"\1***", record.msg)
        return True


def install() -> None:
    """Attach :class:`RedactTokens` to uvicorn's loggers (idempotent)."""
    for name in ("uvicorn.access", "uvicorn.error"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactTokens) for f in logger.filters):
            logger.addFilter(RedactTokens())
