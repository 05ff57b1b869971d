"""A real ``hub serve`` process for tests: free port, its own SQLite file, real sockets."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def hub_cli(*args: str, env: dict[str, str]) -> str:
    """Run ``hub …`` (as ``python -m hub.cli``) and return its stdout."""
    out = subprocess.run([sys.executable, "-m", "hub.cli", *args], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=30, check=True)
    return out.stdout


@dataclass
class HubServer:
    """One ``hub serve`` process. ``env`` holds its ``HUB_*`` settings."""

    db: Path
    env_overrides: dict[str, str] = field(default_factory=dict)
    open_mode: bool = False
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    log: Path | None = None

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
        env.update({"HUB_DB": str(self.db), "HUB_CREATE_RATE": "100000",
                    "HUB_AUTH_FAIL_RATE": "100000", "PYTHONUNBUFFERED": "1"})
        env.update(self.env_overrides)
        return env

    @property
    def backend(self) -> str:
        """``redis`` when this hub runs on Redis, else ``sqlite``."""
        return "redis" if "HUB_REDIS_URL" in self.env_overrides else "sqlite"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self) -> HubServer:
        args = [sys.executable, "-m", "hub.cli", "serve", "--port", str(self.port),
                "--log-level", "warning"]
        if self.open_mode:
            args.append("--open")
        self.log = self.db.with_suffix(f".{self.port}.log")
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(args, env=self.env, cwd=ROOT, stdout=log,
                                         stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"hub serve exited: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise RuntimeError("hub serve did not answer /health within 20 s")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def add_machine(self, machine_id: str, *extra: str) -> str:
        """Register a machine with ``hub machines add``; return its key."""
        out = hub_cli("machines", "add", machine_id, *extra, env=self.env)
        return next(line.split(": ", 1)[1] for line in out.splitlines()
                    if line.startswith("machine_key: "))

    def errors_logged(self) -> str:
        """Tracebacks the server wrote (a test that sees one has found a 500-class bug)."""
        text = self.log.read_text() if self.log and self.log.exists() else ""
        return text if "Traceback" in text else ""
