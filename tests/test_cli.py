"""The ``hub`` command: machine registration, start-up errors, redacted logs."""

from __future__ import annotations

import logging
import subprocess
import sys

import httpx

from hub.logs import RedactTokens

from .server import ROOT, HubServer, hub_cli


def run_hub(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hub.cli", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=30)


def test_machines_add_refuses_to_rekey_by_accident(keys_hub: HubServer) -> None:
    key = keys_hub.add_machine("VM_CLI_1", "--name", "Kiosk One", "--location", "Hall")
    again = run_hub("machines", "add", "VM_CLI_1", env=keys_hub.env)
    assert again.returncode == 2 and "--rotate-key" in again.stderr
    out = hub_cli("machines", "add", "VM_CLI_1", "--rotate-key", env=keys_hub.env)
    new_key = out.split("machine_key: ")[1].split()[0]
    assert new_key != key
    r = httpx.post(keys_hub.url + "/api/vending/create-session",
                   json={"machine_id": "VM_CLI_1"},
                   headers={"Authorization": f"Bearer {new_key}"})
    assert r.status_code == 200
    assert r.json()["machine_info"] == {"id": "VM_CLI_1", "name": "Kiosk One",
                                        "location": "Hall"}
    listing = hub_cli("machines", "list", env=keys_hub.env)
    assert "VM_CLI_1\tKiosk One\tHall" in listing


def test_machines_add_refuses_a_callback_url_that_is_not_http(keys_hub: HubServer) -> None:
    for bad in ("notaurl", "ftp://x.example/hook", "http://", "file:///etc/passwd"):
        r = run_hub("machines", "add", "VM_CLI_URL", "--callback-url", bad, env=keys_hub.env)
        assert r.returncode == 2 and "--callback-url must be" in r.stderr, (bad, r.stderr)
    ok = run_hub("machines", "add", "VM_CLI_URL", "--callback-url",
                 "https://machines.example/hook", env=keys_hub.env)
    assert ok.returncode == 0 and "webhook_secret" in ok.stdout


def test_bad_settings_fail_in_one_line(tmp_path) -> None:  # type: ignore[no-untyped-def]
    env = HubServer(tmp_path / "x.db").env
    for extra in ({"HUB_PRICES": str(tmp_path / "missing.json")},
                  {"HUB_DB": str(tmp_path / "no" / "such" / "hub.db")},
                  {"HUB_AUTH": "maybe"}):
        r = run_hub("serve", "--port", "1", env={**env, **extra})
        assert r.returncode == 2, (extra, r.stderr)
        assert r.stderr.startswith("error: HUB_") and "Traceback" not in r.stderr


def test_tokens_are_redacted_from_log_lines() -> None:
    record = logging.LogRecord("uvicorn.error", logging.INFO, __file__, 1,
                               '%s - "WebSocket %s" [accepted]',
                               ("127.0.0.1:5", "/api/vending/session/S/ws?token=pt_secret&since=2"),
                               None)
    assert RedactTokens().filter(record)
    line = record.getMessage()
    assert "pt_secret" not in line and "token=***&since=2" in line
