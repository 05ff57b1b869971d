"""The ``hub`` command: ``hub serve``, ``hub machines add|list`` and ``hub demo`` (argparse)."""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
from urllib.parse import urlsplit

from .clock import iso, now_ms
from .config import Settings
from .ids import is_machine_id
from .machines import Machine, key_hash, new_machine_key
from .prices import PriceList

__all__ = ["main"]


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    if args.open:
        os.environ["HUB_AUTH"] = "open"
    settings = Settings.from_env()  # fail fast, in one line, on a bad HUB_* value
    try:
        PriceList.load(settings.prices)
    except (OSError, ValueError) as exc:
        raise ValueError(f"HUB_PRICES: cannot use {settings.prices!r} ({exc})") from None
    if not settings.redis_url:
        folder = os.path.dirname(os.path.abspath(settings.db))
        if not os.path.isdir(folder):
            raise ValueError(f"HUB_DB: folder {folder!r} does not exist")
    uvicorn.run(
        "hub.app:create_app", factory=True, host=args.host, port=args.port,
        log_level=args.log_level, proxy_headers=False,  # HUB_TRUSTED_PROXIES decides
        ws_max_size=64 * 1024, ws_ping_interval=20.0, ws_ping_timeout=20.0,
        ws_per_message_deflate=settings.ws_deflate,
        timeout_graceful_shutdown=10)
    return 0


async def _machines(args: argparse.Namespace) -> int:
    from .app import make_backends

    backends = make_backends(Settings.from_env())
    store = backends.store
    await store.open()
    try:
        if args.action == "list":
            for m in await store.machines():
                print(f"{m.machine_id}\t{m.name}\t{m.location or ''}\t{m.callback_url or ''}"
                      f"\t{'key' if m.key_hash else 'no key'}\t{iso(m.created_at)}")
            return 0
        if not is_machine_id(args.id):
            print("error: Invalid machine ID format (1..50 of A-Z a-z 0-9 _ -)",
                  file=sys.stderr)
            return 2
        if args.callback_url is not None:
            url = urlsplit(args.callback_url)
            if url.scheme not in ("http", "https") or not url.hostname:
                print("error: --callback-url must be an http:// or https:// URL with a host",
                      file=sys.stderr)
                return 2
        old = await store.machine(args.id)
        if old is not None and not args.rotate_key:
            print(f"error: machine {args.id} is already registered; add --rotate-key to "
                  "give it a new key (its old key stops working)", file=sys.stderr)
            return 2
        key = new_machine_key()
        callback = args.callback_url or (old.callback_url if old else None)
        secret = (old.webhook_secret if old and old.callback_url == callback else None) \
            or (secrets.token_hex(32) if callback else None)
        await store.add_machine(Machine(
            args.id, args.name or (old.name if old else args.id),
            args.location or (old.location if old else None), key_hash(key),
            old.created_at if old else now_ms(), callback, secret))
        print(f"machine_id: {args.id}")
        print(f"machine_key: {key}")
        if secret:
            print(f"webhook_secret: {secret}")
        print("Keep the key now: the hub stores only its hash and cannot show it again.",
              file=sys.stderr)
        return 0
    finally:
        await store.close()
        await backends.aclose()


def parser() -> argparse.ArgumentParser:
    """The argument parser of the ``hub`` command."""
    p = argparse.ArgumentParser(prog="hub", description="Vending Hub server and admin.")
    sub = p.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve the hub (uvicorn)")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (default 127.0.0.1; 0.0.0.0 for all)")
    serve.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")),
                       help="port (default $PORT, else 8000)")
    serve.add_argument("--open", action="store_true",
                       help="HUB_AUTH=open: check no credentials (local trials only)")
    serve.add_argument("--log-level", default="info",
                       choices=("critical", "error", "warning", "info", "debug"),
                       help="default info")
    machines = sub.add_parser("machines", help="register and list machines")
    msub = machines.add_subparsers(dest="action", required=True)
    add = msub.add_parser("add", help="register a machine and print its key once")
    add.add_argument("id", help="machine id: 1..50 of A-Z a-z 0-9 _ -")
    add.add_argument("--name", help="shown as machine_info.name (default: the id)")
    add.add_argument("--location", help="shown as machine_info.location")
    add.add_argument("--callback-url",
                     help="legacy machines: POST order summaries and terminal events "
                          "there, signed with a webhook secret printed once")
    add.add_argument("--rotate-key", action="store_true",
                     help="the machine exists: give it a new key (the old one stops "
                          "working within 10 s); other fields are kept unless given")
    msub.add_parser("list", help="list registered machines")
    demo = sub.add_parser(
        "demo", help="walk the guide's flow: a hub, a simulated machine and phone",
        description="Start a hub (temporary SQLite, free port), a simulated machine "
                    "(clients/machine) and phone (clients/phone), and print each event as "
                    "the machine receives it. The clients are not in the hub wheel: run it "
                    "from a checkout, or pip install -e clients/machine -e clients/phone.")
    from .demo import add_arguments
    add_arguments(demo)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``hub`` console script."""
    args = parser().parse_args(argv)
    try:
        if args.command == "serve":
            return _serve(args)
        if args.command == "demo":
            from .demo import run
            return run(args)
        return asyncio.run(_machines(args))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
