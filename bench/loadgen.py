"""The load generator: N machines and N phones on one target, one scenario, JSON out.

    python -m bench.loadgen SPEC_JSON      (bench.run builds the spec and starts servers)

One asyncio process (uvloop, aiohttp client), its GC frozen after setup. It speaks two
protocols with the same code around them:

* ``hub``: the hub's REST routes and sockets (CONTRACT §3–4, ``open`` mode). Each session
  has a machine (machine-wide socket ``/api/vending/machine/{id}/ws``) and a phone (its
  session socket ``?role=phone``). Setup: ``create-session`` → ``register-user`` → a
  first ``order-summary`` (session now ``payment_pending``). Each measured event is one
  more ``order-summary`` from the phone (REST, or the socket op ``order_summary``): the
  hub replaces the order and pushes an ``order.summary`` event to the machine socket and
  the phone socket. That gives every session an unbounded, steady stream of events.
* ``sio``: Socket.IO v5 / Engine.IO v4 over a WebSocket (no polling transport), spoken
  directly (``0``/``40``/``42``/``43``, pings ``2``→``3``). Machine and phone join room
  ``sid`` (``auth`` payload); the phone sends the same order-summary body by ``POST
  /relay/{sid}`` (REST) or the ``relay`` event with an ack (socket op); the server emits
  it as ``ev`` to the room.

Push latency = from just before the phone's request is written to the moment the event is
read on the machine socket (so it includes the phone's request, not only the fan-out).
Events carry a counter in ``order_data.bench_k`` that both protocols relay untouched.
"""

from __future__ import annotations

import asyncio
import gc
import json
import math
import os
import random
import resource
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
import psutil

PC = time.perf_counter
JSONH = {"Content-Type": "application/json"}


def order_body(sid: str, k: int) -> dict[str, Any]:
    """The guide's order-summary payload (no design image), tagged with ``bench_k``."""
    return {"session_id": sid, "payment_amount": 19.99, "currency": "GBP",
            "order_data": {"brand": "iPhone", "model": "iPhone 15 Pro", "color": "Black",
                           "template": {"id": "classic", "name": "Classic"},
                           "inputText": "Hello", "selectedFont": "Arial",
                           "selectedTextColor": "#ffffff", "bench_k": k}}


def bench_k(text: str) -> int | None:
    """The ``bench_k`` of a frame without parsing all of it (same cost for every protocol)."""
    i = text.find('"bench_k":')
    if i < 0:
        return None
    j = i + 10
    while text[j] == " ":
        j += 1
    e = j
    n = len(text)
    while e < n and text[e].isdigit():
        e += 1
    return int(text[j:e]) if e > j else None


async def timed_post(http: Any, rec: Any, k: int, url: str, data: bytes) -> None:
    """POST one phone event over REST, recording its send time, RTT and errors in ``rec``
    (the same for the hub and the socket.io peers)."""
    t = PC()
    rec.sent[k] = t
    try:
        async with http.post(url, data=data, headers=JSONH) as r:
            await r.read()
            if r.status != 200:
                rec.errors += 1
    except aiohttp.ClientError:
        rec.errors += 1
    rec.rtt.append(PC() - t)


class Rec:
    """What the run observed: send times, latencies, deliveries."""

    def __init__(self) -> None:
        self.sent: dict[int, float] = {}
        self.acks: dict[int, float] = {}
        self.waiters: dict[int, asyncio.Future] = {}  #: op id → future set on its ack
        self.lat: list[float] = []
        self.rtt: list[float] = []
        self.machine_frames = 0
        self.phone_frames = 0
        self.errors = 0
        self.k = 0

    def next_k(self) -> int:
        self.k += 1
        return self.k

    def arrive_machine(self, text: str) -> None:
        self.machine_frames += 1
        k = bench_k(text)
        if k is not None:
            t = self.sent.pop(k, None)
            if t is not None:
                self.lat.append(PC() - t)

    def acked(self, k: int) -> None:
        t = self.acks.pop(k, None)
        if t is not None:
            self.rtt.append(PC() - t)
        w = self.waiters.pop(k, None)
        if w is not None and not w.done():
            w.set_result(None)


@dataclass
class Sess:
    i: int
    mid: str
    sid: str = ""
    expires_at: str = ""
    machine: Any = None
    phone: Any = None
    connected: asyncio.Future | None = None  # first frame (hub) / "40" (sio) of the machine
    tasks: list = field(default_factory=list)


def ws_session() -> aiohttp.ClientSession:
    """Sockets get their own client session: a socket holds its connection for good, so it
    must not count against the HTTP pool's limit."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))


def abort(ws: aiohttp.ClientWebSocketResponse) -> None:
    """Drop a socket abruptly (no close handshake): a lost network, a restarted balancer."""
    conn = getattr(ws, "_conn", None)
    transport = getattr(conn, "transport", None)
    if transport is not None:
        transport.abort()


# -- hub protocol -------------------------------------------------------------------------
class Hub:
    proto = "hub"

    def __init__(self, spec: dict, http: aiohttp.ClientSession, rec: Rec) -> None:
        self.spec, self.http, self.rec = spec, http, rec
        self.wsh = ws_session()
        self.mach_urls = spec["machine_urls"]  # instance(s) the machines talk to
        self.phone_urls = spec["phone_urls"]  # instance(s) the phones talk to
        self.phone_ws = spec.get("phone_mode") == "ws"

    def _u(self, urls: list[str], i: int) -> str:
        return urls[i % len(urls)]

    async def _post(self, url: str, body: Any) -> tuple[int, dict]:
        async with self.http.post(url, data=orjson.dumps(body), headers=JSONH) as r:
            return r.status, orjson.loads(await r.read())

    async def create(self, s: Sess, timeout_minutes: int = 120) -> None:
        st, b = await self._post(self._u(self.mach_urls, s.i) + "/api/vending/create-session",
                                 {"machine_id": s.mid, "session_timeout_minutes": timeout_minutes})
        if st != 200:
            raise RuntimeError(f"create-session {st} {b}")
        s.sid, s.expires_at = b["session_id"], b["expires_at"]

    async def setup(self, s: Sess, phone_socket: bool = True) -> None:
        await self.create(s)
        await self.open_machine(s)
        base = self._u(self.phone_urls, s.i) + f"/api/vending/session/{s.sid}"
        st, b = await self._post(base + "/register-user",
                                 {"machine_id": s.mid, "session_id": s.sid})
        if st != 200:
            raise RuntimeError(f"register-user {st} {b}")
        st, b = await self._post(base + "/order-summary", order_body(s.sid, 0))
        if st != 200:
            raise RuntimeError(f"order-summary {st} {b}")
        if phone_socket:
            await self.open_phone(s)

    async def open_machine(self, s: Sess) -> None:
        url = self._u(self.mach_urls, s.i).replace("http", "ws", 1) + \
            f"/api/vending/machine/{s.mid}/ws"
        s.connected = asyncio.get_running_loop().create_future()
        s.machine = await self.wsh.ws_connect(url, autoping=True, max_msg_size=0)
        s.tasks.append(asyncio.create_task(self._machine_reader(s, s.machine)))

    async def _machine_reader(self, s: Sess, ws: aiohttp.ClientWebSocketResponse) -> None:
        rec = self.rec
        try:
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue
                d = msg.data
                if d.startswith('{"type":"event"'):
                    rec.arrive_machine(d)
                    if self.on_event is not None:
                        self.on_event(s, d)
                elif s.connected is not None and not s.connected.done():
                    s.connected.set_result(PC())
        except Exception:
            pass
        if s.connected is not None and not s.connected.done():
            s.connected.set_exception(ConnectionError("socket closed before its first frame"))

    on_event = None  # optional hook (expiry scenario)

    async def open_phone(self, s: Sess) -> None:
        url = self._u(self.phone_urls, s.i).replace("http", "ws", 1) + \
            f"/api/vending/session/{s.sid}/ws?role=phone"
        s.phone = await self.wsh.ws_connect(url, autoping=True, max_msg_size=0)
        s.tasks.append(asyncio.create_task(self._phone_reader(s.phone)))

    async def _phone_reader(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        rec = self.rec
        try:
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue
                d = msg.data
                if d.startswith('{"type":"ack"'):
                    a = orjson.loads(d)
                    if a["code"] != 200:
                        rec.errors += 1
                    rec.acked(a["id"])
                else:
                    rec.phone_frames += 1
        except Exception:
            pass

    async def fire(self, s: Sess, k: int) -> None:
        rec = self.rec
        body = order_body(s.sid, k)
        if self.phone_ws:
            body.update(op="order_summary", id=k)
            data = orjson.dumps(body).decode()
            t = PC()
            rec.sent[k] = rec.acks[k] = t
            await s.phone.send_str(data)
            return
        data = orjson.dumps(body)
        url = self._u(self.phone_urls, s.i) + f"/api/vending/session/{s.sid}/order-summary"
        await timed_post(self.http, rec, k, url, data)

    async def poll(self, s: Sess) -> bool:
        url = self._u(self.mach_urls, s.i) + f"/api/vending/session/{s.sid}/status"
        async with self.http.get(url) as r:
            await r.read()
            return r.status == 200


# -- Socket.IO protocol ---------------------------------------------------------------------
class Sio:
    proto = "sio"
    on_event = None

    def __init__(self, spec: dict, http: aiohttp.ClientSession, rec: Rec) -> None:
        self.spec, self.http, self.rec = spec, http, rec
        self.wsh = ws_session()
        self.mach_urls = spec["machine_urls"]
        self.phone_urls = spec["phone_urls"]
        self.phone_ws = spec.get("phone_mode") == "ws"

    def _u(self, urls: list[str], i: int) -> str:
        return urls[i % len(urls)]

    async def _connect(self, base: str, auth: dict, s: Sess, machine: bool
                       ) -> aiohttp.ClientWebSocketResponse:
        url = base.replace("http", "ws", 1) + "/socket.io/?EIO=4&transport=websocket"
        fut = asyncio.get_running_loop().create_future()
        ws = await self.wsh.ws_connect(url, autoping=False, max_msg_size=0)
        s.tasks.append(asyncio.create_task(self._reader(ws, orjson.dumps(auth).decode(),
                                                        fut, machine, s)))
        if machine:
            s.connected = fut
        await fut
        return ws

    async def _reader(self, ws: aiohttp.ClientWebSocketResponse, auth: str,
                      fut: asyncio.Future, machine: bool, s: Sess) -> None:
        rec = self.rec
        try:
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue
                d = msg.data
                c = d[0]
                if c == "4":
                    c2 = d[1]
                    if c2 == "2":
                        if machine:
                            rec.arrive_machine(d)
                        else:
                            rec.phone_frames += 1
                    elif c2 == "3":  # ack: 43<id>[...]
                        j = d.index("[")
                        rec.acked(int(d[2:j]))
                    elif c2 == "0" and not fut.done():
                        fut.set_result(PC())
                    elif c2 == "4" and not fut.done():
                        fut.set_exception(RuntimeError(d))
                elif c == "2":
                    await ws.send_str("3")
                elif c == "0":
                    await ws.send_str("40" + auth)
        except Exception:
            pass
        if not fut.done():  # closed before the handshake finished
            fut.set_exception(ConnectionError("socket closed during the handshake"))

    async def setup(self, s: Sess, phone_socket: bool = True) -> None:
        s.sid = f"S{s.i}_{s.mid}"
        await self.open_machine(s)
        if phone_socket:
            await self.open_phone(s)

    async def open_machine(self, s: Sess) -> None:
        s.machine = await self._connect(self._u(self.mach_urls, s.i),
                                        {"sid": s.sid, "role": "machine"}, s, True)

    async def open_phone(self, s: Sess) -> None:
        s.phone = await self._connect(self._u(self.phone_urls, s.i),
                                      {"sid": s.sid, "role": "phone"}, s, False)

    async def fire(self, s: Sess, k: int) -> None:
        rec = self.rec
        body = order_body(s.sid, k)
        body["sid"] = s.sid
        if self.phone_ws:
            data = f'42{k}["relay",' + orjson.dumps(body).decode() + "]"
            t = PC()
            rec.sent[k] = rec.acks[k] = t
            await s.phone.send_str(data)
            return
        data = orjson.dumps(body)
        url = self._u(self.phone_urls, s.i) + f"/relay/{s.sid}"
        await timed_post(self.http, rec, k, url, data)


# -- measurement helpers -----------------------------------------------------------------------
class Cpu:
    """CPU seconds of the server processes (and this one) over a window."""

    def __init__(self, pids: list[int]) -> None:
        self.procs = [psutil.Process(p) for p in pids]
        self.me = psutil.Process()

    @staticmethod
    def _t(p: psutil.Process) -> float:
        try:
            c = p.cpu_times()
            return c.user + c.system
        except psutil.Error:
            return 0.0

    def start(self) -> None:
        self.epoch0 = time.time()
        self.sys0 = psutil.cpu_times()
        self.t0 = PC()
        self.c0 = [self._t(p) for p in self.procs]
        self.m0 = self._t(self.me)

    def stop(self) -> dict:
        wall = PC() - self.t0
        s0, s1 = self.sys0, psutil.cpu_times()
        busy = sum(getattr(s1, f) - getattr(s0, f) for f in ("user", "nice", "system", "irq",
                                                              "softirq", "steal"))
        return {"window": [self.epoch0, time.time()],
                "system_cpu_pct": round(100 * busy / wall, 1),
                "loadavg_1m": round(os.getloadavg()[0], 2),"server_cpu_pct": [round(100 * (self._t(p) - c) / wall, 1)
                                   for p, c in zip(self.procs, self.c0)],
                "gen_cpu_pct": round(100 * (self._t(self.me) - self.m0) / wall, 1),
                "server_rss_mib": [round(rss(p) / 2**20, 1) for p in self.procs]}


def rss(p: psutil.Process) -> int:
    try:
        return p.memory_info().rss
    except psutil.Error:
        return 0


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    v = sorted(values)
    return v[min(len(v) - 1, max(0, math.ceil(q / 100 * len(v)) - 1))]


def summary_ms(values: list[float]) -> dict:
    ms = [x * 1000 for x in values]
    return {"n": len(ms), "p50": round(pct(ms, 50), 3), "p90": round(pct(ms, 90), 3),
            "p99": round(pct(ms, 99), 3), "max": round(max(ms), 3) if ms else None,
            "mean": round(sum(ms) / len(ms), 3) if ms else None}


async def gather_limited(coros: list, limit: int) -> list:
    sem = asyncio.Semaphore(limit)

    async def one(c: Any) -> Any:
        async with sem:
            return await c

    return await asyncio.gather(*(one(c) for c in coros))


def freeze_gc() -> None:
    gc.collect()
    gc.freeze()


async def drain(rec: Rec, timeout: float = 5.0) -> None:
    """Wait until every sent event arrived (or ``timeout``)."""
    end = PC() + timeout
    while (rec.sent or rec.acks) and PC() < end:
        await asyncio.sleep(0.02)


async def open_loop(target: Any, sessions: list[Sess], rate: float, duration: float,
                    rec: Rec) -> float:
    """Fire ``rate`` events a second, round robin over sessions, for ``duration`` s."""
    n = int(rate * duration)
    tasks: set[asyncio.Task] = set()
    start = PC()
    for i in range(n):
        delay = start + i / rate - PC()
        if delay > 0:
            await asyncio.sleep(delay)
        t = asyncio.create_task(target.fire(sessions[i % len(sessions)], rec.next_k()))
        tasks.add(t)
        t.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.gather(*tasks)
    return PC() - start


async def closed_loop(fn: Any, sessions: list[Sess], conc: int, duration: float) -> float:
    """``conc`` workers each calling ``fn(session)`` back to back for ``duration`` s."""
    stop = PC() + duration
    start = PC()

    async def worker(w: int) -> None:
        i = w
        while PC() < stop:
            await fn(sessions[i % len(sessions)])
            i += conc

    await asyncio.gather(*(worker(w) for w in range(conc)))
    return PC() - start


# -- scenarios --------------------------------------------------------------------------------
async def build(spec: dict, rec: Rec, n: int, phone_socket: bool = True,
                conn_limit: int = 64) -> tuple[Any, aiohttp.ClientSession, list[Sess]]:
    connector = aiohttp.TCPConnector(limit=conn_limit, keepalive_timeout=4, force_close=False,
                                     ttl_dns_cache=None)
    http = aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60))
    target = (Hub if spec["proto"] == "hub" else Sio)(spec, http, rec)
    run = spec.get("run_id", "r")
    sessions = [Sess(i, f"B{run}M{i}") for i in range(n)]
    t0 = PC()
    await gather_limited([target.setup(s, phone_socket) for s in sessions],
                         spec.get("setup_concurrency", 64))
    await asyncio.gather(*(s.connected for s in sessions if s.connected is not None))
    rec.setup_s = PC() - t0
    return target, http, sessions


async def close_all(http: aiohttp.ClientSession, sessions: list[Sess],
                    target: Any = None) -> None:
    for s in sessions:
        for ws in (s.machine, s.phone):
            if ws is not None:
                abort(ws)
        for t in s.tasks:
            t.cancel()
    await http.close()
    if target is not None:
        await target.wsh.close()


async def sc_push(spec: dict) -> dict:
    """Steady push: N sessions, ``rate`` events/s for ``duration`` s (open loop)."""
    rec = Rec()
    target, http, sessions = await build(spec, rec, spec["sessions"],
                                         spec.get("phone_sockets", True))
    await asyncio.sleep(0.5)
    rec.sent.clear()
    freeze_gc()
    cpu = Cpu(spec["pids"])
    # warm-up: 1 s at the rate, not recorded
    await open_loop(target, sessions, spec["rate"], 1.0, rec)
    await drain(rec)
    rec.lat.clear(), rec.rtt.clear()
    rec.machine_frames = rec.phone_frames = rec.errors = 0
    cpu.start()
    wall = await open_loop(target, sessions, spec["rate"], spec["duration"], rec)
    await drain(rec)
    usage = cpu.stop()
    lost = len(rec.sent)
    out = {"setup_s": round(rec.setup_s, 2), "sessions": len(sessions),
           "rate_target": spec["rate"], "fired": int(spec["rate"] * spec["duration"]),
           "rate_achieved": round(int(spec["rate"] * spec["duration"]) / wall, 1),
           "latency_ms": summary_ms(rec.lat), "phone_rtt_ms": summary_ms(rec.rtt),
           "lost": lost, "errors": rec.errors,
           "machine_frames": rec.machine_frames, "phone_frames": rec.phone_frames, **usage}
    if spec.get("keep_samples"):
        out["samples_ms"] = [round(x * 1000, 4) for x in rec.lat]
    await close_all(http, sessions, target)
    return out


async def sc_throughput(spec: dict) -> dict:
    """Saturation: ``conc`` phones in flight back to back; delivered events/s."""
    rec = Rec()
    conc = spec["concurrency"]
    target, http, sessions = await build(spec, rec, spec["sessions"], conn_limit=conc)
    await asyncio.sleep(0.5)
    freeze_gc()

    if target.phone_ws:
        # socket ops: keep `conc` ops in flight, each worker waits for its ack
        loop = asyncio.get_running_loop()

        async def fire(s: Sess) -> None:
            k = rec.next_k()
            rec.waiters[k] = w = loop.create_future()
            await target.fire(s, k)
            await w
    else:
        async def fire(s: Sess) -> None:
            await target.fire(s, rec.next_k())

    await closed_loop(fire, sessions, conc, 1.0)  # warm-up
    await drain(rec)
    rec.lat.clear(), rec.rtt.clear()
    rec.machine_frames = rec.phone_frames = rec.errors = 0
    fired0 = rec.k
    cpu = Cpu(spec["pids"])
    cpu.start()
    m0 = rec.machine_frames
    wall = await closed_loop(fire, sessions, conc, spec["duration"])
    delivered = rec.machine_frames - m0
    usage = cpu.stop()
    await drain(rec)
    out = {"sessions": len(sessions), "concurrency": conc,
           "fired_per_s": round((rec.k - fired0) / wall, 1),
           "delivered_per_s": round(delivered / wall, 1),
           "latency_ms": summary_ms(rec.lat), "phone_rtt_ms": summary_ms(rec.rtt),
           "lost": len(rec.sent), "errors": rec.errors, **usage}
    await close_all(http, sessions, target)
    return out


async def sc_storm(spec: dict) -> dict:
    """Reconnect storm: every machine socket drops at once and reconnects at once.
    (Phones hold no socket here: only machine sockets take part.)"""
    rec = Rec()
    target, http, sessions = await build(spec, rec, spec["sessions"], phone_socket=False)
    await asyncio.sleep(0.5)
    freeze_gc()
    cpu = Cpu(spec["pids"])
    for s in sessions:
        abort(s.machine)
    await asyncio.sleep(0.2)
    cpu.start()
    t0 = PC()

    async def resume(s: Sess) -> float:
        t = PC()
        await target.open_machine(s)
        await s.connected
        return PC() - t

    times = await asyncio.gather(*(resume(s) for s in sessions), return_exceptions=True)
    total = PC() - t0
    usage = cpu.stop()
    ok = [t for t in times if isinstance(t, float)]
    # then every session gets one event: each resumed machine must hear it
    await asyncio.sleep(0.2)
    m0 = rec.machine_frames
    await open_loop(target, sessions, spec.get("rate", 500), len(sessions) / spec.get("rate", 500),
                    rec)
    await drain(rec)
    heard = rec.machine_frames - m0
    out = {"sessions": len(sessions), "resumed": len(ok), "failed": len(times) - len(ok),
           "all_resumed_s": round(total, 3), "resume_ms": summary_ms(ok),
           "events_after_storm": len(sessions), "heard_after_storm": heard, **usage}
    await close_all(http, sessions, target)
    return out


async def _idle_open(spec: dict, lo: int, hi: int) -> tuple[Any, list[Sess]]:
    rec = Rec()
    http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    target = (Hub if spec["proto"] == "hub" else Sio)(spec, http, rec)
    sessions = [Sess(i, f"B{spec['run_id']}M{i}") for i in range(lo, hi)]
    for s in sessions:  # hub: the machine exists (create-session registered it)
        s.sid = f"S{s.i}"
    async def one(s: Sess) -> bool:
        try:
            await asyncio.wait_for(target.open_machine(s), 120)
            await asyncio.wait_for(s.connected, 120)
            return True
        except Exception:
            return False

    ok = await gather_limited([one(s) for s in sessions], 256)
    target.connected = sum(ok)
    return target, sessions


async def sc_idle(spec: dict) -> dict:
    """Idle sockets held by one server process: RSS per socket.

    The sockets are machine sockets (hub: machine-wide socket of a machine with one open
    session; sio: a socket that joined its room). Half are opened by a helper process:
    one process cannot hold them all under this machine's open-file limit."""
    n = spec["sockets"]
    server = psutil.Process(spec["pids"][0])
    rec = Rec()
    http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=128))
    target = (Hub if spec["proto"] == "hub" else Sio)(spec, http, rec)
    t0 = PC()
    if spec["proto"] == "hub":  # machines are registered by their first create-session
        await gather_limited([target.create(Sess(i, f"B{spec['run_id']}M{i}"))
                              for i in range(n)], 64)
    await http.close()
    await target.wsh.close()
    setup_s = PC() - t0
    await asyncio.sleep(1.0)
    gc.collect()
    base = rss(server)
    half = n // 2
    helper = subprocess.Popen(
        [sys.executable, "-m", "bench.loadgen", "--idle-helper",
         json.dumps({**spec, "lo": half, "hi": n})],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    t1 = PC()
    mine_t, mine = await _idle_open(spec, 0, half)
    line = await asyncio.get_running_loop().run_in_executor(None, helper.stdout.readline)
    if not line.startswith(b"ready"):
        raise RuntimeError("idle helper failed")
    connected = mine_t.connected + int(line.split()[1])
    connect_s = PC() - t1
    freeze_gc()
    await asyncio.sleep(spec.get("settle", 5.0))
    held = len(server.net_connections(kind="tcp")) - 1  # minus the listening socket
    after = rss(server)
    cpu = Cpu(spec["pids"])
    cpu.start()
    await asyncio.sleep(spec.get("idle_window", 5.0))
    usage = cpu.stop()
    helper.stdin.close()
    await asyncio.get_running_loop().run_in_executor(None, helper.wait, 60)
    await close_all(mine_t.http, mine, mine_t)
    return {"sockets": n, "connected": connected, "server_tcp_connections": held, "setup_s": round(setup_s, 1),
            "connect_s": round(connect_s, 1),
            "rss_before_mib": round(base / 2**20, 1), "rss_after_mib": round(after / 2**20, 1),
            "rss_per_socket_kib": round((after - base) / max(connected, 1) / 1024, 2),
            "idle_server_cpu_pct": usage["server_cpu_pct"]}


async def idle_helper(spec: dict) -> None:
    target, sessions = await _idle_open(spec, spec["lo"], spec["hi"])
    sys.stdout.write(f"ready {target.connected}\n")
    sys.stdout.flush()
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await close_all(target.http, sessions, target)


async def sc_poll(spec: dict) -> dict:
    """Legacy machines: status polls only (no sockets), ``conc`` in flight back to back."""
    rec = Rec()
    conc = spec["concurrency"]
    http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=conc, keepalive_timeout=4))
    target = Hub(spec, http, rec)
    sessions = [Sess(i, f"B{spec['run_id']}M{i}") for i in range(spec["sessions"])]
    await gather_limited([target.create(s) for s in sessions], 64)
    freeze_gc()
    lat: list[float] = []
    bad = 0

    async def poll(s: Sess) -> None:
        nonlocal bad
        t = PC()
        if not await target.poll(s):
            bad += 1
        lat.append(PC() - t)

    await closed_loop(poll, sessions, conc, 1.0)
    lat.clear()
    cpu = Cpu(spec["pids"])
    cpu.start()
    wall = await closed_loop(poll, sessions, conc, spec["duration"])
    usage = cpu.stop()
    await http.close()
    return {"sessions": len(sessions), "concurrency": conc,
            "polls_per_s": round(len(lat) / wall, 1), "poll_ms": summary_ms(lat),
            "errors": bad, **usage}


async def sc_null(spec: dict) -> dict:
    """The generator's floor: POST to a route that does nothing (open loop, then closed)."""
    conc = spec["concurrency"]
    http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=conc, keepalive_timeout=4))
    url = spec["phone_urls"][0] + "/null"
    body = orjson.dumps(order_body("x", 1))
    lat: list[float] = []

    async def post(_: Any = None) -> None:
        t = PC()
        async with http.post(url, data=body, headers=JSONH) as r:
            await r.read()
        lat.append(PC() - t)

    dummy = [Sess(0, "x")]
    await closed_loop(post, dummy, 8, 1.0)
    freeze_gc()
    lat.clear()
    rate, duration = spec["rate"], spec["duration"]
    tasks = []
    start = PC()
    for i in range(int(rate * duration)):
        delay = start + i / rate - PC()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(post()))
    await asyncio.gather(*tasks)
    at_rate = summary_ms(lat)
    lat.clear()
    cpu = Cpu(spec["pids"])
    cpu.start()
    wall = await closed_loop(post, dummy, conc, spec["duration"])
    usage = cpu.stop()
    n = len(lat)
    await http.close()
    return {"rate": rate, "rtt_ms_at_rate": at_rate, "max_req_per_s": round(n / wall, 1),
            "rtt_ms_saturated": summary_ms(lat), **usage}


async def sc_expiry(spec: dict) -> dict:
    """``n`` sessions (one per machine, machine socket open) expiring together: delay from
    each session's ``expires_at`` to its ``session.expired`` frame on the machine socket."""
    rec = Rec()
    http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64))
    target = Hub(spec, http, rec)
    n = spec["sessions"]
    sessions = [Sess(i, f"B{spec['run_id']}M{i}") for i in range(n)]
    arrived: dict[str, float] = {}

    def on_event(s: Sess, d: str) -> None:
        if '"event":"session.expired"' in d:
            arrived[s.sid] = time.time()

    target.on_event = on_event
    t0 = time.time()
    await gather_limited([target.create(s, spec["timeout_minutes"]) for s in sessions], 64)
    created_s = time.time() - t0
    await gather_limited([target.open_machine(s) for s in sessions], 64)
    await asyncio.gather(*(s.connected for s in sessions))
    freeze_gc()
    deadlines = {s.sid: _epoch(s.expires_at) for s in sessions}
    last = max(deadlines.values())
    if time.time() > min(deadlines.values()):
        raise RuntimeError("setup took longer than the timeout: raise timeout_minutes")
    cpu = Cpu(spec["pids"])
    cpu.start()
    while len(arrived) < n and time.time() < last + 10:
        await asyncio.sleep(0.05)
    usage = cpu.stop()
    delays = [arrived[sid] - dl for sid, dl in deadlines.items() if sid in arrived]
    spread = last - min(deadlines.values())
    out = {"sessions": n, "pushed": len(arrived), "deadline_spread_s": round(spread, 3),
           "create_s": round(created_s, 2),
           "delay_ms": summary_ms(delays),
           "all_within_1s": len(arrived) == n and max(delays) <= 1.0, **usage}
    await close_all(http, sessions, target)
    return out


def _epoch(iso: str) -> float:
    from datetime import datetime
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


SCENARIOS = {"push": sc_push, "throughput": sc_throughput, "storm": sc_storm,
             "idle": sc_idle, "poll": sc_poll, "null": sc_null, "expiry": sc_expiry}


def main() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    if sys.argv[1] == "--idle-helper":
        asyncio.run(idle_helper(json.loads(sys.argv[2])))
        return
    spec = json.loads(sys.argv[1])
    random.seed(1)
    result = asyncio.run(SCENARIOS[spec["scenario"]](spec))
    text = json.dumps(result) + "\n"
    if spec.get("out"):
        with open(spec["out"], "w") as f:
            f.write(text)
    os.set_blocking(sys.stdout.fileno(), True)  # the event loop may have left it non-blocking
    sys.stdout.write(text)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
