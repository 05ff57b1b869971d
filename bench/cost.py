"""CPU cost per event, in instructions: immune to a busy or throttled machine.

    python -m bench.cost                          # hub and floor, REST and socket ops
    python -m bench.cost --targets hub --modes ws --events 2000
    python -m bench.cost --targets hub --redis    # the hub on a private Redis

Wall-clock figures on a shared VM move with the host: on 2026-11-30 the same null route
did 18.4k req/s one day and 4.2k the next. Instructions do not. Each server runs under
``valgrind --tool=callgrind`` with instrumentation off; the load generator
(``bench.loadgen``'s hub client, in this process) sets up sessions and warms up, then
instrumentation is switched on for exactly ``--events`` order-summary events (REST calls
or socket ops, ``--concurrency`` in flight) and off again. The figure is the server's
instructions per event (``Ir``, all threads, user space; the kernel's share of a
``write`` is not counted). ``floor`` is bench/floor_hub.py: the hub's wire protocol on the
hub's stack with no hub code, so ``hub - floor`` is what the hub's own code costs.
``pysio`` and ``node`` are the peers (for Node, the JIT's code is counted as it runs;
its compiler threads too).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .loadgen import Rec, build, close_all, drain
from .run import GEN_CPU, NODE_DIR, ROOT, SERVER_CPU, Redis, _pin, free_port, wait_port


def _server(target: str, port: int, out: Path, work: Path, redis_url: str = ""
            ) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    if redis_url:
        env["HUB_REDIS_URL"] = redis_url
    env.update(HUB_DB=str(work / "hub.db"), HUB_CREATE_RATE="100000000",
               HUB_AUTH_FAIL_RATE="100000000", HUB_PAYMENT_TIMEOUT_S="3600",
               PYTHONUNBUFFERED="1")
    cmd = {"hub": [sys.executable, "-m", "hub.cli", "serve", "--port", str(port), "--open",
                   "--log-level", "warning"],
           "floor": [sys.executable, "-m", "bench.floor_hub", str(port)],
           "pysio": [sys.executable, "-m", "bench.peers.pysio_server", str(port)],
           "node": ["node", str(NODE_DIR / "server.js"), str(port)]}[target]
    return subprocess.Popen(
        ["valgrind", "--tool=callgrind", "--instr-atstart=no", "--dump-instr=no",
         f"--callgrind-out-file={out}", *cmd],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        preexec_fn=_pin(SERVER_CPU))


def _control(pid: int, *args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(pid)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)


def _instructions(out: Path) -> int:
    """Total ``Ir`` over the dump files of one run (one per thread)."""
    total = 0
    for f in out.parent.glob(out.name + "*"):
        for line in f.read_text(errors="replace").splitlines():
            if line.startswith("totals:"):
                total += int(line.split()[1])
                break
    return total


async def _drive(target_name: str, url: str, mode: str, pid: int, sessions: int,
                 events: int, conc: int) -> dict:
    rec = Rec()
    spec = {"proto": "sio" if target_name in ("pysio", "node") else "hub", "machine_urls": [url], "phone_urls": [url],
            "phone_mode": mode, "run_id": 1, "setup_concurrency": 8}
    target, http, sess = await build(spec, rec, sessions, conn_limit=conc)
    loop = asyncio.get_running_loop()

    async def fire(s: object) -> None:
        k = rec.next_k()
        if mode == "ws":
            rec.waiters[k] = w = loop.create_future()
            await target.fire(s, k)
            await w
        else:
            await target.fire(s, k)

    async def run(n: int) -> None:
        left = iter(range(n))

        async def worker(w: int) -> None:
            for i in left:
                await fire(sess[(w + i) % len(sess)])
        await asyncio.gather(*(worker(w) for w in range(conc)))
        await drain(rec, 60)

    await run(max(200, events // 5))  # warm-up, not counted
    rec.machine_frames = rec.errors = 0
    await asyncio.to_thread(_control, pid, "-i", "on")
    t0 = time.perf_counter()
    await run(events)
    wall = time.perf_counter() - t0
    await asyncio.to_thread(_control, pid, "-i", "off")
    delivered, errors = rec.machine_frames, rec.errors
    await close_all(http, sess, target)
    return {"delivered": delivered, "errors": errors, "wall_s": round(wall, 1)}


def measure(target: str, mode: str, sessions: int, events: int, conc: int,
            keep: str = "", redis: bool = False) -> dict:
    """One server under callgrind; its instructions per event in ``mode`` (rest|ws);
    ``redis``: the hub on a private Redis (the Redis server's own work is not counted)."""
    with tempfile.TemporaryDirectory(prefix="hub-cost-") as tmp:
        work = Path(tmp)
        out = work / "callgrind.out"
        port = free_port()
        private = Redis(work) if redis else None
        proc = _server(target, port, out, work, private.url if private else "")
        try:
            wait_port(port, proc, target, timeout=180)
            os.sched_setaffinity(0, GEN_CPU)
            import uvloop
            r = uvloop.run(_drive(target, f"http://127.0.0.1:{port}", mode, proc.pid, sessions,
                                  events, conc))
        finally:
            proc.terminate()
            try:
                proc.wait(120)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if private is not None:
                private.stop()
        ir = _instructions(out)
        if keep:
            for f in work.glob("callgrind.out*"):
                Path(keep).mkdir(parents=True, exist_ok=True)
                f.replace(Path(keep) / f"{target}-{mode}.{f.name}")
    return {"target": target, "mode": mode, "events": events, **r,
            "instructions": ir, "per_event": round(ir / max(r["delivered"], 1))}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.cost")
    ap.add_argument("--targets", default="hub,floor")
    ap.add_argument("--modes", default="rest,ws")
    ap.add_argument("--sessions", type=int, default=64)
    ap.add_argument("--events", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--redis", action="store_true",
                    help="the hub on a private Redis (HUB_REDIS_URL) instead of SQLite")
    ap.add_argument("--out", default="", help="write the rows as JSON here")
    ap.add_argument("--keep", default="", help="keep the callgrind files in this folder "
                    "(for callgrind_annotate --inclusive=yes)")
    args = ap.parse_args(argv)
    rows = []
    for mode in args.modes.split(","):
        for target in args.targets.split(","):
            r = measure(target, mode, args.sessions, args.events, args.concurrency,
                        args.keep, args.redis)
            rows.append(r)
            print(f"{mode:4} {target:6} {r['per_event'] / 1000:8.1f} k instructions/event "
                  f"({r['delivered']} delivered, {r['errors']} errors, {r['wall_s']} s)",
                  flush=True)
    by = {(r["target"], r["mode"]): r["per_event"] for r in rows}
    for mode in args.modes.split(","):
        if ("hub", mode) in by and ("floor", mode) in by:
            h, f = by[("hub", mode)], by[("floor", mode)]
            print(f"{mode:4} hub / floor {h / f:.2f}×; the hub's own code "
                  f"{(h - f) / 1000:.1f} k instructions/event ({100 * (h - f) / h:.0f}%)")
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
