// via.js: a browser client for the via protocol (PROTOCOL.md, subprotocol
// via.v1). One dependency-free ES module; types in via.d.ts. Served by a Go
// via.Endpoint at <mount>/via.js.
//
//   import { Via } from "/via/via.js";
//   const via = new Via("/via");
//   const sum = await via.invoke("math/add", [2, 3]);
//   const sub = via.subscribe("counter", null, (n) => render(n));
//   sub.unsubscribe();
//
// The browser is always the originator: it connects, reconnects with
// backoff after a drop (not after the server closed it with 1000), runs
// onReconnect, then sends its subscriptions again.

export const SUBPROTOCOL = "via.v1";
const VERSION = 1;

/** An error of a call: a reply with a status other than 200 ("status"), no
 * reply in time ("timeout"), or no connection ("closed"). */
export class ViaError extends Error {
  constructor(kind, status, body) {
    super(kind === "status" ? `status ${status}` : kind);
    this.name = "ViaError";
    this.kind = kind;
    this.status = status;
    this.body = body;
  }
}

/** Backoff before reconnect attempt n (1, 2, …): a time in [b/2, b) with
 * b = min·2^(n−1) capped at max (PROTOCOL.md §7). */
export function backoff(n, min = 50, max = 5000, jitter = Math.random()) {
  if (n <= 0 || min <= 0) return 0;
  const b = Math.min(min * 2 ** (n - 1), Math.max(max, min));
  return b / 2 + jitter * (b / 2);
}

/** Applies an RFC 7386 JSON merge patch to target, returning a new value
 * (target is not modified). */
export function mergePatch(target, patch) {
  if (!isObject(patch)) return patch;
  const out = isObject(target) ? { ...target } : {};
  for (const k of Object.keys(patch)) {
    const v = patch[k];
    if (v === null) {
      delete out[k];
    } else {
      Object.defineProperty(out, k, {
        value: mergePatch(Object.hasOwn(out, k) ? out[k] : undefined, v),
        enumerable: true,
        writable: true,
        configurable: true,
      });
    }
  }
  return out;
}

function isObject(v) {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}

function defaultURL(path) {
  if (/^wss?:\/\//.test(path)) return path;
  if (typeof location === "undefined") throw new Error("via: a ws:// or wss:// URL is required here");
  const u = new URL(path, location.href);
  u.protocol = u.protocol === "https:" ? "wss:" : "ws:";
  return u.href;
}

export class Via {
  /**
   * @param {string} [url] ws://, wss:// or a path on this page's host (default "/via")
   * @param {object} [options] see via.d.ts
   */
  constructor(url = "/via", options = {}) {
    this.url = defaultURL(url);
    this.options = options;
    this.requestTimeout = options.requestTimeout ?? 10000;
    this.reconnectMin = options.reconnectMin ?? 50;
    this.reconnectMax = options.reconnectMax ?? 5000;
    this._WebSocket = options.WebSocket ?? globalThis.WebSocket;
    this._ws = null;
    this._status = "connecting";
    this._closed = false; // close() was called, or the server closed with 1000
    this._attempt = 0; // failed attempts since the last ready connection
    this._everReady = false;
    this._timer = null;
    this._rid = 0;
    this._key = 0;
    this._pending = new Map(); // rid → {resolve, reject, timer}
    this._handlers = new Map(); // event id → fn
    this._subs = new Map(); // key → Subscription
    this._listeners = new Map(); // name → Set(fn)
    this._connect();
  }

  /** "connecting" | "open" | "reconnecting" | "closed" */
  get status() {
    return this._status;
  }

  /** Listens to "status", "open", "close" or "error"; returns a function
   * that stops listening. */
  on(name, fn) {
    let set = this._listeners.get(name);
    if (!set) this._listeners.set(name, (set = new Set()));
    set.add(fn);
    return () => set.delete(fn);
  }

  _emit(name, arg) {
    for (const fn of this._listeners.get(name) ?? []) {
      try {
        fn(arg);
      } catch (e) {
        console.error("via: listener failed", e);
      }
    }
  }

  _setStatus(s) {
    if (this._status === s) return;
    this._status = s;
    this._emit("status", s);
  }

  // ---- connection ----

  _connect() {
    let ws;
    try {
      ws = new this._WebSocket(this.url, SUBPROTOCOL);
    } catch (e) {
      this._emit("error", { kind: "connect", error: e });
      this._retry();
      return;
    }
    this._ws = ws;
    let ready = false;
    ws.onopen = async () => {
      if (ws.protocol !== SUBPROTOCOL) {
        this._emit("error", { kind: "subprotocol", protocol: ws.protocol });
        ws.close(4000, "subprotocol " + SUBPROTOCOL + " required");
        return;
      }
      if (this._everReady && this.options.onReconnect) {
        try {
          await this.options.onReconnect(this);
        } catch (e) {
          this._emit("error", { kind: "onReconnect", error: e });
          if (this._ws === ws) ws.close(4000, "onReconnect failed");
          return;
        }
        if (this._ws !== ws || ws.readyState !== 1) return;
      }
      ready = true;
      this._everReady = true;
      this._attempt = 0;
      this._setStatus("open");
      this._emit("open");
      for (const s of this._subs.values()) s._send();
    };
    ws.onmessage = (m) => this._receive(m.data);
    ws.onclose = (ev) => {
      if (this._ws !== ws) return;
      this._ws = null;
      for (const [rid, p] of this._pending) {
        clearTimeout(p.timer);
        p.reject(new ViaError("closed"));
        this._pending.delete(rid);
      }
      for (const s of this._subs.values()) s._detach();
      if (ready) this._emit("close", { code: ev.code, reason: ev.reason });
      if (ev.code === 1000 && ready) this._closed = true; // disconnected on purpose
      if (this._closed) {
        this._shutdown();
        return;
      }
      this._retry();
    };
  }

  _retry() {
    this._setStatus("reconnecting");
    this._attempt++;
    const wait = backoff(this._attempt, this.reconnectMin, this.reconnectMax);
    this._timer = setTimeout(() => {
      this._timer = null;
      if (!this._closed) this._connect();
    }, wait);
  }

  _shutdown() {
    this._setStatus("closed");
    for (const s of [...this._subs.values()]) s._end(new ViaError("closed"));
  }

  /** Closes the connection with 1000 and stops reconnecting. */
  close() {
    if (this._closed) return;
    this._closed = true;
    clearTimeout(this._timer);
    const ws = this._ws;
    if (ws && ws.readyState <= 1) {
      ws.close(1000, "bye");
    } else {
      this._ws = null;
    }
    for (const [rid, p] of this._pending) {
      clearTimeout(p.timer);
      p.reject(new ViaError("closed"));
      this._pending.delete(rid);
    }
    this._shutdown();
  }

  _send(env) {
    const ws = this._ws;
    if (!ws || ws.readyState !== 1) return false;
    ws.send(JSON.stringify({ v: VERSION, ...env }));
    return true;
  }

  // ---- calls ----

  /** Sends event id with body, fire and forget. Returns false when there is
   * no open connection (nothing is queued). */
  dispatch(id, body = null, opts = {}) {
    return this._send({ type: "event", id, headers: opts.headers, body });
  }

  /** Calls event id with body and resolves with the reply's body on 200;
   * rejects with a ViaError: kind "status" (status, body), "timeout" or
   * "closed". */
  invoke(id, body = null, opts = {}) {
    return this._request({ type: "event", id, headers: opts.headers, body }, opts.timeout);
  }

  _request(env, timeout = this.requestTimeout) {
    return new Promise((resolve, reject) => {
      const rid = (++this._rid).toString(36);
      if (!this._send({ ...env, rid })) {
        reject(new ViaError("closed"));
        return;
      }
      const timer = setTimeout(() => {
        this._pending.delete(rid);
        reject(new ViaError("timeout"));
      }, timeout);
      this._pending.set(rid, { resolve, reject, timer });
    });
  }

  /** Registers fn for event id sent by the server: its result (or the
   * value its promise resolves to) is the reply's body; a thrown ViaError
   * with kind "status" answers its status and body, anything else 500. A
   * null fn removes it. */
  handle(id, fn) {
    if (fn) this._handlers.set(id, fn);
    else this._handlers.delete(id);
  }

  // ---- subscriptions ----

  /** Subscribes to id with args. onValue gets every new value; the
   * subscription lives across reconnects until unsubscribe(). */
  subscribe(id, args, onValue, opts = {}) {
    const s = new Subscription(this, "s" + (++this._key).toString(36), id, args ?? null, onValue, opts);
    this._subs.set(s.key, s);
    s._send();
    return s;
  }

  // ---- receiving ----

  _receive(data) {
    let env;
    try {
      env = JSON.parse(data);
    } catch (e) {
      this._emit("error", { kind: "badmessage", error: e, message: data });
      return;
    }
    if (!isObject(env) || env.v !== VERSION || typeof env.type !== "string") {
      this._emit("error", { kind: "badmessage", message: data });
      if (isObject(env) && typeof env.rid === "string" && env.type !== "reply") {
        this._reply(env.rid, 400, { error: "bad message", reason: "bad envelope" });
      }
      return;
    }
    const body = env.body === undefined ? null : env.body;
    switch (env.type) {
      case "reply": {
        const p = this._pending.get(env.rid);
        if (!p) {
          this._emit("error", { kind: "unhandledreply", message: data });
          return;
        }
        this._pending.delete(env.rid);
        clearTimeout(p.timer);
        if (env.status === 200) p.resolve(body);
        else p.reject(new ViaError("status", env.status, body));
        return;
      }
      case "event":
        this._event(env, body);
        return;
      case "sub": // a browser publishes nothing
        this._emit("error", { kind: "unknownsubscription", message: data });
        this._reply(env.rid, 400, { error: "unknown subscription", id: env.id });
        return;
      case "unsub":
        this._reply(env.rid, 200, null);
        return;
      case "value":
      case "patch": {
        const s = this._subs.get(env.key);
        if (!s) {
          this._emit("error", { kind: "unknownsubscription", message: data });
          return;
        }
        s._receive(env.type, env.sn, body);
        return;
      }
      default:
        this._emit("error", { kind: "badmessage", message: data });
        this._reply(env.rid, 400, { error: "bad message", reason: "unknown type" });
    }
  }

  _reply(rid, status, body) {
    if (typeof rid === "string" && rid !== "") this._send({ type: "reply", rid, status, body });
  }

  async _event(env, body) {
    const fn = this._handlers.get(env.id);
    if (!fn) {
      this._emit("error", { kind: "unknownevent", id: env.id });
      this._reply(env.rid, 400, { error: "unknown event", id: env.id });
      return;
    }
    try {
      const result = await fn(body, { id: env.id, headers: env.headers ?? {}, wantsReply: !!env.rid });
      this._reply(env.rid, 200, result === undefined ? null : result);
    } catch (e) {
      if (e instanceof ViaError && e.kind === "status") {
        this._reply(env.rid, e.status, e.body ?? null);
      } else {
        console.error("via: handler for", env.id, "failed", e);
        this._reply(env.rid, 500, { error: "internal error" });
      }
    }
  }
}

/** One subscription: made by Via.subscribe. */
export class Subscription {
  constructor(via, key, id, args, onValue, opts) {
    this.via = via;
    this.key = key;
    this.id = id;
    this.args = args;
    /** The current value: opts.default until the first value arrives. */
    this.value = opts.default ?? null;
    /** Why the subscription ended (a ViaError), or null while it lives. */
    this.error = null;
    this.closed = false;
    this._onValue = onValue;
    this._onError = opts.onError;
    this._sn = 0;
    this._awaiting = true; // only a value with sn 1 is accepted
    this._sent = false; // a sub is out on the current connection
    let resolve, reject;
    /** Settles when the publisher first accepts (resolves) or refuses
     * (rejects with the ViaError). */
    this.ready = new Promise((res, rej) => ((resolve = res), (reject = rej)));
    this.ready.catch(() => {}); // awaiting it is optional
    this._ready = { resolve, reject };
  }

  /** Ends the subscription and tells the publisher. */
  unsubscribe() {
    if (this.closed) return;
    this.via._send({ type: "unsub", key: this.key });
    this._end(null);
  }

  _end(err) {
    if (this.closed) return;
    this.closed = true;
    this.error = err;
    this.via._subs.delete(this.key);
    if (err) this._ready.reject(err);
  }

  async _send() {
    if (this.closed || this._sent || this.via.status !== "open") return;
    this._sent = true;
    this._sn = 0;
    this._awaiting = true;
    try {
      await this.via._request({ type: "sub", key: this.key, id: this.id, body: this.args });
      this._ready.resolve();
    } catch (e) {
      if (e.kind === "status" && !this.closed) {
        // Refused: not published, or not allowed.
        this._end(e);
        this._onError?.(e);
      } else if (e.kind === "timeout") {
        this._onError?.(e); // values may still come
      }
      // "closed": sent again on the next connection.
    }
  }

  _detach() {
    this._sent = false;
    this._awaiting = true;
  }

  _receive(type, sn, body) {
    if (this.closed) return;
    if (this._awaiting) {
      if (type !== "value" || sn !== 1) return; // the old stream's tail
      this._awaiting = false;
    } else if (sn !== this._sn + 1) {
      // A gap: never apply out of order; start over from a whole value.
      this.via._emit("error", { kind: "gap", key: this.key, id: this.id, sn, last: this._sn });
      this._awaiting = true;
      this._sn = 0;
      this.via._send({ type: "unsub", key: this.key });
      this._sent = false;
      this._send();
      return;
    }
    this._sn = sn;
    this.value = type === "patch" ? mergePatch(this.value, body) : body;
    try {
      this._onValue?.(this.value);
    } catch (e) {
      console.error("via: subscription callback failed", e);
    }
  }
}
