// The phone demo page at the QR landing path: register → progress → order → wait for the
// machine's payment, with the machine's presence shown live. Uses only hub-client.js.
import { HubApi, HubHttpError, SessionSocket, TERMINAL_STATUSES } from "./hub-client.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const machineId = params.get("machine_id");
const sessionId = params.get("session_id");
const qrLocation = params.get("location");

const MODELS = {
  iPhone: ["iPhone 15 Pro", "iPhone 15", "iPhone 14"],
  Samsung: ["Galaxy S24", "Galaxy S23"],
  Google: ["Pixel 8 Pro", "Pixel 8"],
};

const api = new HubApi();
const tokenKey = `vending-hub.phone-token.${sessionId}`;
let socket = null;

/** The page step for a session's `status` and `user_progress`. */
function stepFor(status, progress) {
  if (status === "payment_completed") return "paid";
  if (status === "expired" || status === "cancelled") return "over";
  switch (progress) {
    case "brand_selected": return "design";
    case "design_complete":
    case "payment_reached": return "review";
    case "payment_pending": return "waiting";
    default: return "brand";
  }
}

function show(step) {
  document.body.dataset.step = step;
  for (const section of document.querySelectorAll("main > section")) {
    section.hidden = section.dataset.step !== step;
  }
}

function showError(err) {
  const el = $("error");
  if (!err) {
    el.hidden = true;
    el.textContent = "";
    return;
  }
  el.textContent = err instanceof HubHttpError ? err.detail : String(err.message || err);
  el.hidden = false;
}

function money(amount, currency) {
  try {
    return new Intl.NumberFormat(undefined, { style: "currency", currency: currency || "GBP" })
      .format(Number(amount));
  } catch (_) {
    return `${Number(amount).toFixed(2)} ${currency || ""}`;
  }
}

/** Show a session status body (or a status-like object from an event). */
function showSession(s) {
  const el = $("status");
  el.dataset.status = s.status || "";
  el.dataset.progress = s.user_progress || "";
  el.textContent = `${s.status} · ${s.user_progress}`;
  if (s.payment_amount !== undefined) $("amount").textContent = money(s.payment_amount, s.currency);
  if (s.order_id) $("order-id").textContent = s.order_id;
  if (s.transaction_id) $("transaction-id").textContent = s.transaction_id;
  if (s.status === "expired") $("over-title").textContent = "This session has expired";
  if (s.status === "cancelled") $("over-title").textContent = "This session was cancelled";
  const step = stepFor(s.status, s.user_progress);
  // never step back from a later page the user is on because of an older frame
  const order = ["brand", "design", "review", "waiting", "paid", "over"];
  const current = document.body.dataset.step;
  if (!order.includes(current) || order.indexOf(step) >= order.indexOf(current)
      || TERMINAL_STATUSES.includes(s.status)) {
    show(step);
  }
}

function showPresence(p) {
  const el = $("presence");
  el.dataset.online = String(!!p.machine);
  el.textContent = p.machine ? "Machine online" : "Machine offline";
}

function showConn({ state, delay, code }) {
  const el = $("conn");
  el.dataset.state = state;
  el.textContent = {
    connecting: "Connecting…", open: "Live",
    closed: code === 1000 || code === 4410 ? "Session over" : `Disconnected (${code})`,
    reconnecting: `Reconnecting${delay ? ` in ${Math.ceil(delay / 1000)} s` : "…"}`,
  }[state] || state;
}

function logEvent(e) {
  const li = document.createElement("li");
  li.dataset.seq = String(e.seq);
  li.dataset.event = e.event;
  li.textContent = `#${e.seq} ${e.event} (${e.user_progress})`;
  $("log").append(li);
}

function fillModels() {
  const models = MODELS[$("brand").value] || [];
  $("model").replaceChildren(...models.map((m) => new Option(m, m)));
}

/** Draw the case and return it as a PNG data URL (the order's `designImage`). */
function drawPreview() {
  const canvas = $("preview");
  const ctx = canvas.getContext("2d");
  const { width: w, height: h } = canvas;
  ctx.clearRect(0, 0, w, h);
  ctx.fillStyle = $("color").value;
  const box = (x, y, bw, bh, r) => {
    ctx.beginPath();
    if (ctx.roundRect) ctx.roundRect(x, y, bw, bh, r); else ctx.rect(x, y, bw, bh);
    ctx.fill();
  };
  box(4, 4, w - 8, h - 8, 28);
  ctx.fillStyle = "#333";
  box(18, 18, 56, 70, 14);
  ctx.fillStyle = $("text-color").value;
  ctx.font = `bold 20px ${$("font").value}`;
  ctx.textAlign = "center";
  ctx.fillText($("text").value, w / 2, h * 0.6, w - 24);
  return canvas.toDataURL("image/png");
}

function orderData() {
  const color = $("color");
  return {
    brand: $("brand").value,
    model: $("model").value,
    color: color.options[color.selectedIndex].text,
    template: { id: "classic-text", name: "Classic Text" },
    designImage: drawPreview(),
    inputText: $("text").value,
    selectedFont: $("font").value,
    selectedTextColor: $("text-color").value,
  };
}

/** Progress over the socket (an op with an ack) when it is open, else over REST. */
async function sendProgress(value) {
  if (socket && socket.state === "open") {
    try {
      const { code, body } = await socket.op("progress", { user_progress: value });
      if (code !== 200) throw new HubHttpError(code, body && body.detail, body);
      return body;
    } catch (err) {
      if (err instanceof HubHttpError) throw err;
      // the socket dropped before the ack: progress is idempotent, so REST is safe
    }
  }
  return api.progress(sessionId, value);
}

/** Run a button's action once at a time, showing any refusal. */
function action(button, fn) {
  $(button).addEventListener("click", async () => {
    $(button).disabled = true;
    showError(null);
    try {
      await fn();
    } catch (err) {
      showError(err);
    } finally {
      $(button).disabled = false;
    }
  });
}

action("brand-next", async () => {
  showSession(await sendProgress("brand_selected"));
  drawPreview();
});
action("design-next", async () => {
  showSession(await sendProgress("design_complete"));
  $("review-text").textContent = `${$("model").value}, ${$("color").selectedOptions[0].text},`
    + ` “${$("text").value}”.`;
});
action("pay-next", async () => {
  await sendProgress("payment_reached");
  const res = await api.orderSummary(sessionId, { orderData: orderData() });
  showSession({ ...res, user_progress: "payment_pending" });
});

async function register() {
  const args = { machineId, sessionId, location: qrLocation || undefined };
  try {
    return await api.registerUser(args);
  } catch (err) {
    // a finished session this phone already holds: show where it ended
    if (api.token && err instanceof HubHttpError && (err.status === 409 || err.status === 410)) {
      const status = await api.status(sessionId).catch(() => null);
      if (status) return { ...status, finished: true };
    }
    throw err;
  }
}

async function main() {
  fillModels();
  $("brand").addEventListener("change", fillModels);
  for (const id of ["color", "text", "font", "text-color"]) {
    $(id).addEventListener("input", drawPreview);
  }
  drawPreview();
  if (!machineId || !sessionId) {
    show("noqr");
    return;
  }
  api.token = sessionStorage.getItem(tokenKey);
  let reg;
  try {
    reg = await register();
  } catch (err) {
    show("over");
    $("over-title").textContent = "Could not join this session";
    showError(err);
    return;
  }
  if (reg.phone_token) sessionStorage.setItem(tokenKey, reg.phone_token);
  if (reg.machine_info) {
    $("machine-name").textContent = reg.machine_info.name || reg.machine_info.id || machineId;
    const where = reg.machine_info.location || qrLocation;
    $("machine-location").textContent = where ? `· ${where}` : "";
  }
  if (reg.finished) {
    showSession(reg);
    return;
  }
  const status = await api.status(sessionId);
  showSession(status);
  socket = new SessionSocket({ sessionId, token: api.token, role: "phone", capMs: 8000 });
  socket.on("state", showConn);
  socket.on("presence", showPresence);
  socket.on("session", showSession);
  socket.on("event", logEvent);
  socket.on("state", async ({ state, code }) => {
    if (state === "closed" && code === 4410) {
      showSession(await api.status(sessionId));  // over before we connected
    }
  });
  socket.connect();
  window.hubSocket = socket;  // for debugging from the console
}

main().catch(showError);
