"""Fixtures: real hub processes (keys and open mode) and HTTP/socket helpers."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

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
def keys_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubServer]:
    """A hub in ``keys`` mode, shared by the tests of the session."""
    server = HubServer(tmp_path_factory.mktemp("keys") / "hub.db",
                       {"HUB_APP_KEY": "app-secret-key"}).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def open_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubServer]:
    """A hub in ``open`` mode (``hub serve --open``), shared by the tests of the session."""
    server = HubServer(tmp_path_factory.mktemp("open") / "hub.db", open_mode=True).start()
    yield server
    server.stop()


@pytest.fixture
def fresh_hub(tmp_path: pytest.TempPathFactory) -> Iterator[HubServer]:
    """Factory of private hubs (short timeouts, restarts): ``fresh_hub(**env)``."""
    servers: list[HubServer] = []

    def make(open_mode: bool = False, **env: str) -> HubServer:
        server = HubServer(tmp_path / f"hub{len(servers)}.db", env, open_mode)  # type: ignore[operator]
        servers.append(server)
        return server.start()

    yield make  # type: ignore[misc]
    for server in servers:
        server.stop()
