"""The hub's log lines: the ``hub.*`` loggers write beside uvicorn's (same stream and
level), credentials are kept out (``?token=…`` on browser sockets is redacted from
uvicorn's lines), and a client's bad bytes are one warning line, not a traceback."""

from __future__ import annotations

import logging
import re

__all__ = ["RedactTokens", "QuietClientErrors", "install"]

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


class QuietClientErrors(logging.Filter):
    """uvicorn logs a text frame of invalid UTF-8 (which it closes with 1007, RFC 6455
    §8.1) as an error with a traceback; it is the client's fault: one warning line."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg == "Invalid UTF-8 sequence received from client.":
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.msg = "Invalid UTF-8 in a text frame from a client: closed 1007"
        return True


def install() -> None:
    """Attach the filters to uvicorn's loggers, and a handler to ``hub`` at uvicorn's
    level when it has none (idempotent)."""
    for name in ("uvicorn.access", "uvicorn.error"):
        logger = logging.getLogger(name)
        for kind in (RedactTokens, QuietClientErrors):
            if not any(isinstance(f, kind) for f in logger.filters):
                logger.addFilter(kind())
    hub = logging.getLogger("hub")
    if not hub.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s:     %(name)s: %(message)s"))
        hub.addHandler(handler)
        hub.setLevel(logging.getLogger("uvicorn.error").getEffectiveLevel())
        hub.propagate = False
