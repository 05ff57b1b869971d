"""Fixtures: real hub processes (keys and open mode) and HTTP/socket helpers."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .redis_server import private_or_given
from .server import HubServer


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """With ``CI=true`` no test may be skipped: a skip there fails the run."""
    if os.environ.get("CI") == "true":
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        skipped = reporter.stats.get("skipped", []) if reporter else []
        if skipped:
            names = ", ".join(r.nodeid for r in skipped)
            print(f"\nCI=true: {len(skipped)} skipped test(s) count as failures: {names}")
            session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Redis for the tests: ``HUB_TEST_REDIS_URL``, else a private redis-server."""
    url, server = private_or_given(tmp_path_factory.mktemp("redis"))
    yield url
    if server is not None:
        server.stop()


@pytest.fixture(scope="session", params=["sqlite", "redis"])
def backend(request: pytest.FixtureRequest) -> dict[str, str]:
    """Every hub test runs on both backends: the embedded SQLite one and Redis."""
    if request.param == "sqlite":
        return {}
    return {"HUB_REDIS_URL": request.getfixturevalue("redis_url")}


def _env(backend: dict[str, str], **env: str) -> dict[str, str]:
    if backend:  # a prefix of its own per hub: tests share one Redis
        env = {**env, **backend, "HUB_REDIS_PREFIX": f"t{uuid.uuid4().hex[:8]}:"}
    return env


@pytest.fixture(scope="session")
def keys_hub(tmp_path_factory: pytest.TempPathFactory, backend: dict[str, str]
             ) -> Iterator[HubServer]:
    """A hub in ``keys`` mode, shared by the tests of the session."""
    server = HubServer(tmp_path_factory.mktemp("keys") / "hub.db",
                       _env(backend, HUB_APP_KEY="app-secret-key")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def open_hub(tmp_path_factory: pytest.TempPathFactory, backend: dict[str, str]
             ) -> Iterator[HubServer]:
    """A hub in ``open`` mode (``hub serve --open``), shared by the tests of the session."""
    server = HubServer(tmp_path_factory.mktemp("open") / "hub.db", _env(backend),
                       open_mode=True).start()
    yield server
    server.stop()


@pytest.fixture
def fresh_hub(tmp_path: Path, backend: dict[str, str]) -> Iterator[Callable[..., HubServer]]:
    """Factory of private hubs (short timeouts, restarts): ``fresh_hub(**env)``."""
    servers: list[HubServer] = []

    def make(open_mode: bool = False, **env: str) -> HubServer:
        server = HubServer(tmp_path / f"hub{len(servers)}.db", _env(backend, **env),
                           open_mode)
        servers.append(server)
        return server.start()

    yield make
    for server in servers:
        server.stop()
