// The browser client of the sente protocol (PROTOCOL.md, version 1): one ES
// module, no dependencies. Served by the Go server at <path>/client.js.
//
//   import { connect } from "/chsk/client.js";
//   const chsk = connect("/chsk", { csrfToken: token });
//   chsk.on("chat/msg", (data) => show(data));
//   chsk.onState((s) => render(s));
//   const reply = await chsk.request("chat/history", { room: "lobby" }, { timeoutMs: 5000 });
//
// Resuming (PROTOCOL.md §6): the client keeps the position the server gave
// with its last batch and passes it back (the pos query parameter) on every
// WebSocket connect and every Ajax poll, so that after a drop, a server
// restart or a reload it gets every push it missed, in order, once. When the
// server's history no longer reaches back that far, state.lost is true after
// the handshake (and the "chsk/handshake" event says so): the application
// should refetch its state.

const SUBPROTOCOL = "sente.v1.json";
const NO_RECONNECT = new Set([4000, 4002]); // kicked, replaced

/** An error of a request: err.code is "closed", "timeout" or "error". */
export class ChskError extends Error {
  constructor(code, message) {
    super(message || code);
    this.name = "ChskError";
    this.code = code;
  }
}

/** Opens a channel socket on path and returns its client. */
export function connect(path, options = {}) {
  return new Client(path, options);
}

function randomId(n = 22) {
  const abc = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";
  const bytes = new Uint8Array(n);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => abc[b & 63]).join("");
}

// The client id lives in sessionStorage: a reload keeps it (the server's grace
// period then hides the reload), another tab gets its own. Only a reload reuses
// it: a tab opened with window.open or duplicated starts with a copy of the
// opener's sessionStorage, and the same id would replace the opener's
// connection (4002, which does not reconnect).
function tabClientId() {
  try {
    const nav = performance.getEntriesByType?.("navigation")?.[0];
    let id = nav?.type === "reload" ? sessionStorage.getItem("sente-client-id") : null;
    if (!id) {
      id = randomId();
      sessionStorage.setItem("sente-client-id", id);
    }
    return id;
  } catch {
    return randomId();
  }
}

// The position lives in sessionStorage beside the client id, so that a reload
// (which keeps the id) resumes where the page was. It is kept per path with
// the id it belongs to, and used only by a client with that id: a new id
// starts afresh, from the position of its first handshake. Without storage
// (private modes, sandboxed frames, quota) the position is kept in memory only.
function posKey(path) {
  return "sente-pos:" + path;
}

function loadPos(path, clientId) {
  try {
    const saved = JSON.parse(globalThis.sessionStorage?.getItem(posKey(path)) || "null");
    if (saved && saved.id === clientId && typeof saved.pos === "string" && saved.pos) return saved.pos;
  } catch {}
  return null;
}

function savePos(path, clientId, pos) {
  try {
    globalThis.sessionStorage?.setItem(posKey(path), JSON.stringify({ id: clientId, pos }));
  } catch {}
}

/** Backoff before attempt n (1-based): none for the first, then [b/2, b) doubling up to max. */
export function backoffMs(n, minMs = 500, maxMs = 30000) {
  if (n <= 1) return 0;
  const b = Math.min(maxMs, minMs * 2 ** (n - 2));
  return b / 2 + Math.random() * (b / 2);
}

export class Client {
  constructor(path, options = {}) {
    this.path = path;
    this.opts = {
      type: "auto",
      requestTimeoutMs: 10000,
      pingIntervalMs: 20000,
      pingTimeoutMs: 5000,
      minBackoffMs: 500,
      maxBackoffMs: 30000,
      params: {},
      ...options,
    };
    this.clientId = this.opts.clientId || tabClientId();
    this._pos = loadPos(this.path, this.clientId); // after the last batch received: given back on (re)connect
    this.state = {
      type: this.opts.type,
      transport: null,
      open: false,
      everOpened: false,
      uid: null,
      handshakeData: null,
      lost: false,
      lastClose: null,
      stopped: false,
      attempt: 0,
    };
    this._handlers = new Map(); // event id → Set of functions
    this._stateFns = new Set();
    this._pending = new Map(); // cb id → {resolve, reject, timer}
    this._cycle = 0; // bumps on each connect: stale callbacks compare it
    this._ws = null;
    this._polling = null; // AbortController of the current poll
    this._lastActivity = 0;
    this._kalive = null;
    this._retry = null;
    this._forceAjax = this.opts.type === "ajax" || (this.opts.type === "auto" && typeof WebSocket === "undefined");
    this._connect();
  }

  /** The position after the last batch received (opaque): null until the first handshake, unless a reload kept one. */
  get position() {
    return this._pos;
  }

  /** Registers fn(data, event) for pushed events with id ("*" for all); returns a function that removes it. */
  on(id, fn) {
    if (!this._handlers.has(id)) this._handlers.set(id, new Set());
    this._handlers.get(id).add(fn);
    return () => this._handlers.get(id)?.delete(fn);
  }

  /** Registers fn(state, previous) for state changes; returns a function that removes it. */
  onState(fn) {
    this._stateFns.add(fn);
    return () => this._stateFns.delete(fn);
  }

  /** Sends an event; false when the connection is not open. */
  send(id, data) {
    if (!this.state.open) return false;
    this._sendFrame([data === undefined ? [id] : [id, data], null]);
    return true;
  }

  /** Sends an event and resolves with the reply; rejects with a ChskError ("closed", "timeout", "error"). */
  request(id, data, { timeoutMs } = {}) {
    const timeout = timeoutMs ?? this.opts.requestTimeoutMs;
    if (!this.state.open) return Promise.reject(new ChskError("closed", "not connected"));
    const ev = data === undefined ? [id] : [id, data];
    if (this.state.transport === "ajax") return this._post(ev, timeout);
    return new Promise((resolve, reject) => {
      const cb = randomId(8);
      const timer = setTimeout(() => {
        this._pending.delete(cb);
        reject(new ChskError("timeout", `no reply to ${id} within ${timeout} ms`));
      }, timeout);
      this._pending.set(cb, { resolve, reject, timer });
      this._sendFrame([ev, cb]);
    });
  }

  /** Drops the connection and connects again at once, keeping the client id (after a login, say). */
  reconnect() {
    this._disconnect({ code: 1000, reason: "requested-reconnect" });
    this.state.stopped = false;
    this._forceAjax = this.opts.type === "ajax" || (this.opts.type === "auto" && typeof WebSocket === "undefined");
    this._setState({ attempt: 0, stopped: false });
    this._connect();
  }

  /** Closes for good: no more reconnects. */
  close() {
    this._disconnect({ code: 1000, reason: "requested-disconnect" });
    this._setState({ stopped: true });
  }

  // ---- internals ----

  _url(ws, extra = {}) {
    const loc = globalThis.location;
    const base = new URL(this.path, loc ? loc.href : "http://localhost/");
    if (ws) base.protocol = base.protocol === "https:" ? "wss:" : "ws:";
    const q = new URLSearchParams({ ...this.opts.params, ...extra, "client-id": this.clientId });
    base.search = q.toString();
    return base.toString();
  }

  _token() {
    const t = this.opts.csrfToken;
    return typeof t === "function" ? t() : t;
  }

  // _advance moves the client to pos, the position a frame carried.
  _advance(pos) {
    if (typeof pos !== "string" || !pos || pos === this._pos) return;
    this._pos = pos;
    savePos(this.path, this.clientId, pos);
  }

  _setState(patch, extra = {}) {
    const prev = { ...this.state };
    Object.assign(this.state, patch);
    const changed = Object.keys(patch).some((k) => prev[k] !== this.state[k]);
    if (!changed) return;
    const next = { ...this.state, ...extra };
    for (const fn of this._stateFns) {
      try {
        fn(next, prev);
      } catch (e) {
        console.error("sente: state handler", e);
      }
    }
  }

  _connect() {
    const cycle = ++this._cycle;
    if (this._forceAjax) this._pollLoop(cycle, true);
    else this._openWs(cycle);
  }

  _disconnect(close) {
    this._cycle++;
    clearTimeout(this._retry);
    clearInterval(this._kalive);
    this._kalive = null;
    if (this._ws) {
      try {
        this._ws.close(1000);
      } catch {}
      this._ws = null;
    }
    if (this._polling) this._polling.abort();
    this._polling = null;
    this._closed(close);
  }

  _closed({ code, reason }) {
    this._failPending("closed");
    if (this.state.open || !this.state.lastClose || code !== this.state.lastClose.code) {
      this._setState({ open: false, lastClose: { code, reason, at: Date.now() } });
    }
  }

  _failPending(code) {
    for (const [cb, p] of this._pending) {
      clearTimeout(p.timer);
      p.reject(new ChskError(code, "connection closed"));
      this._pending.delete(cb);
    }
  }

  _scheduleRetry(cycle) {
    if (cycle !== this._cycle || this.state.stopped) return;
    const attempt = this.state.attempt + 1;
    this._setState({ attempt });
    clearTimeout(this._retry);
    this._retry = setTimeout(() => {
      if (cycle === this._cycle) this._connect();
    }, backoffMs(attempt, this.opts.minBackoffMs, this.opts.maxBackoffMs));
  }

  _stop(code, reason) {
    this._cycle++;
    clearInterval(this._kalive);
    this._kalive = null;
    this._setState({ stopped: true });
    this._closed({ code, reason });
  }

  // A frame is [payload, cb], or [payload, null, pos] for a batch (or an Ajax
  // timeout) that moves the client along the log; elements past those are
  // ignored.
  _onFrame(frame, transport) {
    if (!Array.isArray(frame) || frame.length < 2) {
      console.warn("sente: bad frame", frame);
      return;
    }
    const [payload, cb] = frame;
    if (cb != null) {
      const p = this._pending.get(cb);
      if (!p) {
        console.warn("sente: reply for no pending request", cb);
        return;
      }
      this._pending.delete(cb);
      clearTimeout(p.timer);
      p.resolve(payload);
      return;
    }
    const pos = frame.length >= 3 && typeof frame[2] === "string" ? frame[2] : null;
    if (typeof payload === "string") {
      // chsk/timeout (an idle poll's may carry a position), chsk/dummy-cb-200
      this._advance(pos);
      return;
    }
    if (!Array.isArray(payload) || (payload.length === 0 && pos == null)) {
      console.warn("sente: bad payload", payload);
      return;
    }
    if (typeof payload[0] === "string") {
      this._onControl(payload, transport);
    } else {
      for (const ev of payload) this._dispatch(ev);
    }
    // Once the batch is dispatched (an empty one only moves the client).
    this._advance(pos);
  }

  _onControl(ev, transport) {
    const [id, data] = ev;
    if (id === "chsk/handshake") {
      // [uid, csrf (unused), data, pos, lost]; older servers send the first three.
      const [uid, , handshakeData, pos, lost] = Array.isArray(data) ? data : [];
      this._advance(pos);
      const first = !this.state.everOpened;
      const isLost = lost === true;
      this._setState(
        { open: true, everOpened: true, uid, handshakeData, lost: isLost, transport, attempt: 0 },
        { firstOpen: first },
      );
      this._dispatch(["chsk/handshake", [uid, null, handshakeData, first, isLost]]);
    } else if (id === "chsk/close") {
      const [code, reason] = Array.isArray(data) ? data : [1000, ""];
      this._onServerClose(code, reason);
    } else if (!id.startsWith("chsk/")) {
      this._dispatch(ev); // a single event rather than a batch
    }
  }

  _onServerClose(code, reason) {
    if (NO_RECONNECT.has(code)) {
      this._stop(code, reason);
      return;
    }
    // A new cycle: the transport that carried the close is done (an Ajax
    // poll loop must not poll on beside the retry).
    const cycle = ++this._cycle;
    this._closed({ code, reason });
    this._scheduleRetry(cycle);
  }

  _dispatch(ev) {
    if (!Array.isArray(ev) || typeof ev[0] !== "string") {
      console.warn("sente: bad event", ev);
      return;
    }
    const [id, data] = ev;
    for (const key of [id, "*"]) {
      for (const fn of this._handlers.get(key) || []) {
        try {
          fn(data, ev);
        } catch (e) {
          console.error("sente: handler for", id, e);
        }
      }
    }
  }

  _sendFrame(frame) {
    if (this.state.transport === "ajax") {
      this._post(frame[0], this.opts.requestTimeoutMs, frame[1] == null).catch(() => {});
      return;
    }
    this._lastActivity = Date.now();
    this._ws.send(JSON.stringify(frame));
  }

  // ---- WebSocket ----

  _openWs(cycle) {
    let ws;
    const protocols = [SUBPROTOCOL];
    const token = this._token();
    if (token) protocols.push("csrf." + token);
    try {
      ws = new WebSocket(this._url(true, this._pos ? { pos: this._pos } : {}), protocols);
    } catch (e) {
      this._wsFailed(cycle, 1006, String(e));
      return;
    }
    this._ws = ws;
    let opened = false;
    ws.onopen = () => {
      opened = true;
      this._lastActivity = Date.now();
    };
    ws.onmessage = (e) => {
      if (cycle !== this._cycle) return;
      this._lastActivity = Date.now();
      let frame;
      try {
        frame = JSON.parse(e.data);
      } catch {
        console.warn("sente: unreadable frame");
        return;
      }
      if (!opened) opened = true;
      this._onFrame(frame, "ws");
      if (this.state.open && !this._kalive) this._startKalive(cycle);
    };
    ws.onclose = (e) => {
      if (cycle !== this._cycle) return;
      this._ws = null;
      clearInterval(this._kalive);
      this._kalive = null;
      if (!opened && !this.state.everOpened && this.opts.type === "auto") {
        this._wsFailed(cycle, e.code, e.reason);
        return;
      }
      this._onServerClose(e.code, e.reason);
    };
  }

  // A WebSocket that never opened: in auto mode, fall back to Ajax for good
  // (until reconnect()); otherwise retry with backoff.
  _wsFailed(cycle, code, reason) {
    if (this.opts.type === "auto") {
      this._forceAjax = true;
      this._closed({ code, reason: reason || "downgrading-ws-to-ajax" });
      this._pollLoop(cycle, true);
      return;
    }
    this._closed({ code, reason });
    this._scheduleRetry(cycle);
  }

  _startKalive(cycle) {
    const every = this.opts.pingIntervalMs / 2;
    this._kalive = setInterval(() => {
      if (cycle !== this._cycle || !this.state.open) return;
      if (Date.now() - this._lastActivity < every) return;
      this.request("chsk/ws-ping", undefined, { timeoutMs: this.opts.pingTimeoutMs }).catch((e) => {
        if (cycle !== this._cycle || e.code !== "timeout") return;
        // The server is gone without a close: start over.
        try {
          this._ws?.close(4001, "ping timeout");
        } catch {}
        this._ws = null;
        clearInterval(this._kalive);
        this._kalive = null;
        this._closed({ code: 1006, reason: "ws-ping-timeout" });
        this._scheduleRetry(cycle);
      });
    }, every);
  }

  // ---- Ajax ----

  _headers() {
    const h = { "X-Requested-With": "XMLHttpRequest" };
    const token = this._token();
    if (token) h["X-CSRF-Token"] = token;
    return h;
  }

  async _pollLoop(cycle, handshake) {
    while (cycle === this._cycle && !this.state.stopped) {
      const ctl = new AbortController();
      this._polling = ctl;
      const extra = { udt: String(Date.now()) };
      // Every poll gives the position: the node that answers, whichever it
      // is, sends what the client has not had yet.
      if (this._pos) extra.pos = this._pos;
      if (handshake || !this.state.open) extra.handshake = "1";
      let frame;
      try {
        const resp = await fetch(this._url(false, extra), {
          headers: this._headers(),
          credentials: "same-origin",
          cache: "no-store",
          signal: ctl.signal,
        });
        if (!resp.ok) throw new ChskError("error", `poll: HTTP ${resp.status}`);
        frame = await resp.json();
      } catch (e) {
        if (cycle !== this._cycle) return;
        this._closed({ code: 1006, reason: String(e.message || e) });
        this._scheduleRetry(cycle);
        return;
      }
      if (cycle !== this._cycle) return;
      handshake = false;
      this._onFrame(frame, "ajax");
    }
  }

  async _post(ev, timeoutMs, noReply = false) {
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), timeoutMs + 1000);
    try {
      const resp = await fetch(this._url(false, { udt: String(Date.now()) }), {
        method: "POST",
        headers: { ...this._headers(), "Content-Type": "application/json" },
        credentials: "same-origin",
        body: JSON.stringify([ev, noReply ? null : "ajax"]),
        signal: ctl.signal,
      });
      if (!resp.ok) throw new ChskError("error", `post: HTTP ${resp.status}`);
      const [value, cb] = await resp.json();
      if (cb == null && value === "chsk/timeout") throw new ChskError("timeout", "no reply in time");
      return value;
    } catch (e) {
      if (e instanceof ChskError) throw e;
      if (e.name === "AbortError") throw new ChskError("timeout", "no reply in time");
      throw new ChskError("error", String(e.message || e));
    } finally {
      clearTimeout(timer);
    }
  }
}
