"""Profile the hub with py-spy under the bench's load: top functions by own and total time.

    python -m bench.profile                      # push-1k: 1k sessions, 500 events/s
    python -m bench.profile --scenario throughput --seconds 15

Starts one hub (pinned and prioritised as in ``bench.run``), drives it with
``bench.loadgen`` and samples it with ``py-spy record --format raw`` (only the thread holding
the GIL, so the figures are shares of the Python CPU time) during the measured window. Writes ``bench/results/profile-<scenario>.txt``
(collapsed stacks, for flame graphs) and prints the top frames.
"""

from __future__ import annotations

import argparse
import collections
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from .run import BENCH, GEN_CPU, ROOT, Launcher, Redis, _pin


#: layers of the hub's stack, matched on the leaf frame in order (first match wins)
LAYERS = [
    ("SQL + state decode on the SQLite worker thread",
     lambda st, leaf: "concurrent/futures/thread.py" in st and "hub/store/sqlite.py" in st),
    ("hop to the SQLite thread (submit, wrap_future, set_state, worker)",
     lambda st, leaf: any(x in leaf for x in (
         "ThreadPoolExecutor.submit", "wrap_future", "_call_set_state", "_call_check_cancel",
         "SqliteStore._run", "_chain_future", "Future.add_done_callback", "_WorkItem",
         "_worker"))),
    ("WebSocket sends (uvicorn websockets)", lambda st, leaf: "websockets" in leaf),
    ("channel fan-out (hub/channels.py)", lambda st, leaf: "hub/channels.py" in leaf),
    ("uvicorn HTTP parse and response", lambda st, leaf: "httptools_impl" in leaf),
    ("starlette routing and middleware",
     lambda st, leaf: "starlette/" in leaf or "hub/http/middleware" in leaf),
    ("hub service, lifecycle, schemas, ids, codec", lambda st, leaf: "hub/" in leaf),
    ("event loop (uvloop)", lambda st, leaf: leaf.startswith("Runner.run")),
]


def layers(collapsed: Path) -> str:
    """Share of samples per layer of the stack (by leaf frame)."""
    counts: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        total += n
        leaf = stack.rsplit(";", 1)[-1]
        for name, match in LAYERS:
            if match(stack, leaf):
                counts[name] += n
                break
        else:
            counts["other (stdlib called by the hub: uuid, dataclasses, datetime, …)"] += n
    return "\n".join(f"  {100 * c / total:5.1f}%  {name}" for name, c in counts.most_common())


def top(collapsed: Path, n: int = 25) -> str:
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        c = int(count)
        samples += c
        frames = [f for f in stack.split(";") if f]
        if frames:
            own[_short(frames[-1])] += c
        for f in {_short(f) for f in frames}:
            total[f] += c
    out = [f"{samples} samples", "", "by layer:", layers(collapsed), "",
           "own time (leaf frame):"]
    out += [f"  {100 * c / samples:5.1f}%  {f}" for f, c in own.most_common(n)]
    out += ["", "total time (frame on the stack):"]
    out += [f"  {100 * c / samples:5.1f}%  {f}" for f, c in total.most_common(n)]
    return "\n".join(out)


def _short(frame: str) -> str:
    """``fn (path/to/site-packages/pkg/mod.py:12)`` → ``fn (pkg/mod.py:12)``."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    for marker in ("site-packages/", "/work/main/", "lib/python3."):
        if marker in where:
            where = where.split(marker, 1)[1]
            if marker == "lib/python3.":
                where = "stdlib/" + where.split("/", 1)[-1]
    where = where.rsplit(":", 1)[0]  # per function, not per line
    return f"{name} ({where})"


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.profile")
    ap.add_argument("--scenario", default="push", choices=("push", "throughput"))
    ap.add_argument("--sessions", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--rate", type=int, default=500)
    ap.add_argument("--phone-mode", default="rest", choices=("rest", "ws"),
                    help="the phone's event: a REST call or a socket op")
    ap.add_argument("--redis", action="store_true",
                    help="the hub on a private Redis (HUB_REDIS_URL) instead of SQLite")
    ap.add_argument("--native", action="store_true",
                    help="sample C frames too (py-spy --native; pauses the hub to sample)")
    args = ap.parse_args()
    pyspy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    out_dir = BENCH / "results"
    out_dir.mkdir(exist_ok=True)
    name = args.scenario + ("-ws" if args.phone_mode == "ws" else "") + \
        ("-redis" if args.redis else "")
    raw = out_dir / f"profile-{name}.txt"
    with tempfile.TemporaryDirectory(prefix="hub-prof-") as tmp:
        redis = Redis(Path(tmp)) if args.redis else None
        launcher = Launcher(Path(tmp), redis, Path(tmp) / "server.log")
        servers = launcher.start("hub", 1, {"HUB_REDIS_URL": redis.url} if redis else None)
        try:
            spec = {"scenario": args.scenario, "proto": "hub", "pids": servers.pids,
                    "run_id": 1, "sessions": args.sessions, "rate": args.rate,
                    "duration": args.seconds + 4, "concurrency": 64,
                    "phone_mode": args.phone_mode,
                    "machine_urls": servers.urls, "phone_urls": servers.urls}
            gen = subprocess.Popen([sys.executable, "-m", "bench.loadgen", json.dumps(spec)],
                                   cwd=ROOT, stdout=subprocess.PIPE, text=True,
                                   preexec_fn=_pin(GEN_CPU))
            # wait for setup (sockets open, first orders) and the 1 s warm-up
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and gen.poll() is None:
                conns = len(psutil.Process(servers.pids[0]).net_connections("tcp"))
                if conns >= 2 * args.sessions:
                    break
                time.sleep(0.5)
            time.sleep(3)
            spy = subprocess.run([pyspy, "record", "--pid", str(servers.pids[0]), "--format",
                                  "raw", "--rate", "200", "--duration", str(int(args.seconds)),
                                  "--output", str(raw), "--gil",
                                  "--native" if args.native else "--nonblocking"],
                                 capture_output=True, text=True)
            if spy.returncode != 0:
                print(spy.stderr, file=sys.stderr)
            result = gen.communicate(timeout=300)[0]
        finally:
            servers.stop()
            if redis is not None:
                redis.stop()
    print(json.dumps(json.loads(result.strip().splitlines()[-1]).get("latency_ms")))
    report = top(raw)
    (out_dir / f"profile-{name}-top.txt").write_text(report + "\n")
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
