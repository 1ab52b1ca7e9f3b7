import { isDeepStrictEqual } from "node:util";
// Tests via.js against a Go endpoint (js_test.go starts it and runs this
// file with node --experimental-websocket --test). Every wait is bounded.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { Via, ViaError, mergePatch, backoff } from "../via.js";

const URL = process.env.VIA_URL; // the endpoint
const PROXY_URL = process.env.VIA_PROXY_URL; // the endpoint through a proxy the server can cut
const RAW_URL = process.env.VIA_RAW_URL; // a raw peer that sends a sequence gap
const WAIT = 5000;

// within rejects if p does not settle within WAIT ms.
function within(p, what) {
  let t;
  return Promise.race([
    p,
    new Promise((_, rej) => (t = setTimeout(() => rej(new Error(`${what}: not within ${WAIT} ms`)), WAIT))),
  ]).finally(() => clearTimeout(t));
}

// until returns a bounded promise (done) and the function that settles it
// (resolve), for callbacks to signal what the test waits for.
function until(what) {
  let resolve;
  const p = new Promise((r) => (resolve = r));
  return { done: within(p, what), resolve };
}

// Every client is closed when the run ends, whatever happened.
const clients = [];
after(() => clients.forEach((c) => c.close()));

function open(url, opts) {
  const via = new Via(url, opts);
  clients.push(via);
  if (via.status === "open") return Promise.resolve(via);
  return within(new Promise((res) => via.on("open", () => res(via))), "open").then(() => via);
}

test("mergePatch follows RFC 7386", () => {
  // The examples of RFC 7386, appendix A.
  const cases = [
    [{ a: "b" }, { a: "c" }, { a: "c" }],
    [{ a: "b" }, { b: "c" }, { a: "b", b: "c" }],
    [{ a: "b" }, { a: null }, {}],
    [{ a: "b", b: "c" }, { a: null }, { b: "c" }],
    [{ a: ["b"] }, { a: "c" }, { a: "c" }],
    [{ a: "c" }, { a: ["b"] }, { a: ["b"] }],
    [{ a: { b: "c" } }, { a: { b: "d", c: null } }, { a: { b: "d" } }],
    [{ a: [{ b: "c" }] }, { a: [1] }, { a: [1] }],
    [["a", "b"], ["c", "d"], ["c", "d"]],
    [{ a: "b" }, ["c"], ["c"]],
    [{ a: "foo" }, null, null],
    [{ a: "foo" }, "bar", "bar"],
    [{ e: null }, { a: 1 }, { e: null, a: 1 }],
    [[1, 2], { a: "b", c: null }, { a: "b" }],
    [{}, { a: { bb: { ccc: null } } }, { a: { bb: {} } }],
  ];
  for (const [target, patch, want] of cases) {
    const before = JSON.stringify(target);
    assert.deepEqual(mergePatch(target, patch), want);
    assert.equal(JSON.stringify(target), before, "the target is not modified");
  }
  const polluted = mergePatch({}, JSON.parse('{"__proto__":{"x":1}}'));
  assert.equal({}.x, undefined);
  assert.deepEqual(Object.keys(polluted), ["__proto__"]);
});

test("backoff doubles within [b/2, b) up to the cap", () => {
  assert.equal(backoff(0), 0);
  for (let n = 1; n < 12; n++) {
    const b = Math.min(50 * 2 ** (n - 1), 5000);
    assert.equal(backoff(n, 50, 5000, 0), b / 2);
    assert.ok(backoff(n, 50, 5000, 0.999) < b);
  }
});

test("invoke resolves on 200 and rejects with status, timeout or closed", async () => {
  const via = await open(URL);
  assert.deepEqual(await via.invoke("t/echo", { x: [1, "two", null] }), { x: [1, "two", null] });
  let e = await via.invoke("t/forbidden").catch((e) => e);
  assert.ok(e instanceof ViaError);
  assert.equal(e.kind, "status");
  assert.equal(e.status, 403);
  assert.deepEqual(e.body, { error: "forbidden" });
  e = await via.invoke("t/unexported").catch((e) => e);
  assert.equal(e.status, 400);
  assert.deepEqual(e.body, { error: "unknown event", id: "t/unexported" });
  e = await via.invoke("t/slow", null, { timeout: 50 }).catch((e) => e);
  assert.equal(e.kind, "timeout");
  assert.equal(e.message, "timeout");
  const pending = via.invoke("t/slow");
  assert.equal(via.dispatch("t/echo", 1), true);
  via.close();
  e = await within(pending.catch((e) => e), "closed");
  assert.equal(e.message, "closed");
  assert.equal(via.status, "closed");
  e = await via.invoke("t/echo").catch((e) => e);
  assert.equal(e.kind, "closed");
  assert.equal(via.dispatch("t/echo", 1), false);
});

test("the server calls the browser's handlers", async () => {
  const via = await open(URL);
  via.handle("js/double", (n, info) => {
    assert.equal(info.headers.from, "go");
    return n * 2;
  });
  via.handle("js/fail", () => {
    throw new ViaError("status", 418, { error: "teapot" });
  });
  assert.deepEqual(await via.invoke("t/callme", 21), { double: 42, fail: 418, missing: 400 });
  via.close();
});

test("subscribe follows a value; unsubscribe reaches the publisher", async () => {
  const via = await open(URL);
  const start = await via.invoke("t/counter/get");
  const seen = [];
  let wake = until("counter");
  const sub = via.subscribe("t/counter", null, (n) => {
    seen.push(n);
    wake.resolve();
  }, { default: -1 });
  assert.equal(sub.value, -1);
  await within(sub.ready, "ready");
  await wake.done;
  assert.equal(sub.value, start);
  assert.equal(await via.invoke("t/subs"), 1);
  wake = until("incremented");
  await via.invoke("t/counter/incr");
  await wake.done;
  assert.deepEqual(seen, [start, start + 1]);
  sub.unsubscribe();
  assert.equal(sub.closed, true);
  // The unsub is handled before the next call from this connection.
  assert.equal(await via.invoke("t/subs"), 0);
  via.close();
});

test("merge patches reproduce every value", async () => {
  // Count the pushes by type on the wire.
  const kinds = { value: 0, patch: 0 };
  class Spy extends WebSocket {
    constructor(url, protocols) {
      super(url, protocols);
      this.addEventListener("message", (m) => {
        const t = JSON.parse(m.data).type;
        if (t in kinds) kinds[t]++;
      });
    }
  }
  const via = await open(URL, { WebSocket: Spy });
  const values = [];
  let wake;
  via.subscribe("t/obj", null, (v) => {
    values.push(v);
    wake?.resolve();
  });
  const seq = [
    { a: 1, keep: "k".repeat(40) },
    { a: 2, keep: "k".repeat(40) },
    { a: 2, b: { c: [1, 2] }, keep: "k".repeat(40) },
    { a: 2, b: { d: true }, keep: "k".repeat(40) },
    [1, 2, 3],
    { x: "y", keep: "k".repeat(40) },
    { x: "y", n: null, keep: "k".repeat(40) },
    { x: "z", keep: "k".repeat(40) },
  ];
  for (const v of seq) {
    await via.invoke("t/obj/set", v);
    // Wait for this value: an earlier push (the initial one) may still be
    // on its way when the invoke returns.
    for (;;) {
      const pushed = new Promise((r) => (wake = { resolve: r }));
      if (isDeepStrictEqual(values.at(-1), v)) break;
      await within(pushed, "value");
    }
  }
  assert.ok(kinds.patch >= 3 && kinds.value >= 3, `pushes: ${JSON.stringify(kinds)}`);
  via.close();
});

test("subscribing to what is not published fails", async () => {
  const via = await open(URL);
  let onError;
  const failed = new Promise((r) => (onError = r));
  const sub = via.subscribe("t/unpublished", null, () => assert.fail("a value"), { onError });
  const e = await within(sub.ready.catch((e) => e), "refused");
  assert.equal(e.status, 400);
  assert.deepEqual(e.body, { error: "unknown subscription", id: "t/unpublished" });
  assert.equal((await within(failed, "onError")).status, 400);
  assert.equal(sub.closed, true);
  via.close();
});

test("a sequence gap is never applied: the client resubscribes", async () => {
  const via = new Via(RAW_URL);
  clients.push(via);
  const gaps = [];
  via.on("error", (d) => d.kind === "gap" && gaps.push(d));
  const values = [];
  let wake = until("z");
  via.subscribe("prices", "eur", (v) => {
    values.push(v);
    if (v.z) wake.resolve();
  });
  await wake.done;
  assert.deepEqual(values, [{ a: 1 }, { a: 1, b: 2 }, { z: 1 }]);
  assert.equal(gaps.length, 1);
  assert.equal(gaps[0].sn, 4);
  via.close();
});

test("after a reconnect, onReconnect runs, then subscriptions are sent again", async () => {
  let hooks = 0;
  const via = await open(PROXY_URL, {
    reconnectMax: 200,
    onReconnect: async (v) => {
      hooks++;
      await v.invoke("t/hello", "again");
    },
  });
  const statuses = [];
  via.on("status", (s) => statuses.push(s));
  let wake = until("first value");
  let last;
  via.subscribe("t/counter", null, (n) => {
    last = n;
    wake.resolve();
  });
  await wake.done;
  const reopened = within(new Promise((r) => via.on("open", r)), "reopen");
  wake = until("value after reconnect");
  await via.invoke("t/cut").catch(() => {}); // the reply may be cut too
  await reopened;
  await wake.done; // the new connection's first value
  assert.equal(hooks, 1);
  assert.deepEqual(statuses, ["reconnecting", "open"]);
  // On the new connection, the hook's call came before the subscription.
  assert.deepEqual((await via.invoke("t/log")).slice(0, 2), ["t/hello", "sub t/counter"]);
  wake = until("incremented after reconnect");
  const want = (await via.invoke("t/counter/incr"));
  await wake.done;
  assert.equal(last, want);
  via.close();
});
