"""The machine client (clients/machine) and phone simulator (clients/phone) against a real
hub: the guide's flow over the session socket, the machine socket and polling (socket
refused), the socket coming back, a hub restarted twice mid-flow (a confirmation retried
across it pays once), abandonment, and ``hub demo``."""

from __future__ import annotations

import asyncio
import importlib.util
import io
import subprocess
import sys
import uuid
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import zxingcpp
from PIL import Image

from .api import Api, close_code, connect, recv_json
from .server import ROOT, HubServer, free_port

for _name, _dir in (("vending_machine", "machine"), ("vending_phone", "phone")):
    if importlib.util.find_spec(_name) is None:  # not pip-installed: use the checkout
        sys.path.insert(0, str(ROOT / "clients" / _dir))

from vending_machine import (  # noqa: E402
    OrderSummary, Payment, PaymentCompleted, PaymentNotConfirmed, PhoneRegistered, Presence,
    Progress, RetryPolicy, SessionCancelled, SessionCreated, SessionEvent,
    VendingMachineController, qr_ascii,
)
from vending_phone import PhoneSimulator  # noqa: E402

FLOW = ["session.created", "phone.registered", "progress", "progress", "progress",
        "order.summary", "payment.completed"]


def machine(server: HubServer, prefix: str = "VM_CLI") -> tuple[str, str | None]:
    """A fresh machine id and its key (``None`` on an open hub)."""
    mid = f"{prefix}_{uuid.uuid4().hex[:8].upper()}"
    return mid, (None if server.open_mode else server.add_machine(mid))


def txn_for(order: OrderSummary) -> Payment:
    return Payment("card", "TXN_" + order.session_id.rsplit("_", 1)[-1],
                   data={"card_last_four": "1234", "approval_code": "ABCD123"})


async def pay_by_card(order: OrderSummary) -> Payment:
    return txn_for(order)


def flow_names(events: list[SessionEvent]) -> list[str]:
    return [e.name for e in events if not isinstance(e, Presence)]


async def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    async def loop() -> None:
        while not predicate():
            await asyncio.sleep(0.02)
    await asyncio.wait_for(loop(), timeout)


async def replay(server: HubServer, sid: str, key: str | None) -> list[dict[str, Any]]:
    """Every event of a finished session, by ``?since=0`` (ends with close 1000)."""
    ws = await connect(server, f"/api/vending/session/{sid}/ws", key, since=0)
    frames: list[dict[str, Any]] = []
    try:
        while True:
            frame = await recv_json(ws)
            frames.append(frame)
            if frame.get("event") in ("payment.completed", "session.expired",
                                      "session.cancelled"):
                break
        assert await close_code(ws) == 1000
    finally:
        await ws.close()
    return frames


async def run_flow(server: HubServer, phone_side: Callable[[PhoneSimulator, str],
                                                           Awaitable[None]] | None = None,
                   timeout: float = 30.0,
                   holder: list[VendingMachineController] | None = None, **options: Any
                   ) -> tuple[VendingMachineController, PhoneSimulator, SessionEvent]:
    """Create a session with the controller, let the phone walk it, pay by card.
    ``holder`` receives the controller at once (for phone sides that watch it)."""
    mid, key = machine(server)
    phone = PhoneSimulator(server.url)
    tasks: list[asyncio.Task[None]] = []

    async def walk(p: PhoneSimulator, qr_url: str) -> None:
        await p.walk(qr_url)

    def on_event(event: SessionEvent) -> None:
        if isinstance(event, SessionCreated):
            tasks.append(asyncio.create_task((phone_side or walk)(phone, event.qr_url)))

    options.setdefault("on_payment_request", pay_by_card)
    controller = VendingMachineController(mid, server.url, machine_key=key, on_event=on_event,
                                          show_qr=False, **options)
    if holder is not None:
        holder.append(controller)
    try:
        final = await asyncio.wait_for(controller.run_session(), timeout)
        await asyncio.gather(*tasks)
    except BaseException:
        for t in tasks:
            t.cancel()
        await controller.aclose()
        await phone.aclose()
        raise
    return controller, phone, final


async def check_paid_once(server: HubServer, controller: VendingMachineController,
                          phone: PhoneSimulator, final: SessionEvent) -> None:
    """The end every flow must reach: one payment, the phone's image, exact amounts."""
    try:
        assert isinstance(final, PaymentCompleted), final
        sid = final.session_id
        assert final.transaction_id == "TXN_" + sid.rsplit("_", 1)[-1]
        assert final.payment_method == "card" and final.payment_amount == Decimal("19.99")
        orders = [e for e in controller.history if isinstance(e, OrderSummary)]
        assert len(orders) == 1
        order = orders[0]
        assert order.design_image == phone.design_image and order.design_image is not None
        assert order.design_image_type == "image/png"
        assert order.payment_amount == Decimal("19.99") and order.currency == "GBP"
        assert order.order_data["model"] == "iPhone 15 Pro"
        assert "designImage" not in order.order_data
        assert order.order_data["design_image_url"].endswith(f"/session/{sid}/design-image")
        seqs = [e.seq for e in controller.history if not isinstance(e, Presence)]
        assert seqs == sorted(seqs) and seqs[0] == 1 and seqs[-1] == 7
        frames = replay(server, sid, controller.machine_key)
        paid = [f for f in await frames if f.get("event") == "payment.completed"]
        assert len(paid) == 1 and paid[0]["data"]["transaction_id"] == final.transaction_id
        assert sum(1 for e in controller.history if isinstance(e, PaymentCompleted)) == 1
        assert not server.errors_logged()
    finally:
        await controller.aclose()
        await phone.aclose()


async def test_full_flow_over_the_session_socket(keys_hub: HubServer, tmp_path: Path) -> None:
    async def phone_side(phone: PhoneSimulator, qr_url: str) -> None:
        await phone.scan(qr_url)
        async with phone.socket() as ws:  # the machine hears the phone come online
            await phone.design()
            await phone.order_summary()
            async for frame in phone.frames(ws):
                if frame.get("event") == "payment.completed":
                    break

    png = tmp_path / "qr.png"
    controller, phone, final = await run_flow(keys_hub, phone_side, qr_png_path=png)
    created = controller.history[0]
    assert isinstance(created, SessionCreated) and created.qr_png == png
    decoded = zxingcpp.read_barcodes(Image.open(png))
    assert [d.text for d in decoded] == [created.qr_url]
    assert "█" in qr_ascii(created.qr_url) or "▀" in qr_ascii(created.qr_url)
    assert flow_names(controller.history) == FLOW
    assert all(e.source == "socket" for e in controller.history[1:])
    assert [e.seq for e in controller.history if not isinstance(e, Presence)] == \
        [1, 2, 3, 4, 5, 6, 7]
    assert [e.user_progress for e in controller.history if isinstance(e, Progress)] == \
        ["brand_selected", "design_complete", "payment_reached"]
    assert any(isinstance(e, Presence) and e.role == "phone" and e.online
               for e in controller.history)
    assert controller.stats["polls"] == 0 and controller.stats["socket_connects"] == 1
    # the same confirmation again is the same 200; another transaction id is refused
    again = await controller.confirm_payment(txn_for(controller.order))  # type: ignore[arg-type]
    assert again["transaction_id"] == final.transaction_id  # type: ignore[attr-defined]
    try:
        await controller.confirm_payment(Payment("card", "TXN_OTHER_" + uuid.uuid4().hex[:6]))
        raise AssertionError("a second transaction id was accepted")
    except PaymentNotConfirmed as exc:
        assert exc.__cause__.status == 409  # type: ignore[union-attr]
        assert exc.__cause__.detail == "Payment already confirmed"  # type: ignore[union-attr]
    await check_paid_once(keys_hub, controller, phone, final)


async def test_full_flow_over_the_machine_socket_in_open_mode(open_hub: HubServer) -> None:
    controller, phone, final = await run_flow(open_hub, channel="machine")
    assert flow_names(controller.history) == FLOW
    assert controller.stats["polls"] == 0
    await check_paid_once(open_hub, controller, phone, final)


async def _polling_flow(server: HubServer, ws_base_url: str) -> None:
    controller, phone, final = await run_flow(
        server, ws_base_url=ws_base_url, poll_interval=0.2, reconnect_base=0.2,
        reconnect_cap=1.0)
    names = flow_names(controller.history)
    assert names[0] == "session.created" and names[-1] == "payment.completed"
    assert "phone.registered" in names and names.count("order.summary") == 1
    assert all(e.source == "poll" for e in controller.history[1:])
    assert controller.stats["socket_connects"] == 0
    assert controller.stats["socket_failures"] >= 1 and controller.stats["polls"] >= 2
    await check_paid_once(server, controller, phone, final)


async def test_polling_when_the_socket_port_refuses(keys_hub: HubServer) -> None:
    await _polling_flow(keys_hub, f"ws://127.0.0.1:{free_port()}")


async def test_polling_when_the_socket_path_is_wrong(keys_hub: HubServer) -> None:
    await _polling_flow(keys_hub, keys_hub.ws + "/blocked")


class Proxy:
    """A TCP forwarder to the hub that can be switched on late and cut (a socket path
    that is down first, then up, then drops)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
                      ) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self.writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    def cut(self) -> None:
        for w in self.writers:
            w.transport.abort()
        self.writers.clear()

    async def stop(self) -> None:
        self.cut()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


async def test_back_to_the_socket_when_it_can_be_held(keys_hub: HubServer) -> None:
    proxy = Proxy(keys_hub.port)
    steps: dict[str, asyncio.Event] = {k: asyncio.Event() for k in ("socket_up", "dropped")}

    async def phone_side(phone: PhoneSimulator, qr_url: str) -> None:
        await phone.scan(qr_url)
        await phone.progress("brand_selected")
        await wait_for(lambda: any(isinstance(e, Progress) for e in ctl().history))
        await proxy.start()  # the socket path comes up: the client goes back to it
        await steps["socket_up"].wait()
        await phone.progress("design_complete")
        await wait_for(lambda: ctl().last_seq == 4)
        proxy.cut()  # the socket drops: the client resumes with ?since=4
        await phone.progress("payment_reached")
        await phone.order_summary()

    holder: list[VendingMachineController] = []

    def ctl() -> VendingMachineController:
        return holder[0]

    async def watch_transport() -> None:
        await wait_for(lambda: bool(holder) and holder[0].transport == "socket", 15)
        steps["socket_up"].set()

    watcher = asyncio.create_task(watch_transport())
    try:
        controller, phone, final = await run_flow(
            keys_hub, phone_side, holder=holder, ws_base_url=f"ws://127.0.0.1:{proxy.port}",
            poll_interval=0.2, reconnect_base=0.2, reconnect_cap=0.4, stable_after=0.1)
    finally:
        watcher.cancel()
        await proxy.stop()
    by_seq = {e.seq: e for e in controller.history if not isinstance(e, Presence)}
    assert by_seq[3].source == "poll" and isinstance(by_seq[3], Progress)
    assert [by_seq[s].source for s in (4, 5, 6, 7)] == ["socket"] * 4
    assert [by_seq[s].name for s in (4, 5, 6, 7)] == FLOW[3:]
    assert controller.stats["socket_connects"] >= 2  # up, dropped, resumed
    await check_paid_once(keys_hub, controller, phone, final)


async def test_hub_restarted_mid_flow_resumes_and_pays_once(fresh_hub) -> None:  # type: ignore[no-untyped-def]
    server: HubServer = fresh_hub()
    handler_called, release = asyncio.Event(), asyncio.Event()

    async def slow_card(order: OrderSummary) -> Payment:
        handler_called.set()
        await release.wait()  # the test stops the hub while the card is being read
        return txn_for(order)

    async def phone_side(phone: PhoneSimulator, qr_url: str) -> None:
        await phone.scan(qr_url)
        await phone.progress("brand_selected")
        await wait_for(lambda: holder[0].last_seq == 3)
        await asyncio.to_thread(server.stop)  # restart 1: in the middle of the design
        await asyncio.to_thread(server.start)
        # the phone goes on at once; the machine hears it by its resumed socket
        await phone.progress("design_complete")
        await phone.progress("payment_reached")
        await phone.order_summary()

    holder: list[VendingMachineController] = []

    async def on_payment(order: OrderSummary) -> Payment:
        return await slow_card(order)

    async def restart_during_confirm() -> None:
        await handler_called.wait()
        await asyncio.to_thread(server.stop)  # restart 2: the confirmation meets a dead hub
        release.set()
        await wait_for(lambda: holder[0].http.attempts["POST confirm-payment"] >= 2)
        await asyncio.to_thread(server.start)

    chaos = asyncio.create_task(restart_during_confirm())
    try:
        controller, phone, final = await run_flow(
            server, phone_side, timeout=45, holder=holder, on_payment_request=on_payment,
            poll_interval=30.0, reconnect_base=0.1, reconnect_cap=0.4, stable_after=0.1,
            confirm_retry=RetryPolicy(attempts=None, deadline_s=30, base_s=0.1, cap_s=0.3))
    except BaseException:
        chaos.cancel()
        raise
    await chaos  # the confirmation may get through before start() has seen /health
    # nothing missed, nothing twice: every event once, in order, by the resumed socket
    # (the payment may come by the poll the controller makes right after its confirmation
    # when the socket is still down)
    assert flow_names(controller.history) == FLOW
    assert [e.seq for e in controller.history if not isinstance(e, Presence)] == \
        [1, 2, 3, 4, 5, 6, 7]
    assert all(e.source == "socket" for e in controller.history[1:-1]), \
        [(e.name, e.source) for e in controller.history]
    assert controller.http.attempts["POST confirm-payment"] >= 2
    assert controller.stats["socket_connects"] >= 2  # resumed after restart 1
    await check_paid_once(server, controller, phone, final)


async def test_abandoned_session_is_cancelled(keys_hub: HubServer) -> None:
    mid, key = machine(keys_hub)
    phone = PhoneSimulator(keys_hub.url)
    events: list[SessionEvent] = []
    async with VendingMachineController(mid, keys_hub.url, machine_key=key, show_qr=False,
                                        qr_out=io.StringIO(), on_event=events.append,
                                        on_payment_request=pay_by_card) as controller:
        created = await controller.generate_qr_session()
        await phone.scan(created.qr_url)  # then the shopper walks away
        final = await asyncio.wait_for(controller.monitor_session(abandon_after=0.5), 15)
        assert isinstance(final, SessionCancelled) and final.status == "cancelled"
        assert [e.name for e in events if not isinstance(e, Presence)] == \
            ["session.created", "phone.registered", "session.cancelled"]
        assert isinstance(events[1], PhoneRegistered)
        async with Api(keys_hub) as api:
            assert (await api.status(created.session_id, key)).json()["status"] == "cancelled"
            r = await api.order(created.session_id, phone.phone_token)
            assert r.status_code == 410 and r.json()["detail"] == "Session has been cancelled"
    await phone.aclose()


async def test_attach_after_a_kiosk_restart(keys_hub: HubServer) -> None:
    mid, key = machine(keys_hub)
    asked: list[str] = []

    async def card(order: OrderSummary) -> Payment:
        asked.append(order.order_id)
        return txn_for(order)

    async with Api(keys_hub) as api:
        paid, _ = await api.to_pending(mid, key)
        assert (await api.confirm(paid, key, "TXN_" + paid.rsplit("_", 1)[-1])).status_code \
            == 200
        pending, _ = await api.to_pending(mid, key)
    async with VendingMachineController(mid, keys_hub.url, machine_key=key, show_qr=False,
                                        on_payment_request=card,
                                        reconnect_base=0.05, poll_interval=0.2) as controller:
        # a paid session replays in full, and its old order asks for no payment
        assert (await controller.attach(paid))["status"] == "payment_completed"
        final = await asyncio.wait_for(controller.monitor_session(), 10)
        assert isinstance(final, PaymentCompleted) and final.source == "socket"
        assert flow_names(controller.history) == FLOW[1:] and asked == []
        # told it has seen everything: the socket closes at once, a poll tells the end
        await controller.attach(paid, last_seq=7)
        final = await asyncio.wait_for(controller.monitor_session(), 10)
        assert isinstance(final, PaymentCompleted) and final.source == "poll"
        assert final.transaction_id == "TXN_" + paid.rsplit("_", 1)[-1]
        # a session still waiting for its payment gets it
        await controller.attach(pending, last_seq=5)
        final = await asyncio.wait_for(controller.monitor_session(), 10)
        assert isinstance(final, PaymentCompleted) and len(asked) == 1
        assert flow_names(controller.history) == ["order.summary", "payment.completed"]


def test_hub_demo_runs_the_whole_flow() -> None:
    out = subprocess.run([sys.executable, "-m", "hub.cli", "demo", "--pause", "0.05"],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    lines = out.stdout.splitlines()
    assert any("█" in line or "▀" in line for line in lines)  # the QR, in the terminal
    for name in FLOW[1:]:
        assert any(line.startswith("[machine]") and name in line for line in lines), name
    assert any("payment.completed" in line for line in lines)
    assert "demo complete: payment.completed" in out.stdout
