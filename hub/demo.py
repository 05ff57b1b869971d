"""``hub demo``: a hub, a simulated machine and a simulated phone walk the guide's flow.

It starts ``hub serve`` (embedded store in a temporary directory, free port, ``keys``
mode with a freshly registered machine, or ``--open``), then runs the machine client
(:mod:`vending_machine`, ``clients/machine``) and the phone simulator
(:mod:`vending_phone`, ``clients/phone``): the machine creates a session and prints its
QR code, the phone scans it, designs and sends its order, the machine shows the order,
takes a (simulated) card payment and confirms it. Each event is printed as the machine
receives it. Exit status 0 when the session ends paid.

The two clients are not part of the hub wheel: run it from a checkout (this module adds
``clients/machine`` and ``clients/phone`` to ``sys.path`` when they are not installed),
or ``pip install -e clients/machine -e clients/phone`` first.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

__all__ = ["add_arguments", "run"]

ROOT = Path(__file__).resolve().parent.parent
#: where the clients live in a checkout: beside this package (editable install) or in
#: the working directory (``pip install .`` then ``hub demo`` from the checkout)
CLIENTS = tuple(base / "clients" / name for base in (ROOT, Path.cwd())
                for name in ("machine", "phone"))


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``hub demo``."""
    p.add_argument("--open", action="store_true",
                   help="run the hub in open mode (default: keys mode, machine registered)")
    p.add_argument("--port", type=int, default=0, help="hub port (default: a free one)")
    p.add_argument("--channel", choices=("session", "machine", "poll"), default="session",
                   help="how the machine listens: session socket (default), machine "
                        "socket, or polling GET status")
    p.add_argument("--machine-id", default="DEMO_VM_001")
    p.add_argument("--pause", type=float, default=0.3,
                   help="seconds between the phone's steps (default 0.3)")
    p.add_argument("--no-qr", action="store_true", help="do not print the QR code")
    p.add_argument("--qr-png", help="also write the QR code as a PNG file there")
    p.add_argument("--timeout", type=float, default=120.0,
                   help="give up (exit 1) when the flow has not ended after this many seconds")


def _import_clients() -> None:
    """Make ``vending_machine`` and ``vending_phone`` importable from a checkout."""
    for path in CLIENTS:
        if path.is_dir() and str(path) not in sys.path:
            sys.path.append(str(path))
    try:
        import vending_machine  # noqa: F401
        import vending_phone  # noqa: F401
    except ImportError as exc:
        raise SystemExit(
            f"hub demo needs the machine and phone clients ({exc}): run it from a "
            "checkout of the repository, or pip install -e clients/machine -e "
            "clients/phone") from None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Hub:
    """A ``hub serve`` child process with its own temporary database."""

    def __init__(self, tmp: Path, port: int, open_mode: bool) -> None:
        self.port, self.open_mode = port, open_mode
        self.url = f"http://127.0.0.1:{port}"
        self.log = tmp / "hub.log"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
        self.env.update({"HUB_DB": str(tmp / "hub.db"),
                         "HUB_AUTH": "open" if open_mode else "keys",
                         "PYTHONPATH": os.pathsep.join(
                             [str(ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p])})
        self.proc: subprocess.Popen[bytes] | None = None

    def cli(self, *args: str) -> str:
        out = subprocess.run([sys.executable, "-m", "hub.cli", *args], env=self.env,
                             capture_output=True, text=True, timeout=30)
        if out.returncode:
            raise SystemExit(f"hub {' '.join(args)} failed: {out.stderr.strip()}")
        return out.stdout

    def start(self) -> None:
        args = [sys.executable, "-m", "hub.cli", "serve", "--port", str(self.port),
                "--log-level", "warning"]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(args, env=self.env, stdout=log,
                                         stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"hub serve exited:\n{self.log.read_text()[-2000:]}")
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise SystemExit("hub serve did not answer /health within 20 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def _say(who: str, text: str) -> None:
    print(f"[{who}] {text}", flush=True)


async def _flow(args: argparse.Namespace, hub: _Hub, key: str | None) -> int:
    from vending_machine import (
        OrderSummary, Payment, PaymentCompleted, SessionCreated, SessionEvent,
        VendingMachineController,
    )
    from vending_phone import PhoneSimulator

    pause = max(0.0, args.pause)
    phone = PhoneSimulator(hub.url)
    phone_task: asyncio.Task[None] | None = None

    async def phone_side(qr_url: str) -> None:
        await asyncio.sleep(pause)
        reg = await phone.scan(qr_url)
        _say("phone  ", f"scanned the QR, registered: user_progress={reg['user_progress']}")
        async with phone.socket() as ws:
            for step in ("brand_selected", "design_complete", "payment_reached"):
                await asyncio.sleep(pause)
                await phone.progress(step)
                _say("phone  ", f"progress {step}")
            await asyncio.sleep(pause)
            out = await phone.order_summary()
            _say("phone  ", f"Pay via Machine: order {out['order_id']} "
                            f"{out['payment_amount']} {out['currency']}")
            async for frame in phone.frames(ws, timeout=30):
                if frame.get("event") == "payment.completed":
                    _say("phone  ", "sees payment.completed: order confirmed")
                    break

    def on_event(event: SessionEvent) -> None:
        nonlocal phone_task
        _say("machine", f"({event.source}) {event.describe()}")
        if isinstance(event, SessionCreated):
            if event.qr_png:
                _say("machine", f"QR code written to {event.qr_png}")
            phone_task = asyncio.create_task(phone_side(event.qr_url))
        elif isinstance(event, OrderSummary):
            _say("machine", f"shows: {event.title} ({event.order_data.get('color')}, "
                            f"{event.order_data.get('template', {}).get('name')})")

    async def take_payment(order: OrderSummary) -> Payment:
        _say("machine", f"taking {order.payment_amount} {order.currency} by card …")
        await asyncio.sleep(pause)
        txn = "DEMO_TXN_" + order.session_id.rsplit("_", 1)[-1]
        return Payment("card", txn, data={"card_last_four": "4242", "approval_code": "DEMO01"})

    controller = VendingMachineController(
        args.machine_id, hub.url, machine_key=key, location="Demo Mall - Level 1",
        on_event=on_event, on_payment_request=take_payment, channel=args.channel,
        poll_interval=1.0, show_qr=not args.no_qr, qr_png_path=args.qr_png)
    loop = asyncio.get_running_loop()
    phone_failed: asyncio.Future[None] = loop.create_future()

    def phone_done(task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None and not phone_failed.done():
            phone_failed.set_exception(task.exception())  # type: ignore[arg-type]

    session = asyncio.create_task(controller.run_session())
    try:
        while phone_task is None and not session.done():
            await asyncio.sleep(0.01)
        if phone_task is not None:
            phone_task.add_done_callback(phone_done)
        done, _ = await asyncio.wait({session, phone_failed}, timeout=args.timeout,
                                     return_when=asyncio.FIRST_COMPLETED)
        if session not in done:
            why = repr(phone_failed.exception()) if phone_failed.done() else \
                f"no end within {args.timeout} s"
            print(f"demo failed: {why}", flush=True)
            return 1
        final = session.result()
        if phone_task is not None:
            await asyncio.wait_for(phone_task, 30)
        cleanup: dict[str, Any] = await controller.http.cancel(final.session_id)
        _say("machine", f"DELETE after the sale (legacy cleanup) → status {cleanup['status']}")
        ok = isinstance(final, PaymentCompleted)
        print(f"demo {'complete' if ok else 'ended without payment'}: {final.name} "
              f"(socket connects {controller.stats['socket_connects']}, "
              f"polls {controller.stats['polls']})", flush=True)
        return 0 if ok else 1
    finally:
        for task in (session, phone_task):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        await controller.aclose()
        await phone.aclose()


def run(args: argparse.Namespace) -> int:
    """Run the demo; return the exit status (0: the session was paid)."""
    _import_clients()
    with tempfile.TemporaryDirectory(prefix="hub-demo-") as tmp:
        hub = _Hub(Path(tmp), args.port or _free_port(), args.open)
        key: str | None = None
        if not args.open:
            out = hub.cli("machines", "add", args.machine_id, "--name", "Demo Kiosk",
                          "--location", "Demo Mall - Level 1")
            key = next(line.split(": ", 1)[1] for line in out.splitlines()
                       if line.startswith("machine_key: "))
        hub.start()
        mode = "open mode" if args.open else f"keys mode, machine {args.machine_id} registered"
        print(f"hub: {hub.url} ({mode}; embedded SQLite in {tmp}; "
              f"machine listens by {args.channel})", flush=True)
        try:
            return asyncio.run(_flow(args, hub, key))
        except KeyboardInterrupt:
            return 130
        finally:
            hub.stop()
