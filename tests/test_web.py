"""The phone demo page (``GET /``, where ``qr_url`` lands) and ``hub-client.js``, driven in
headless Chromium (Debian's ``/usr/bin/chromium``, through Playwright) against real hubs.

One browser serves the module; each test has its own browser context (its own
``sessionStorage``, so its own phone).
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, Page, async_playwright

from .api import Api, close_code, connect, recv_json, recv_until
from .server import ROOT, HubServer

CHROMIUM = os.environ.get("HUB_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
DEFAULT_QR_BASE = "https://pimpmycase.shop/"

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                reason=f"no Chromium at {CHROMIUM} (.ci/run installs it)")


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        await b.close()


@pytest.fixture(scope="module")
def web_hub(tmp_path_factory: pytest.TempPathFactory, backend: dict[str, str]
            ) -> Iterator[HubServer]:
    """A ``keys`` hub whose QR codes point at itself: ``HUB_QR_BASE=http://127.0.0.1:PORT/``."""
    env = {**backend, "HUB_REDIS_PREFIX": f"w{uuid.uuid4().hex[:8]}:"} if backend else {}
    server = HubServer(tmp_path_factory.mktemp("web") / "hub.db", env)
    server.env_overrides["HUB_QR_BASE"] = server.url + "/"
    server.start()
    yield server
    server.stop()
    assert not server.errors_logged(), server.errors_logged()


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context()
    p = await context.new_page()
    p.set_default_timeout(10_000)
    errors: list[str] = []
    p.on("pageerror", lambda exc: errors.append(str(exc)))
    yield p
    await context.close()
    assert not errors, errors


async def machine(server: HubServer, name: str) -> tuple[str, str]:
    """A registered machine of ``server``: (machine id, key)."""
    mid = f"{name}_{uuid.uuid4().hex[:6]}"
    return mid, await asyncio.to_thread(server.add_machine, mid, "--name", "Mall Kiosk",
                                        "--location", "Level 2")


async def walk_to_waiting(page: Page) -> None:
    """Click through brand → design → pay; the page ends at "waiting for payment"."""
    await page.wait_for_selector("body[data-step=brand]")
    await page.select_option("#brand", "iPhone")
    await page.click("#brand-next")
    await page.wait_for_selector("body[data-step=design]")
    await page.fill("#text", "Hello hub")
    await page.click("#design-next")
    await page.wait_for_selector("body[data-step=review]")
    await page.click("#pay-next")
    await page.wait_for_selector("body[data-step=waiting]")


async def logged_events(page: Page) -> list[tuple[int, str]]:
    rows = await page.eval_on_selector_all(
        "#log li", "els => els.map(e => [Number(e.dataset.seq), e.dataset.event])")
    return [(seq, event) for seq, event in rows]


async def test_page_and_client_are_served(web_hub: HubServer) -> None:
    async with httpx.AsyncClient(base_url=web_hub.url) as http:
        r = await http.get("/", params={"qr": "true", "machine_id": "VM1",
                                        "session_id": "VM1_20250123_155030_X9Y8Z7AB"})
        assert r.status_code == 200
        assert r.headers["content-type"] == "text/html; charset=utf-8"
        assert "default-src 'self'" in r.headers["content-security-policy"]
        assert '<script type="module" src="/static/phone.js">' in r.text
        r = await http.get("/static/hub-client.js")
        assert r.status_code == 200
        assert r.headers["content-type"] == "text/javascript; charset=utf-8"
        assert r.headers["x-content-type-options"] == "nosniff"
        # one source of truth: the repository's client is the file the hub serves
        assert r.content == (ROOT / "clients" / "web" / "hub-client.js").read_bytes()
        assert (await http.get("/static/phone.css")).headers["content-type"].startswith(
            "text/css")
        for path in ("/static/index.html", "/static/nope.js", "/static/..%2Fpages.py",
                     "/static/../http/pages.py"):
            r = await http.get(path)
            assert r.status_code == 404, path
            assert r.json() == {"detail": "Not Found"}


async def test_phone_flow_keys_mode(web_hub: HubServer, page: Page) -> None:
    """The QR's URL opens the page; it registers (no credential), shows the machine going
    online and offline, walks to "waiting for payment", and shows the payment the machine
    confirms over REST with its key."""
    mid, key = await machine(web_hub, "WEB")
    async with Api(web_hub) as api:
        r = await api.create(mid, key, location="Westfield")
        assert r.status_code == 200, r.text
        sid, qr_url = r.json()["session_id"], r.json()["qr_url"]
        assert qr_url.startswith(web_hub.url + "/?qr=true&")
        await page.goto(qr_url)
        await page.wait_for_selector("#conn[data-state=open]")
        await page.wait_for_selector("#presence[data-online=false]")
        assert await page.text_content("#machine-name") == "Mall Kiosk"

        # the machine's socket opens: the phone sees it online; it closes: offline
        ws = await connect(web_hub, f"/api/vending/session/{sid}/ws", key)
        snap = await recv_json(ws)
        assert snap["presence"]["phone"] is True  # the page's socket counts as the phone
        await page.wait_for_selector("#presence[data-online=true]")
        assert await page.text_content("#presence") == "Machine online"
        await ws.close()
        await page.wait_for_selector("#presence[data-online=false]")

        ws = await connect(web_hub, f"/api/vending/session/{sid}/ws", key)
        assert (await recv_json(ws))["type"] == "snapshot"
        await page.wait_for_selector("#presence[data-online=true]")
        await walk_to_waiting(page)
        frames = await recv_until(ws, "order.summary")
        assert [f["event"] for f in frames] == ["progress"] * 3 + ["order.summary"]
        assert frames[0]["user_progress"] == "brand_selected"
        order = frames[-1]["data"]["order_data"]
        assert (order["brand"], order["model"], order["inputText"]) == (
            "iPhone", "iPhone 15 Pro", "Hello hub")
        assert await page.text_content("#amount") == "£19.99"
        image = await api.http.get(api.path(sid, "/design-image"),
                                   headers={"Authorization": f"Bearer {key}"})
        assert image.status_code == 200 and image.content.startswith(b"\x89PNG")

        r = await api.confirm(sid, key, f"TXN_{sid[-8:]}")
        assert r.status_code == 200, r.text
        await page.wait_for_selector("body[data-step=paid]")
        assert await page.text_content("#transaction-id") == f"TXN_{sid[-8:]}"
        await recv_until(ws, "payment.completed")
        assert await close_code(ws) == 1000
    # the page's socket ends for good after the terminal event (1000, no reconnect)
    await page.wait_for_selector("#conn[data-state=closed]")
    events = await logged_events(page)
    assert [e for _, e in events][-2:] == ["order.summary", "payment.completed"]
    seqs = [s for s, _ in events]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))


async def test_phone_flow_open_mode(open_hub: HubServer, page: Page) -> None:
    """``hub serve --open``: an unknown machine, no credentials anywhere."""
    mid = f"OPEN_{uuid.uuid4().hex[:6]}"
    async with Api(open_hub) as api:
        r = await api.create(mid, location="Test Location")
        assert r.status_code == 200, r.text
        sid = r.json()["session_id"]
        # the shared open hub keeps the default QR base: land on this hub instead
        url = r.json()["qr_url"].replace(DEFAULT_QR_BASE, open_hub.url + "/")
        assert url.startswith(open_hub.url + "/?qr=true&")
        await page.goto(url)
        await page.wait_for_selector("#conn[data-state=open]")
        ws = await connect(open_hub, f"/api/vending/session/{sid}/ws")  # role=machine
        await recv_json(ws)
        await page.wait_for_selector("#presence[data-online=true]")
        await walk_to_waiting(page)
        r = await api.confirm(sid, None, f"OPEN_TXN_{sid[-8:]}")
        assert r.status_code == 200, r.text
        await page.wait_for_selector("body[data-step=paid]")
        await ws.close()
    assert [e for _, e in await logged_events(page)][-1] == "payment.completed"


async def test_reload_keeps_the_phone_and_another_phone_is_refused(
        web_hub: HubServer, browser: Browser, page: Page) -> None:
    """A reload re-registers with the token the page kept and resumes at its step; a
    second phone scanning the same QR gets ``Session already claimed``."""
    mid, key = await machine(web_hub, "RELOAD")
    async with Api(web_hub) as api:
        r = await api.create(mid, key)
        sid, qr_url = r.json()["session_id"], r.json()["qr_url"]
        await page.goto(qr_url)
        await page.click("#brand-next")
        await page.click("#design-next")
        await page.wait_for_selector("body[data-step=review]")
        await page.reload()
        await page.wait_for_selector("body[data-step=review]")
        await page.wait_for_selector("#conn[data-state=open]")
        assert await page.is_hidden("#error")

        other = await browser.new_context()
        try:
            phone2 = await other.new_page()
            await phone2.goto(qr_url)
            await phone2.wait_for_selector("#error:not([hidden])", timeout=10_000)
            assert await phone2.text_content("#error") == "Session already claimed"
        finally:
            await other.close()

        status = (await api.status(sid, key)).json()
        assert status["user_progress"] == "design_complete"


async def test_landing_without_a_session(web_hub: HubServer, page: Page) -> None:
    await page.goto(web_hub.url + "/")
    await page.wait_for_selector("body[data-step=noqr]")


CLIENT_LOGIC = """
async () => {
  const m = await import("/static/hub-client.js");
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const until = async (fn) => { for (let i = 0; i < 400 && !fn(); i++) await sleep(5); return fn(); };
  const out = {};

  out.backoff = [];
  for (let a = 0; a < 12; a++) {
    const hi = m.backoffDelay(a, { baseMs: 500, capMs: 30000, random: () => 0.999999 });
    const lo = m.backoffDelay(a, { baseMs: 500, capMs: 30000, random: () => 0 });
    out.backoff.push([lo, hi]);
  }

  class FakeWS {
    static all = [];
    constructor(url) {
      this.url = url; this.readyState = 0; this.sent = []; FakeWS.all.push(this);
      setTimeout(() => { this.readyState = 1; this.onopen && this.onopen(); }, 0);
    }
    send(text) { this.sent.push(JSON.parse(text)); }
    close(code, reason) { this.drop(code, reason); }
    frame(obj) { this.onmessage({ data: JSON.stringify(obj) }); }
    drop(code, reason = "") { this.readyState = 3; setTimeout(() => this.onclose({ code, reason }), 0); }
  }
  const ev = (seq, event = "progress", data = {}) => ({ type: "event", session_id: "S1", seq,
    event, at: "", status: "designing", user_progress: "brand_selected", data });
  const opened = (n) => until(() => FakeWS.all.length >= n && FakeWS.all[n - 1].readyState === 1);

  const sock = new m.SessionSocket({ baseUrl: "https://hub.example", sessionId: "S1",
    token: "tok en", role: "phone", baseMs: 1, capMs: 4, pingIntervalMs: 0, WebSocket: FakeWS });
  const seen = []; const states = [];
  sock.on("event", (e) => seen.push(e.seq));
  sock.on("state", (s) => states.push(s.code ? `${s.state}:${s.code}` : s.state));
  sock.connect();
  await opened(1);
  const ws0 = FakeWS.all[0];
  out.url0 = ws0.url;
  ws0.frame({ type: "snapshot", seq: 2, session: { session_id: "S1", status: "designing",
    user_progress: "qr_scanned", seq: 2 }, presence: { machine: false, phone: true } });
  ws0.frame(ev(3)); ws0.frame(ev(3)); ws0.frame(ev(2)); ws0.frame(ev(4));
  const ack = sock.op("progress", { user_progress: "brand_selected" });
  const sent = ws0.sent.at(-1);
  out.sentOp = sent;
  ws0.frame({ type: "ack", id: sent.id, code: 200, body: { success: true } });
  out.ack = await ack;
  const lost = sock.op("cancel");
  ws0.drop(1012);
  out.lostRejected = await lost.then(() => false, () => true);

  await opened(2);
  const ws1 = FakeWS.all[1];
  out.url1 = ws1.url;
  ws1.frame(ev(4)); ws1.frame(ev(5, "order.summary", { order_id: "O1", payment_amount: 19.99, currency: "GBP" }));
  ws1.frame({ type: "presence", session_id: "S1", role: "machine", online: true });
  out.presence = sock.presence;
  out.notOpen = await new m.SessionSocket({ sessionId: "X", WebSocket: FakeWS })
    .op("ping").then(() => false, () => true);
  ws1.drop(4400);  // the hub refused our since: start again from a snapshot

  await opened(3);
  const ws2 = FakeWS.all[2];
  out.url2 = ws2.url;
  ws2.frame({ type: "snapshot", seq: 5, session: { session_id: "S1", status: "payment_pending",
    user_progress: "payment_pending", seq: 5, order_id: "O1" }, presence: { machine: true, phone: true } });
  ws2.frame(ev(6, "payment.completed", { transaction_id: "T1", payment_method: "card" }));
  ws2.drop(1000);
  await until(() => sock.state === "closed");
  await sleep(30);
  out.session = sock.session;
  out.closeCode = sock.closeCode;
  out.sockets = FakeWS.all.length;  // no reconnect after the terminal event's 1000
  out.seen = seen;
  out.states = states;

  // a refused credential is final; a 1000 before any terminal event reconnects
  const fatal = new m.SessionSocket({ sessionId: "S2", baseMs: 1, capMs: 2, pingIntervalMs: 0, WebSocket: FakeWS });
  fatal.connect(); await opened(4); FakeWS.all[3].drop(4401);
  await until(() => fatal.state === "closed"); await sleep(20);
  out.fatal = [fatal.closeCode, FakeWS.all.length];
  const early = new m.SessionSocket({ sessionId: "S3", baseMs: 1, capMs: 2, pingIntervalMs: 0, WebSocket: FakeWS });
  early.connect(); await opened(5); FakeWS.all[4].drop(1000);
  await opened(6);
  out.early = [early.state, FakeWS.all.length];
  early.close();
  await until(() => early.state === "closed");
  out.earlyClosed = early.state;
  return out;
}
"""


async def test_client_resume_dedup_ops_and_close_codes(web_hub: HubServer, page: Page) -> None:
    """hub-client.js's socket logic against a scripted fake WebSocket, in the browser."""
    await page.goto(web_hub.url + "/")
    out: dict[str, Any] = await page.evaluate(CLIENT_LOGIC)
    for attempt, (lo, hi) in enumerate(out["backoff"]):  # full jitter: [0, min(cap, b·2^a))
        assert lo == 0 and hi == min(30000, 500 * 2 ** attempt) - 1
    assert out["url0"] == "wss://hub.example/api/vending/session/S1/ws?token=tok+en&role=phone"
    assert out["sentOp"] == {"user_progress": "brand_selected", "op": "progress", "id": 1}
    assert out["ack"] == {"code": 200, "body": {"success": True}}
    assert out["lostRejected"] and out["notOpen"]
    assert out["url1"].endswith("?token=tok+en&role=phone&since=4")  # resume after 4
    assert out["presence"] == {"machine": True, "phone": True}
    assert "since" not in out["url2"]
    assert out["seen"] == [3, 4, 5, 6]  # each once, in order
    assert out["session"]["transaction_id"] == "T1"
    assert out["session"]["order_id"] == "O1"
    assert out["closeCode"] == 1000 and out["sockets"] == 3
    assert out["states"][:3] == ["connecting", "open", "reconnecting:1012"]
    assert out["states"][-1] == "closed:1000"
    assert out["fatal"] == [4401, 4]
    assert out["early"] == ["open", 6] and out["earlyClosed"] == "closed"


async def test_page_resumes_after_a_hub_restart(web_hub: HubServer, page: Page) -> None:
    """SIGTERM closes the page's socket with 1012; it reconnects with ``since`` once the
    hub is back and shows the payment confirmed after the restart, each event once."""
    mid, key = await machine(web_hub, "RESTART")
    async with Api(web_hub) as api:
        r = await api.create(mid, key)
        sid, qr_url = r.json()["session_id"], r.json()["qr_url"]
        await page.goto(qr_url)
        await page.wait_for_selector("#conn[data-state=open]")
        await walk_to_waiting(page)
        await page.wait_for_function(
            "document.querySelectorAll('#log li[data-event=\"order.summary\"]').length === 1")
        await asyncio.to_thread(web_hub.stop)
        await page.wait_for_selector("#conn[data-state=reconnecting]")
        await asyncio.to_thread(web_hub.start)
        r = await api.confirm(sid, key, f"RTXN_{sid[-8:]}")
        assert r.status_code == 200, r.text
        await page.wait_for_selector("body[data-step=paid]", timeout=20_000)
    events = await logged_events(page)
    assert [e for _, e in events].count("payment.completed") == 1
    seqs = [s for s, _ in events]
    assert seqs == sorted(set(seqs))
