"""One command: the hub and its two peers in turn, every scenario, table + JSON + PNG.

    python -m bench.run --quick          # a few minutes on 2 cores
    python -m bench.run --full           # longer windows, 1k/5k/10k sessions, ~20k idle
    python -m bench.run --quick --only push-1k,poll --targets hub

Every server process (hub instances, peers, the private Redis) is pinned to CPU 0 and the
load generator (``bench.loadgen``, one fresh process per run) to CPU 1, so the two never
compete for a core; the CPU each used is reported. Results go to ``bench/results/``:
``<mode>.json`` (everything), ``<mode>.md`` (the tables), ``<mode>-latency.png``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
NODE_DIR = BENCH / "peers" / "node"
SERVER_CPU, GEN_CPU = {0}, {1}
TARGETS = ("hub", "node", "pysio")
#: every server the plan can start: the targets, and the throughput rows' "floor" (the
#: hub's protocol on the hub's stack with no hub code: bench/floor_hub.py)
SERVERS = ("hub", "floor", "node", "pysio")
NICE = -15  #: every benchmark process runs at this priority (root); the same for all targets
LABEL = {"hub": "hub", "node": "socket.io (Node)", "pysio": "python-socketio",
         "floor": "floor: stack, no hub (bench/floor_hub.py)"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pin(cpus: set[int]) -> Any:
    def pre() -> None:
        os.setsid()
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, cpus)
        boost()

    return pre


def boost() -> None:
    """Ask for CPU priority (root): the machine may be shared with other work. setsid()
    gives each process its own scheduler autogroup, so the group's nice is set too."""
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, 0, NICE)
    with contextlib.suppress(OSError), open("/proc/self/autogroup", "w") as f:
        f.write(str(NICE))


def wait_port(port: int, proc: subprocess.Popen, what: str, timeout: float = 30) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on {port}")


@dataclass
class Servers:
    """The processes of one run; stopped (SIGTERM, then SIGKILL) at the end."""

    procs: list[subprocess.Popen] = field(default_factory=list)
    urls: list[str] = field(default_factory=list)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)


class Redis:
    """A private redis-server on a free port (no persistence), pinned with the servers."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(workdir), "--protected-mode", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=_pin(SERVER_CPU))
        wait_port(self.port, self.proc, "redis-server")
        time.sleep(0.2)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def flush(self) -> None:
        subprocess.run(["redis-cli", "-p", str(self.port), "FLUSHALL"], check=True,
                       stdout=subprocess.DEVNULL)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


class Launcher:
    def __init__(self, workdir: Path, redis: Redis | None, log: Path) -> None:
        self.workdir, self.redis, self.log = workdir, redis, log
        self.n = 0
        self.gc_log = workdir / "gc"

    def gc_pauses(self, pids: list[int], since: float) -> dict | None:
        """GC pauses the servers logged since ``since`` (epoch s): count, total, max."""
        pauses = []
        for pid in pids:
            f = Path(f"{self.gc_log}.{pid}")
            if f.exists():
                for line in f.read_text().splitlines():
                    t, gen, ms = line.split()
                    if float(t) >= since:
                        pauses.append((int(gen), float(ms)))
        if not any(Path(f"{self.gc_log}.{pid}").exists() for pid in pids):
            return None
        return {"count": len(pauses), "total_ms": round(sum(p[1] for p in pauses), 1),
                "max_ms": max((p[1] for p in pauses), default=0.0),
                "gen2": sum(1 for p in pauses if p[0] == 2)}

    def _popen(self, args: list[str], env: dict[str, str] | None = None,
               cwd: Path = ROOT) -> subprocess.Popen:
        env = dict(os.environ if env is None else env)
        if args[0] == sys.executable:  # Python servers log their GC pauses
            env["PYTHONPATH"] = str(BENCH / "gcprobe")
            env["BENCH_GC_LOG"] = str(self.gc_log)
        with open(self.log, "ab") as log:
            return subprocess.Popen(args, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                    preexec_fn=_pin(SERVER_CPU))

    def start(self, target: str, instances: int, extra_env: dict[str, str] | None = None
              ) -> Servers:
        self.n += 1
        if instances > 1 and self.redis is not None:
            self.redis.flush()
        redis_url = self.redis.url if (instances > 1 and self.redis) else None
        servers = Servers()
        db = self.workdir / f"hub{self.n}.db"
        for _ in range(instances):
            port = free_port()
            if target == "hub":
                env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
                env.update(HUB_DB=str(db), HUB_CREATE_RATE="100000000",
                           HUB_AUTH_FAIL_RATE="100000000", HUB_PAYMENT_TIMEOUT_S="3600",
                           PYTHONUNBUFFERED="1")
                if redis_url:
                    env["HUB_REDIS_URL"] = redis_url
                env.update(extra_env or {})
                p = self._popen([sys.executable, "-m", "hub.cli", "serve", "--port", str(port),
                                 "--open", "--log-level", "warning"], env)
            elif target == "node":
                p = self._popen(["node", str(NODE_DIR / "server.js"), str(port)]
                                + ([redis_url] if redis_url else []))
            elif target == "pysio":
                p = self._popen([sys.executable, "-m", "bench.peers.pysio_server", str(port)]
                                + ([redis_url] if redis_url else []))
            elif target == "null":
                p = self._popen([sys.executable, "-m", "bench.null_server", str(port)])
            elif target == "floor":
                p = self._popen([sys.executable, "-m", "bench.floor_hub", str(port)])
            else:
                raise ValueError(target)
            servers.procs.append(p)
            servers.urls.append(f"http://127.0.0.1:{port}")
            wait_port(port, p, target)
            if target == "hub":
                _wait_health(servers.urls[-1])
        return servers


def _wait_health(url: str) -> None:
    end = time.monotonic() + 20
    while time.monotonic() < end:
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(url + "/ready", timeout=1) as r:
                if r.status == 200:
                    return
        time.sleep(0.05)
    raise RuntimeError("hub not ready")


def loadgen(spec: dict, timeout: float) -> dict:
    """Run one ``bench.loadgen`` process (pinned to the generator's CPU); its JSON."""
    with tempfile.NamedTemporaryFile(prefix="loadgen-", suffix=".json") as f:
        spec = {**spec, "out": f.name}
        out = subprocess.run([sys.executable, "-m", "bench.loadgen", json.dumps(spec)],
                             cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                             preexec_fn=_pin(GEN_CPU))
        text = Path(f.name).read_text()
    if out.returncode != 0:
        err = out.stderr
        i = err.rfind("Traceback")
        raise RuntimeError(f"loadgen failed: {err[i:i + 3000] if i >= 0 else err[-3000:]}")
    return json.loads(text)


# -- the plan ---------------------------------------------------------------------------------
@dataclass
class Case:
    name: str  #: row name, e.g. ``push-1k``
    scenario: str  #: loadgen scenario
    instances: int = 1
    targets: tuple[str, ...] = TARGETS
    params: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    about: str = ""


def plan(full: bool) -> list[Case]:
    d = 30.0 if full else 10.0
    sizes = (1000, 5000, 10000) if full else (1000, 5000)
    cases = [Case("null", "null", targets=("null",),
                  params={"rate": 500, "duration": d, "concurrency": 32},
                  about="POST to a route that does nothing (uvicorn raw ASGI): generator floor")]
    for n in sizes:
        # 10k machines + 10k phones would be 20k sockets in one process: over the open-file
        # hard limit here (20,000), so at 10k the phones use REST only
        phones = n < 10000
        cases.append(Case(f"push-{n // 1000}k", "push",
                          params={"sessions": n, "rate": 500, "duration": d,
                                  "phone_sockets": phones},
                          about=f"embedded, one process; {n} machines on sockets, {n} phones"
                                f"{' on sockets' if phones else ' without sockets'}; each "
                                "event is a phone REST call; 500 events/s"))
    cases += [
        Case("push-1k-ws", "push", params={"sessions": 1000, "rate": 500, "duration": d,
                                           "phone_mode": "ws"},
             about="as push-1k, the phone sends a socket op instead of a REST call"),
        Case("cluster-1k", "push", instances=2,
             params={"sessions": 1000, "rate": 500, "duration": d, "split": True},
             about="two instances on Redis: machines on instance A, phones on instance B"),
        Case("throughput-1k", "throughput", targets=SERVERS,
             params={"sessions": 1000, "concurrency": 64, "duration": d * 0.8},
             about="saturation: 64 phone REST calls in flight; delivered events/s"),
        Case("throughput-1k-ws", "throughput", targets=SERVERS,
             params={"sessions": 1000, "concurrency": 64, "duration": d * 0.8,
                     "phone_mode": "ws"},
             about="saturation: 64 phone socket ops in flight"),
        Case(f"storm-{10 if full else 1}k", "storm",
             params={"sessions": 10000 if full else 1000, "rate": 1000},
             about="every machine socket drops at once (TCP abort) and reconnects at once"),
        Case(f"idle-{'20k' if full else '10k'}", "idle",
             params={"sockets": 19900 if full else 10000, "settle": 5.0 if full else 3.0},
             about="idle machine sockets held by one process (the open-file hard limit "
                   "here is 20,000 per process, so the full run holds 19,900)"),
        Case("poll-1k", "poll", targets=("hub",),
             params={"sessions": 1000, "concurrency": 32, "duration": d},
             about="legacy machines: GET status only, 32 in flight"),
        Case("expiry-1k", "expiry", targets=("hub",), env={"HUB_SESSION_MINUTE_S": "1"},
             params={"sessions": 1000, "timeout_minutes": 12},
             about="1,000 sessions with one deadline (1 'minute' = 1 s here), machine "
                   "sockets open: delay from expires_at to the pushed session.expired"),
    ]
    return cases


def hub_commit() -> str:
    """The commit the hub code was at when its server started (others may commit during a
    run; ``+dirty`` when hub/ has uncommitted changes)."""
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                         text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "hub"], cwd=ROOT,
                           capture_output=True, text=True).stdout.strip()
    return rev + ("+dirty" if dirty else "")


def run_case(case: Case, target: str, launcher: Launcher, run_id: int) -> dict:
    commit = hub_commit() if target == "hub" else None
    servers = launcher.start(target, case.instances, case.env)
    try:
        spec = {"scenario": case.scenario, "proto": "hub" if target in ("hub", "floor") else "sio",
                "pids": servers.pids, "run_id": run_id, **case.params}
        urls = servers.urls
        spec["machine_urls"] = [urls[0]]
        spec["phone_urls"] = [urls[-1]] if case.params.get("split") else [urls[0]]
        if case.name.startswith("push-1k") and case.instances == 1 or case.name == "cluster-1k":
            spec["keep_samples"] = True
        size = case.params.get("sessions", case.params.get("sockets", 1000))
        result = loadgen(spec, timeout=300 + size / 20)
        if "window" in result:
            result["server_gc"] = launcher.gc_pauses(servers.pids, result["window"][0])
        if commit:
            result["hub_commit"] = commit
        if case.instances > 1 and launcher.redis is not None:
            result["redis_rss_mib"] = round(
                psutil.Process(launcher.redis.proc.pid).memory_info().rss / 2**20, 1)
        return result
    finally:
        servers.stop()


# -- report -------------------------------------------------------------------------------------
def _f(x: Any, nd: int = 2) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:.{nd}f}"
    return str(x)


def _gc(r: dict) -> str:
    g = r.get("server_gc")
    return "–" if not g else f"{g['max_ms']:.0f} / {g['total_ms']:.0f} ({g['count']})"


def _cpu(r: dict) -> str:
    return "/".join(f"{c:.0f}" for c in r.get("server_cpu_pct", [])) + \
        f" | {r.get('gen_cpu_pct', 0):.0f}"


def tables(results: dict) -> str:
    lines: list[str] = []
    add = lines.append
    push = [(c, t, r) for c, rows in results.items() for t, r in rows.items()
            if r.get("kind") == "push"]
    if "null" in results:
        r = results["null"]["null"]
        add("### Generator floor (null route)\n")
        add("| row | RTT p50 ms @500/s | p99 | max | max req/s (32 in flight) | p99 there | "
            "server CPU % \\| gen CPU % |")
        add("|---|---|---|---|---|---|---|")
        a, s = r["rtt_ms_at_rate"], r["rtt_ms_saturated"]
        add(f"| null POST | {_f(a['p50'], 3)} | {_f(a['p99'], 3)} | {_f(a['max'])} | "
            f"{r['max_req_per_s']:.0f} | {_f(s['p99'])} | {_cpu(r)} |\n")
    if push:
        add("### Push latency (phone call → event on the machine socket), 500 events/s\n")
        add("| case | target | p50 ms | p90 | p99 | max | lost | delivered ev/s (machine) | "
            "phone call p99 ms | server CPU % \\| gen CPU % | server RSS MiB | "
            "server GC max / total ms (pauses ≥ 1 ms) | busy CPU, all cores % |")
        add("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for c, t, r in push:
            lat = r["latency_ms"]
            add(f"| {c} | {LABEL[t]} | {_f(lat['p50'], 3)} | {_f(lat['p90'], 3)} | "
                f"{_f(lat['p99'], 3)} | {_f(lat['max'])} | {r['lost']} | "
                f"{r['machine_frames'] / r['duration']:.0f} | {_f(r['phone_rtt_ms']['p99'])} | "
                f"{_cpu(r)} | {'/'.join(str(x) for x in r['server_rss_mib'])} | {_gc(r)} | "
                f"{r['system_cpu_pct']:.0f} |")
        add("")
    tp = [(c, t, r) for c, rows in results.items() for t, r in rows.items()
          if r.get("kind") == "throughput"]
    if tp:
        add("### Throughput per process (saturation, 64 in flight)\n")
        add("| case | target | delivered events/s | phone calls/s | latency p50 ms | p99 | "
            "server CPU % \\| gen CPU % | server GC max / total ms |")
        add("|---|---|---|---|---|---|---|---|")
        for c, t, r in tp:
            add(f"| {c} | {LABEL[t]} | {r['delivered_per_s']:.0f} | {r['fired_per_s']:.0f} | "
                f"{_f(r['latency_ms']['p50'])} | {_f(r['latency_ms']['p99'])} | {_cpu(r)} | "
                f"{_gc(r)} |")
        add("")
    for kind, title, head, row in (
        ("storm", "Reconnect storm", "| case | target | resumed | all resumed in s | "
         "per socket p50 ms | p99 | max | events heard after | server CPU % \\| gen CPU % |",
         lambda c, t, r: f"| {c} | {LABEL[t]} | {r['resumed']}/{r['sessions']} | "
         f"{r['all_resumed_s']:.2f} | {_f(r['resume_ms']['p50'])} | {_f(r['resume_ms']['p99'])} "
         f"| {_f(r['resume_ms']['max'])} | {r['heard_after_storm']}/{r['events_after_storm']} | "
         f"{_cpu(r)} |"),
        ("idle", "Idle sockets in one process", "| case | target | connected | server TCP conns "
         "| RSS before MiB | RSS after MiB | RSS per socket KiB | idle CPU % |",
         lambda c, t, r: f"| {c} | {LABEL[t]} | {r.get('connected', r['sockets'])}/{r['sockets']} | {r['server_tcp_connections']} "
         f"| {r['rss_before_mib']} | {r['rss_after_mib']} | {r['rss_per_socket_kib']:.1f} | "
         f"{'/'.join(str(x) for x in r['idle_server_cpu_pct'])} |"),
        ("poll", "Status polling only (legacy machines)", "| case | target | polls/s | p50 ms | "
         "p99 | max | errors | server CPU % \\| gen CPU % | server GC max / total ms |",
         lambda c, t, r: f"| {c} | {LABEL[t]} | {r['polls_per_s']:.0f} | "
         f"{_f(r['poll_ms']['p50'])} | {_f(r['poll_ms']['p99'])} | {_f(r['poll_ms']['max'])} | "
         f"{r['errors']} | {_cpu(r)} | {_gc(r)} |"),
        ("expiry", "Expiry push", "| case | target | pushed | deadline spread s | delay p50 ms | "
         "p99 | max | all within 1 s |",
         lambda c, t, r: f"| {c} | {LABEL[t]} | {r['pushed']}/{r['sessions']} | "
         f"{r['deadline_spread_s']} | {_f(r['delay_ms']['p50'], 1)} | "
         f"{_f(r['delay_ms']['p99'], 1)} | {_f(r['delay_ms']['max'], 1)} | "
         f"{'yes' if r['all_within_1s'] else 'NO'} |"),
    ):
        rows = [(c, t, r) for c, rr in results.items() for t, r in rr.items()
                if r.get("kind") == kind]
        if rows:
            add(f"### {title}\n")
            add(head)
            add("|" + "---|" * (head.count("|") - 1))
            for c, t, r in rows:
                add(row(c, t, r))
            add("")
    return "\n".join(lines)


def ratios(results: dict) -> list[tuple[str, str, float | None]]:
    """hub / peer for each comparable figure (lower is better for times and memory)."""
    out = []
    for c, rows in results.items():
        hub = rows.get("hub")
        if not hub or "error" in hub:
            continue
        for peer in ("floor", "node", "pysio"):
            p = rows.get(peer)
            if not p or "error" in p:
                continue
            kind = hub.get("kind")
            pairs = []
            if peer == "floor" and kind != "throughput":
                continue
            if kind == "push":
                pairs = [("latency p50", hub["latency_ms"]["p50"], p["latency_ms"]["p50"]),
                         ("latency p99", hub["latency_ms"]["p99"], p["latency_ms"]["p99"])]
            elif kind == "throughput":
                n_h, n_p = len(hub["server_cpu_pct"]), len(p["server_cpu_pct"])
                pairs = [("delivered events/s per process", hub["delivered_per_s"] / n_h,
                          p["delivered_per_s"] / n_p)]
            elif kind == "storm":
                pairs = [("all resumed time", hub["all_resumed_s"], p["all_resumed_s"]),
                         ("resume p99", hub["resume_ms"]["p99"], p["resume_ms"]["p99"])]
            elif kind == "idle":
                pairs = [("RSS per socket", hub["rss_per_socket_kib"], p["rss_per_socket_kib"])]
            for what, a, b in pairs:
                out.append((c, f"{what}: hub / {'floor' if peer == 'floor' else LABEL[peer]}",
                            round(a / b, 2) if a and b else None))
    return out


def targets(results: dict) -> list[tuple[str, str, bool | None]]:
    """The issue's targets, each met (True), missed (False) or not measured (None)."""
    t: list[tuple[str, str, bool | None]] = []

    def get(case: str, target: str = "hub") -> dict | None:
        r = results.get(case, {}).get(target)
        return None if r is None or "error" in r else r

    h = get("push-1k")
    if h:
        lat = h["latency_ms"]
        t.append(("push-1k embedded p50 ≤ 0.8 ms", f"{lat['p50']:.3f} ms", lat["p50"] <= 0.8))
        t.append(("push-1k embedded p99 ≤ 2.0 ms", f"{lat['p99']:.3f} ms", lat["p99"] <= 2.0))
        peers = [get("push-1k", p) for p in ("node", "pysio")]
        if all(peers):
            best = min(p["latency_ms"]["p99"] for p in peers)  # type: ignore[index]
            t.append(("push-1k p99 ahead of both peers", f"hub {lat['p99']:.3f} vs best peer "
                      f"{best:.3f} ms", lat["p99"] < best))
    h = get("cluster-1k")
    if h:
        lat = h["latency_ms"]
        t.append(("cluster-1k p99 ≤ 2.5 ms", f"{lat['p99']:.3f} ms", lat["p99"] <= 2.5))
        peers = [get("cluster-1k", p) for p in ("node", "pysio")]
        if all(peers):
            best = min(p["latency_ms"]["p99"] for p in peers)  # type: ignore[index]
            t.append(("cluster-1k p99 ahead of both peers", f"hub {lat['p99']:.3f} vs best "
                      f"peer {best:.3f} ms", lat["p99"] < best))
    for case in ("throughput-1k", "throughput-1k-ws"):
        h = get(case)
        for peer, need in (("node", 1.0), ("pysio", 2.0)):
            p = get(case, peer)
            if h and p:
                ratio = h["delivered_per_s"] / p["delivered_per_s"]
                t.append((f"{case}: delivered/s ≥ {need:.0f}× {LABEL[peer]}",
                          f"{ratio:.2f}×", ratio >= need))
    for case in results:
        if case.startswith("idle"):
            h = get(case)
            if h:
                t.append((f"{case}: ≤ 30 KiB RSS per idle socket ({h['sockets']} sockets)",
                          f"{h['rss_per_socket_kib']:.1f} KiB", h["rss_per_socket_kib"] <= 30
                          and h.get("connected", h["sockets"]) >= 19900))
    h = get("poll-1k")
    if h:
        t.append(("≥ 5,000 status polls/s per process", f"{h['polls_per_s']:.0f}/s",
                  h["polls_per_s"] >= 5000))
        t.append(("status poll p99 ≤ 20 ms", f"{h['poll_ms']['p99']:.2f} ms",
                  h["poll_ms"]["p99"] <= 20))
    h = get("expiry-1k")
    if h:
        t.append(("1,000 simultaneous expiries pushed within 1 s",
                  f"max {h['delay_ms']['max']:.0f} ms, {h['pushed']}/{h['sessions']}",
                  h["all_within_1s"]))
    return t


def histogram(results: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    cases = [c for c in ("push-1k", "push-1k-ws", "cluster-1k") if c in results]
    if not cases:
        return
    fig, axes = plt.subplots(len(cases), 1, figsize=(9, 3.2 * len(cases)), squeeze=False)
    for ax, case in zip(axes[:, 0], cases):
        bins = np.logspace(np.log10(0.1), np.log10(200), 120)
        for t in TARGETS:
            r = results[case].get(t)
            if not r or "samples_ms" not in r:
                continue
            s = np.clip(np.asarray(r["samples_ms"]), 0.1, 200)
            ax.hist(s, bins=bins, histtype="step", linewidth=1.5,
                    label=f"{LABEL[t]} (p50 {r['latency_ms']['p50']:.2f}, "
                          f"p99 {r['latency_ms']['p99']:.2f} ms)")
        ax.set_xscale("log")
        ax.set_xlabel("push latency, ms (phone call → machine socket; ≥ 200 ms drawn at 200)")
        ax.set_ylabel("events")
        ax.set_title(f"{case}: 1,000 sessions, 500 events/s")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version(dist)
    except PackageNotFoundError:
        return ""


def _npm(name: str) -> str:
    with contextlib.suppress(OSError, ValueError, KeyError):
        lock = json.loads((NODE_DIR / "package-lock.json").read_text())
        return lock["packages"][f"node_modules/{name}"]["version"]
    return ""


def machine_info() -> dict:
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    redis_v = subprocess.run(["redis-server", "--version"], capture_output=True,
                             text=True).stdout.strip()
    import aiohttp
    import uvicorn
    return {"cpu": cpu, "cores": os.cpu_count(), "mem_gib": round(
        psutil.virtual_memory().total / 2**30, 1), "kernel": platform.release(),
        "python": platform.python_version(), "node": node, "redis": redis_v,
        "uvicorn": uvicorn.__version__, "aiohttp": aiohttp.__version__,
        "python-socketio": _version("python-socketio"), "websockets": _version("websockets"),
        "starlette": _version("starlette"), "socket.io (npm)": _npm("socket.io"),
        "@socket.io/redis-adapter (npm)": _npm("@socket.io/redis-adapter"),
        "nofile": resource.getrlimit(resource.RLIMIT_NOFILE), "hub_commit_at_start": hub_commit()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.run")
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--quick", action="store_true", help="short windows (default)")
    g.add_argument("--full", action="store_true", help="30 s windows, up to 10k sessions")
    ap.add_argument("--only", default="", help="comma-separated case names")
    ap.add_argument("--targets", default=",".join(SERVERS))
    ap.add_argument("--out", default=str(BENCH / "results"))
    ap.add_argument("--merge", action="store_true",
                    help="keep the other cases of the last <mode>.json, replace those run now")
    args = ap.parse_args(argv)
    mode = "full" if args.full else "quick"
    only = {x for x in args.only.split(",") if x}
    want = {x for x in args.targets.split(",") if x} | {"null"}
    if not (NODE_DIR / "node_modules").exists() and "node" in want:
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=NODE_DIR, check=True)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    results: dict[str, dict[str, dict]] = {}
    about: dict[str, str] = {}
    samples_file = out_dir / f"{mode}-samples.json"
    if args.merge and (out_dir / f"{mode}.json").exists():
        old = json.loads((out_dir / f"{mode}.json").read_text())
        results, about = old["results"], old["about"]
        if samples_file.exists():
            for key, samples in json.loads(samples_file.read_text()).items():
                c, t = key.split("/")
                if c in results and t in results[c]:
                    results[c][t]["samples_ms"] = samples
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="hub-bench-") as tmp:
        work = Path(tmp)
        redis = Redis(work)
        launcher = Launcher(work, redis, out_dir / f"{mode}-servers.log")
        (out_dir / f"{mode}-servers.log").write_text("")
        run_id = 0
        try:
            for case in plan(args.full):
                if only and case.name not in only:
                    continue
                about[case.name] = case.about
                for target in case.targets:
                    if target not in want:
                        continue
                    run_id += 1
                    t0 = time.time()
                    print(f"[{time.time() - started:6.0f}s] {case.name} / {target} …",
                          end=" ", flush=True)
                    try:
                        r = run_case(case, target, launcher, run_id)
                        r["kind"] = case.scenario
                        r["duration"] = case.params.get("duration")
                        r["instances"] = case.instances
                    except Exception as exc:  # a failed run is reported, not fatal
                        r = {"kind": case.scenario, "error": str(exc)[:3000]}
                    results.setdefault(case.name, {})[target] = r
                    results[case.name] = {t: results[case.name][t] for t in SERVERS + ("null",)
                                          if t in results[case.name]}
                    print("error: " + r["error"][-300:] if "error" in r
                          else f"done in {time.time() - t0:.0f}s", flush=True)
        finally:
            redis.stop()
    ok = {c: {t: r for t, r in rows.items() if "error" not in r} for c, rows in results.items()}
    md = [f"## Results ({mode}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})\n",
          tables(ok)]
    rat = ratios(ok)
    if rat:
        md += ["### Ratios (hub / peer; below 1 is better for times and memory, above 1 "
               "for events/s)\n", "| case | figure | ratio |", "|---|---|---|"]
        md += [f"| {c} | {w} | {_f(v)} |" for c, w, v in rat]
        md.append("")
    tg = targets(ok)
    if tg:
        md += ["### Targets\n", "| target | measured | met |", "|---|---|---|"]
        md += [f"| {n} | {m} | {'yes' if v else 'NO' if v is False else '–'} |"
               for n, m, v in tg]
        md.append("")
    errors = {f"{c}/{t}": r["error"] for c, rows in results.items() for t, r in rows.items()
              if "error" in r}
    if errors:
        md += ["### Runs that failed\n"] + [f"- {k}: `{v[-300:]}`" for k, v in errors.items()]
    text = "\n".join(md)
    print("\n" + text)
    info = machine_info()
    (out_dir / f"{mode}.md").write_text(text + "\n")
    slim = {c: {t: {k: v for k, v in r.items() if k != "samples_ms"} for t, r in rows.items()}
            for c, rows in results.items()}
    (out_dir / f"{mode}.json").write_text(json.dumps(
        {"mode": mode, "machine": info, "about": about, "results": slim,
         "ratios": rat, "targets": tg, "command": "python -m bench.run " + " ".join(
             sys.argv[1:] if argv is None else argv)}, indent=1))
    samples_file.write_text(json.dumps({f"{c}/{t}": r["samples_ms"] for c, rows in
                                        results.items() for t, r in rows.items()
                                        if "samples_ms" in r}))
    histogram(results, out_dir / f"{mode}-latency.png")
    print(f"\nwrote {out_dir}/{mode}.json, {mode}.md, {mode}-latency.png "
          f"in {time.time() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
