"""Signed webhooks to legacy machines, retried, durable across restarts (CONTRACT §5)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import signal
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson
import pytest

from .api import Api
from .server import HubServer, hub_cli


class Receiver:
    """A real local HTTP endpoint that records every POST and answers ``fail_first``
    failures (500) per event id before it says 200."""

    def __init__(self, fail_first: int = 0, delay: float = 0.0) -> None:
        self.fail_first, self.delay = fail_first, delay
        self.requests: list[tuple[dict[str, str], bytes, int]] = []
        self.lock = threading.Lock()
        self.in_flight = self.most_in_flight = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.lock:
                    receiver.in_flight += 1
                    receiver.most_in_flight = max(receiver.most_in_flight,
                                                  receiver.in_flight)
                time.sleep(receiver.delay)
                with receiver.lock:
                    receiver.in_flight -= 1
                    event_id = self.headers["X-Hub-Event-Id"]
                    seen = sum(1 for h, _, _ in receiver.requests
                               if h["X-Hub-Event-Id"] == event_id)
                    code = 500 if seen < receiver.fail_first else 200
                    receiver.requests.append((dict(self.headers), body, code))
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def acked(self) -> list[tuple[dict[str, str], bytes]]:
        with self.lock:
            return [(h, b) for h, b, code in self.requests if code == 200]

    async def wait_acked(self, n: int, timeout: float = 15) -> list[tuple[dict[str, str], bytes]]:
        for _ in range(int(timeout * 20)):
            if len(self.acked()) >= n:
                return self.acked()
            await asyncio.sleep(0.05)
        raise AssertionError(f"only {len(self.acked())} of {n} webhooks acknowledged")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(fail_first=2)
    yield r
    r.close()


def add_legacy_machine(server: HubServer, mid: str, url: str) -> tuple[str, str]:
    out = hub_cli("machines", "add", mid, "--callback-url", url, env=server.env)
    fields = dict(line.split(": ", 1) for line in out.splitlines() if ": " in line)
    return fields["machine_key"], fields["webhook_secret"]


def check_signature(headers: dict[str, str], body: bytes, secret: str) -> None:
    want = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["X-Hub-Signature"], want)


async def test_signed_retried_exactly_once_acknowledged(fresh_hub, receiver: Receiver) -> None:  # type: ignore[no-untyped-def]
    server: HubServer = fresh_hub(HUB_WEBHOOK_BASE_S="0.1")
    key, secret = add_legacy_machine(server, "VM_LEGACY_1", receiver.url)
    async with Api(server) as api:
        sid, _ = await api.to_pending("VM_LEGACY_1", key)
        assert (await api.confirm(sid, key, "TXN_WH_1")).status_code == 200
        acked = await receiver.wait_acked(2)
    assert [h["X-Hub-Event-Id"] for h, _ in acked] == [f"{sid}:6", f"{sid}:7"]
    for headers, body in acked:
        check_signature(headers, body, secret)
    order, paid = (orjson.loads(b) for _, b in acked)
    assert set(order) == {"session_id", "order_data", "payment_amount", "currency", "order_id"}
    assert order["order_data"]["designImage"].startswith("data:image/png;base64,")
    assert b'"payment_amount":19.99' in acked[0][1]
    assert paid["type"] == "event" and paid["event"] == "payment.completed"
    with receiver.lock:  # two failures, then the one 200, for each event; nothing after
        codes = [(h["X-Hub-Event-Id"], c) for h, _, c in receiver.requests]
    assert codes == [(f"{sid}:6", 500)] * 2 + [(f"{sid}:6", 200)] + \
        [(f"{sid}:7", 500)] * 2 + [(f"{sid}:7", 200)]
    await asyncio.sleep(0.5)
    assert len(receiver.requests) == 6
    log = server.log.read_text()  # type: ignore[union-attr]
    assert f"webhook {sid}:6 to {receiver.url} got 500" in log  # an operator can see it


async def test_retries_survive_a_restart(fresh_hub) -> None:  # type: ignore[no-untyped-def]
    receiver = Receiver(fail_first=10**6)  # down until the test says otherwise
    try:
        server: HubServer = fresh_hub(HUB_WEBHOOK_BASE_S="0.1")
        key, secret = add_legacy_machine(server, "VM_LEGACY_2", receiver.url)
        async with Api(server) as api:
            sid = await api.new_session("VM_LEGACY_2", key)
            assert (await api.cancel(sid, key)).status_code == 200
            for _ in range(100):
                if receiver.requests:
                    break
                await asyncio.sleep(0.05)
            assert receiver.requests and not receiver.acked()
        server.stop(signal.SIGKILL)
        receiver.fail_first = 0
        server.start()
        acked = await receiver.wait_acked(1)
        assert [h["X-Hub-Event-Id"] for h, _ in acked] == [f"{sid}:2"]
        check_signature(acked[0][0], acked[0][1], secret)
        assert orjson.loads(acked[0][1])["event"] == "session.cancelled"
    finally:
        receiver.close()


async def test_machines_without_callback_get_no_webhooks(keys_hub: HubServer, receiver: Receiver) -> None:
    key = keys_hub.add_machine("VM_NO_HOOK")
    async with Api(keys_hub) as api:
        sid, _ = await api.to_pending("VM_NO_HOOK", key)
        await api.confirm(sid, key, "TXN_NO_HOOK")
    await asyncio.sleep(0.5)
    assert receiver.requests == []


async def test_one_attempt_in_flight_per_machine_in_order(fresh_hub) -> None:  # type: ignore[no-untyped-def]
    receiver = Receiver(delay=0.2)  # a slow endpoint: deliveries would overlap if allowed
    try:
        server: HubServer = fresh_hub(HUB_WEBHOOK_BASE_S="0.1")
        key, _ = add_legacy_machine(server, "VM_LEGACY_3", receiver.url)
        async with Api(server) as api:
            sids = [await api.new_session("VM_LEGACY_3", key) for _ in range(4)]
            for sid in sids:
                assert (await api.cancel(sid, key)).status_code == 200
            acked = await receiver.wait_acked(4)
        assert [h["X-Hub-Event-Id"] for h, _ in acked] == [f"{sid}:2" for sid in sids]
        assert receiver.most_in_flight == 1
    finally:
        receiver.close()
