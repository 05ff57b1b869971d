/**
 * Vending Hub browser client: a small, dependency-free ES module (CONTRACT §3 and §4).
 *
 * - {@link HubApi}: the phone's REST calls (register-user, progress, order-summary,
 *   status) over `fetch`, with the phone token as `Authorization: Bearer`.
 * - {@link SessionSocket}: the live session socket with the phone token in `?token=`;
 *   it resumes with `?since=<last seq seen>`, reconnects with full-jitter exponential
 *   backoff, drops duplicate events by `seq`, and sends ops that resolve with their ack.
 *
 * The same file is served by the hub at `/static/hub-client.js` and is
 * `clients/web/hub-client.js` in the repository.
 *
 * @example
 *   import { HubApi, SessionSocket } from "/static/hub-client.js";
 *   const api = new HubApi();
 *   const reg = await api.registerUser({ machineId, sessionId });
 *   const sock = new SessionSocket({ sessionId, token: reg.phone_token, role: "phone" });
 *   sock.on("event", (e) => console.log(e.seq, e.event));
 *   sock.on("presence", (p) => console.log("machine online:", p.machine));
 *   sock.connect();
 *   const { code, body } = await sock.op("progress", { user_progress: "brand_selected" });
 *
 * @module hub-client
 */

/** Close codes after which the client gives up (CONTRACT §4): auth, not found, over. */
export const FATAL_CLOSE_CODES = Object.freeze([4401, 4403, 4404, 4410, 1009]);

/** Events that end a session: after one of them a 1000 close is final. */
export const TERMINAL_EVENTS = Object.freeze([
  "payment.completed", "session.expired", "session.cancelled",
]);

/** Session statuses that are final. */
export const TERMINAL_STATUSES = Object.freeze(["payment_completed", "expired", "cancelled"]);

/**
 * A REST call the hub refused (any non-2xx answer), with its `detail` text.
 */
export class HubHttpError extends Error {
  /**
   * @param {number} status HTTP status code
   * @param {string} detail the hub's `detail` text (or the status text)
   * @param {*} body the parsed response body, if any
   */
  constructor(status, detail, body) {
    super(`${status} ${detail}`);
    this.name = "HubHttpError";
    /** @type {number} */ this.status = status;
    /** @type {string} */ this.detail = detail;
    this.body = body;
  }
}

/**
 * The delay before reconnect attempt `attempt` (0-based): full jitter, a uniform random
 * value in `[0, min(capMs, baseMs * 2 ** attempt))`.
 *
 * @param {number} attempt how many attempts failed in a row (0 for the first retry)
 * @param {{baseMs?: number, capMs?: number, random?: () => number}} [opts]
 * @returns {number} milliseconds
 */
export function backoffDelay(attempt, { baseMs = 500, capMs = 30000, random = Math.random } = {}) {
  const ceiling = Math.min(capMs, baseMs * 2 ** Math.min(attempt, 30));
  return Math.floor(random() * ceiling);
}

/**
 * The hub's origin for a page: `location.origin` in a browser.
 * @returns {string}
 */
function defaultBaseUrl() {
  return typeof location !== "undefined" ? location.origin : "";
}

/** Status-body fields an event's `data` carries. */
const EVENT_FIELDS = {
  "order.summary": ["order_id", "payment_amount", "currency"],
  "payment.completed": ["transaction_id", "payment_method", "payment_amount"],
};

function pick(obj, keys) {
  const out = {};
  for (const k of keys) if (obj && obj[k] !== undefined) out[k] = obj[k];
  return out;
}

/** `https://h/x` → `wss://h/x`, `http://` → `ws://`. */
function wsUrl(baseUrl) {
  return baseUrl.replace(/^http(s?):/i, "ws$1:");
}

/**
 * The phone's REST calls (CONTRACT §3). Every method resolves with the parsed JSON body
 * of a 2xx answer and rejects with a {@link HubHttpError} otherwise.
 */
export class HubApi {
  /**
   * @param {object} [opts]
   * @param {string} [opts.baseUrl] the hub's origin, e.g. `https://hub.example`
   *   (default: the page's own origin)
   * @param {string|null} [opts.token] the phone token, if already known
   * @param {typeof fetch} [opts.fetch] a `fetch` to use (tests)
   */
  constructor({ baseUrl = defaultBaseUrl(), token = null, fetch: fetchFn } = {}) {
    /** @type {string} */ this.baseUrl = baseUrl.replace(/\/+$/, "");
    /** @type {string|null} the phone token sent as `Authorization: Bearer` */
    this.token = token;
    this._fetch = fetchFn || globalThis.fetch.bind(globalThis);
  }

  /**
   * One call: `method` on `/api/vending/session/{sessionId}{tail}`.
   * @param {string} method
   * @param {string} sessionId
   * @param {string} tail e.g. `/progress`
   * @param {object} [body] sent as JSON
   * @returns {Promise<any>}
   */
  async request(method, sessionId, tail, body) {
    const headers = {};
    if (this.token) headers.Authorization = `Bearer ${this.token}`;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const url = `${this.baseUrl}/api/vending/session/${encodeURIComponent(sessionId)}${tail}`;
    const res = await this._fetch(url, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
    });
    let parsed = null;
    try {
      parsed = await res.json();
    } catch (_) {
      parsed = null;
    }
    if (!res.ok) {
      const detail = parsed && typeof parsed.detail === "string" ? parsed.detail : res.statusText;
      throw new HubHttpError(res.status, detail, parsed);
    }
    return parsed;
  }

  /**
   * `POST register-user`: bind this phone to the session. Needs no credential the first
   * time; the returned `phone_token` is kept in {@link HubApi#token} for later calls
   * (send it again to re-register after a reload: the same phone gets 200).
   *
   * @param {object} args
   * @param {string} args.machineId the QR's `machine_id`
   * @param {string} args.sessionId the QR's `session_id`
   * @param {string} [args.location]
   * @param {string} [args.userAgent] default `navigator.userAgent`
   * @returns {Promise<{success: boolean, session_id: string, machine_info: object,
   *   expires_at: string, user_progress: string, phone_token: string}>}
   */
  async registerUser({ machineId, sessionId, location, userAgent }) {
    const body = { machine_id: machineId, session_id: sessionId };
    if (location) body.location = location;
    const ua = userAgent ?? (typeof navigator !== "undefined" ? navigator.userAgent : undefined);
    if (ua) body.user_agent = ua.slice(0, 500);
    const out = await this.request("POST", sessionId, "/register-user", body);
    if (out && out.phone_token) this.token = out.phone_token;
    return out;
  }

  /**
   * `POST progress`: `brand_selected`, `design_complete` or `payment_reached`
   * (older or repeated values are a no-op 200).
   * @param {string} sessionId
   * @param {string} userProgress
   * @returns {Promise<{success: boolean, session_id: string, status: string, user_progress: string}>}
   */
  progress(sessionId, userProgress) {
    return this.request("POST", sessionId, "/progress", { user_progress: userProgress });
  }

  /**
   * `POST order-summary`: send the order; the session becomes `payment_pending`.
   * Leave `paymentAmount` out to take the hub's price (in `keys` mode a different amount
   * is refused with 409).
   * @param {string} sessionId
   * @param {object} args
   * @param {object} args.orderData the guide's `order_data` (`brand, model, color,
   *   template{id,name}, designImage` (a data URL), `inputText, selectedFont, …`)
   * @param {number|string} [args.paymentAmount]
   * @param {string} [args.currency]
   * @returns {Promise<{success: boolean, session_id: string, order_id: string,
   *   payment_amount: number, currency: string, status: string}>}
   */
  orderSummary(sessionId, { orderData, paymentAmount, currency }) {
    const body = { session_id: sessionId, order_data: orderData };
    if (paymentAmount !== undefined && paymentAmount !== null) body.payment_amount = paymentAmount;
    if (currency) body.currency = currency;
    return this.request("POST", sessionId, "/order-summary", body);
  }

  /**
   * `GET status`: the session's current status body.
   * @param {string} sessionId
   * @returns {Promise<object>}
   */
  status(sessionId) {
    return this.request("GET", sessionId, "/status");
  }
}

/**
 * The live session socket (CONTRACT §4) with resume, reconnect, de-duplication and ops.
 *
 * Listen with {@link SessionSocket#on}:
 * - `snapshot` (frame): a first frame or a snapshot after a lost resume;
 * - `event` (frame): each event once, in `seq` order;
 * - `presence` ({machine, phone}): who is online, from snapshots and presence frames;
 * - `session` (status object): the session as last known, after every snapshot/event;
 * - `state` ({state, code, reason, delay}): `connecting`, `open`, `reconnecting`
 *   (with `delay` ms), `closed` (final, with the close `code`);
 * - `frame` (any frame as received, duplicates included).
 */
export class SessionSocket {
  /**
   * @param {object} opts
   * @param {string} opts.sessionId
   * @param {string|null} [opts.token] phone token (or machine key), sent as `?token=`
   * @param {string} [opts.role] `phone` or `machine`: only read by a hub in `open` mode
   * @param {string} [opts.baseUrl] the hub's origin (default: the page's origin)
   * @param {number} [opts.since] resume after this seq on the first connect
   * @param {number} [opts.baseMs] backoff base (default 500 ms)
   * @param {number} [opts.capMs] backoff cap (default 30 s)
   * @param {number} [opts.pingIntervalMs] app-level ping interval (default 25 s; 0: off)
   * @param {number} [opts.pongTimeoutMs] reconnect when no frame comes this long after a
   *   ping (default 10 s)
   * @param {typeof WebSocket} [opts.WebSocket] a WebSocket class to use (tests)
   */
  constructor({
    sessionId, token = null, role, baseUrl = defaultBaseUrl(), since = null,
    baseMs = 500, capMs = 30000, pingIntervalMs = 25000, pongTimeoutMs = 10000,
    WebSocket: WS,
  }) {
    this.sessionId = sessionId;
    this.token = token;
    this.role = role;
    this.baseUrl = baseUrl.replace(/\/+$/, "");
    this.backoff = { baseMs, capMs };
    this.pingIntervalMs = pingIntervalMs;
    this.pongTimeoutMs = pongTimeoutMs;
    this._WS = WS || globalThis.WebSocket;
    /** @type {number|null} the last seq seen (events and snapshots); sent as `since` */
    this.lastSeq = since;
    /** @type {object|null} the session's status body, kept current from frames */
    this.session = null;
    /** @type {{machine: boolean, phone: boolean}|null} */
    this.presence = null;
    /** @type {string} `idle`, `connecting`, `open`, `reconnecting` or `closed` */
    this.state = "idle";
    /** @type {number|null} the close code that ended the socket for good */
    this.closeCode = null;
    this._listeners = new Map();
    this._pending = new Map();
    this._nextId = 1;
    this._attempt = 0;
    this._ws = null;
    this._timer = null;
    this._pingTimer = null;
    this._pongTimer = null;
    this._terminal = false;
    this._stopped = false;
    this._sinceRetried = false;
    this._onOnline = () => {
      if (this.state === "reconnecting") this._open();
    };
  }

  /**
   * Listen to `type` (see the class doc). Returns a function that stops listening.
   * @param {string} type
   * @param {(arg: any) => void} fn
   * @returns {() => void}
   */
  on(type, fn) {
    if (!this._listeners.has(type)) this._listeners.set(type, new Set());
    this._listeners.get(type).add(fn);
    return () => this._listeners.get(type).delete(fn);
  }

  _emit(type, arg) {
    for (const fn of this._listeners.get(type) || []) {
      try {
        fn(arg);
      } catch (err) {
        setTimeout(() => { throw err; });
      }
    }
  }

  _setState(state, extra = {}) {
    this.state = state;
    this._emit("state", { state, ...extra });
  }

  /** Open the socket (and keep it open until {@link SessionSocket#close} or a final close). */
  connect() {
    if (this._stopped || this.state === "open" || this.state === "connecting") return this;
    if (typeof window !== "undefined") window.addEventListener("online", this._onOnline);
    this._open();
    return this;
  }

  /** The socket URL for the next attempt. */
  url() {
    const q = new URLSearchParams();
    if (this.token) q.set("token", this.token);
    if (this.role) q.set("role", this.role);
    if (this.lastSeq !== null && this.lastSeq !== undefined) q.set("since", String(this.lastSeq));
    const qs = q.toString();
    return `${wsUrl(this.baseUrl)}/api/vending/session/${encodeURIComponent(this.sessionId)}/ws`
      + (qs ? `?${qs}` : "");
  }

  _open() {
    clearTimeout(this._timer);
    this._timer = null;
    this._setState("connecting");
    let ws;
    try {
      ws = new this._WS(this.url());
    } catch (err) {
      this._scheduleReconnect(1006, String(err));
      return;
    }
    this._ws = ws;
    this._usedSince = this.lastSeq !== null && this.lastSeq !== undefined;
    ws.onopen = () => {
      if (this._ws !== ws) return;
      this._setState("open");
      this._startPing();
    };
    ws.onmessage = (msg) => {
      if (this._ws !== ws) return;
      this._onFrame(msg.data);
    };
    ws.onclose = (ev) => {
      if (this._ws !== ws) return;
      this._ws = null;
      this._onClose(ev.code, ev.reason);
    };
    ws.onerror = () => {};  // a close event always follows
  }

  _onFrame(text) {
    let frame;
    try {
      frame = JSON.parse(text);
    } catch (_) {
      return;
    }
    this._attempt = 0;  // the hub answered: the next drop starts the backoff again
    this._sinceRetried = false;
    this._gotFrame();
    this._emit("frame", frame);
    switch (frame.type) {
      case "snapshot":
        if (typeof frame.seq === "number") this.lastSeq = frame.seq;
        if (frame.session) this.session = { ...frame.session };
        if (frame.presence) this._setPresence({ ...frame.presence });
        this._emit("snapshot", frame);
        if (this.session) this._emit("session", this.session);
        if (this.session && TERMINAL_STATUSES.includes(this.session.status)) this._terminal = true;
        break;
      case "event":
        if (typeof frame.seq === "number" && this.lastSeq !== null && frame.seq <= this.lastSeq) {
          return;  // seen before (a resume overlapping what we had)
        }
        this.lastSeq = frame.seq;
        this.session = {
          ...(this.session || { session_id: frame.session_id }),
          ...pick(frame.data, EVENT_FIELDS[frame.event] || []),
          status: frame.status, user_progress: frame.user_progress, seq: frame.seq,
        };
        if (TERMINAL_EVENTS.includes(frame.event)) this._terminal = true;
        this._emit("event", frame);
        this._emit("session", this.session);
        break;
      case "presence":
        this._setPresence({ ...(this.presence || { machine: false, phone: false }),
          [frame.role]: !!frame.online });
        break;
      case "ack": {
        const p = this._pending.get(frame.id);
        if (p) {
          this._pending.delete(frame.id);
          clearTimeout(p.timer);
          p.resolve({ code: frame.code, body: frame.body });
        }
        break;
      }
      default:
        break;  // pong, or a frame type of a later version
    }
  }

  _setPresence(p) {
    this.presence = p;
    this._emit("presence", p);
  }

  _onClose(code, reason) {
    this._stopPing();
    this._failPending(`socket closed (${code}) before the ack`);
    if (this._stopped) {
      this._final(code, reason);
    } else if (FATAL_CLOSE_CODES.includes(code) || (code === 1000 && this._terminal)) {
      this._final(code, reason);
    } else if (code === 4400 && this._usedSince && !this._sinceRetried) {
      // the hub refused our `since` (ahead of what it holds): start again from a snapshot
      this._sinceRetried = true;
      this.lastSeq = null;
      this._open();
    } else if (code === 4400) {
      this._final(code, reason);
    } else {
      this._scheduleReconnect(code, reason);
    }
  }

  _scheduleReconnect(code, reason) {
    const delay = backoffDelay(this._attempt++, this.backoff);
    this._setState("reconnecting", { code, reason, delay });
    this._timer = setTimeout(() => this._open(), delay);
  }

  _final(code, reason) {
    clearTimeout(this._timer);
    this._stopped = true;
    this.closeCode = code;
    if (typeof window !== "undefined") window.removeEventListener("online", this._onOnline);
    this._setState("closed", { code, reason });
  }

  _failPending(message) {
    for (const [, p] of this._pending) {
      clearTimeout(p.timer);
      p.reject(new Error(message));
    }
    this._pending.clear();
  }

  _startPing() {
    this._stopPing();
    if (!this.pingIntervalMs) return;
    this._pingTimer = setInterval(() => {
      if (!this._ws || this._ws.readyState !== 1) return;
      this._ws.send('{"op":"ping"}');
      if (!this._pongTimer) {
        this._pongTimer = setTimeout(() => {
          // no frame since the ping: the connection is dead; drop it and reconnect
          if (this._ws) this._ws.close(4000, "no pong");
        }, this.pongTimeoutMs);
      }
    }, this.pingIntervalMs);
  }

  _gotFrame() {
    clearTimeout(this._pongTimer);
    this._pongTimer = null;
  }

  _stopPing() {
    clearInterval(this._pingTimer);
    this._gotFrame();
    this._pingTimer = null;
  }

  /**
   * Send an op (`progress`, `order_summary`, `confirm_payment`, `cancel`) with the
   * fields of the matching REST body; resolves with the ack's `{code, body}` (the REST
   * answer: check `code`). Rejects when the socket is not open, closes before the ack,
   * or no ack comes within `timeoutMs`. Inbound frames are limited to 64 KiB: send large
   * orders (a design image) with {@link HubApi#orderSummary}.
   *
   * @param {string} op
   * @param {object} [fields]
   * @param {{timeoutMs?: number}} [opts]
   * @returns {Promise<{code: number, body: any}>}
   */
  op(op, fields = {}, { timeoutMs = 10000 } = {}) {
    return new Promise((resolve, reject) => {
      const ws = this._ws;
      if (!ws || ws.readyState !== 1) {
        reject(new Error("socket not open"));
        return;
      }
      const id = this._nextId++;
      const timer = setTimeout(() => {
        this._pending.delete(id);
        reject(new Error(`no ack for ${op} #${id} within ${timeoutMs} ms`));
      }, timeoutMs);
      this._pending.set(id, { resolve, reject, timer });
      ws.send(JSON.stringify({ ...fields, op, id }));
    });
  }

  /** Close for good (code 1000); no reconnect follows. */
  close() {
    this._stopped = true;
    clearTimeout(this._timer);
    if (this._ws) {
      this._ws.close(1000, "client closed");
    } else if (this.state !== "closed") {
      this._final(1000, "client closed");
    }
  }
}
