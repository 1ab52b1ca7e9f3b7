// Drives the resume page of resume_test.go in headless Chromium: sente's
// client.js receiving numbered pushes (test/n) through a proxy that the Go
// test resets.
//
//   node resume.mjs <mode> <transport> <base-url>
//
// mode: "stream" (cuts mid-stream, then a reload) or "lost" (a cut outlasting
// the server's history). transport: "ws", or "ajax" (WebSocket removed from
// the page). Prints one JSON line per step on stdout: {"step", "ok", "ms",
// "detail"} or {"step", "ok": false, "error"}; {"need": what, "from", "to"}
// asks the Go test to push test/n for n in [from, to) (and cut, per what),
// which answers one line on stdin once done. The last line is {"step":
// "done", "ok": true}. Every wait is bounded.
import { chromium } from "playwright-core";
import { createInterface } from "node:readline";

const [mode, transport, base] = process.argv.slice(2);
const TIMEOUT_MS = 30_000; // generous: CI machines are often loaded, and run -race
const executablePath = process.env.WSASYNC_CHROMIUM || "/usr/bin/chromium";

setTimeout(() => {
  emit({ step: "watchdog", ok: false, error: "script ran over 150 s" });
  process.exit(3);
}, 150_000).unref();

function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

async function step(name, fn) {
  const t0 = performance.now();
  try {
    const detail = await fn();
    emit({ step: name, ok: true, ms: Math.round(performance.now() - t0), detail });
    return detail;
  } catch (e) {
    emit({ step: name, ok: false, ms: Math.round(performance.now() - t0), error: String(e?.stack || e) });
    throw e;
  }
}

// Lines from the Go test on stdin.
const stdin = createInterface({ input: process.stdin });
const lines = [];
const waiters = [];
stdin.on("line", (l) => (waiters.length ? waiters.shift()(l) : lines.push(l)));
function nextLine(timeoutMs) {
  if (lines.length) return Promise.resolve(lines.shift());
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no line on stdin within ${timeoutMs} ms`)), timeoutMs);
    waiters.push((l) => {
      clearTimeout(t);
      resolve(l);
    });
  });
}

// need asks the Go test for pushes [from, to) (and cuts, per what) and waits
// until it has made them.
async function need(what, from, to) {
  emit({ need: what, from, to });
  const l = await nextLine(60_000);
  if (!l.startsWith("ok")) throw new Error(`${what} ${from}..${to}: the test answered ${JSON.stringify(l)}`);
  return l;
}

const range = (from, to) => Array.from({ length: to - from }, (_, i) => from + i);

// runs shows a list of numbers as its runs: "0-65 75-268".
function runs(ns) {
  const out = [];
  for (let i = 0; i < ns.length; ) {
    let j = i;
    while (j + 1 < ns.length && ns[j + 1] === ns[j] + 1) j++;
    out.push(i === j ? `${ns[i]}` : `${ns[i]}-${ns[j]}`);
    i = j + 1;
  }
  return out.join(" ");
}

// ---- the page ----

let browser;
await step("browser launched", async () => {
  browser = await chromium.launch({
    executablePath,
    timeout: 30_000,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
});

async function openPage() {
  const ctx = await browser.newContext();
  ctx.setDefaultTimeout(TIMEOUT_MS);
  if (transport === "ajax") {
    // As the chat's Ajax scenario: no WebSocket, so "auto" falls back to Ajax.
    await ctx.addInitScript(() => {
      delete window.WebSocket;
    });
  }
  const page = await ctx.newPage();
  page.on("pageerror", (e) => console.error(`page error: ${e}`));
  page.on("console", (m) => {
    if (m.type() === "error") console.error(`console.error: ${m.text()}`);
  });
  await page.goto(base + "/");
  return page;
}

async function waitOpen(page) {
  await page.waitForFunction(() => window.chsk?.state.open, null, { timeout: TIMEOUT_MS });
  const s = await page.evaluate(() => ({ ...window.chsk.state, clientId: window.chsk.clientId, position: window.chsk.position }));
  if (s.transport !== transport) throw new Error(`open on ${s.transport}, want ${transport}`);
  if (typeof s.position !== "string" || !s.position) throw new Error(`no position after the handshake: ${JSON.stringify(s)}`);
  return s;
}

// waitFor waits until the page has received n, then a little more (a number
// received twice would show), and returns what the page has.
async function waitFor(page, n) {
  try {
    await page.waitForFunction((n) => window.got?.includes(n), n, { timeout: TIMEOUT_MS, polling: 20 });
  } catch (e) {
    const got = await page.evaluate(() => window.got).catch(() => null);
    throw new Error(`push ${n} did not arrive; the page has ${got ? runs(got) : "nothing"}: ${e.message}`);
  }
  await page.waitForTimeout(300);
  return page.evaluate(() => ({
    got: window.got,
    handshakes: window.handshakes,
    state: { ...window.chsk.state },
    position: window.chsk.position,
    clientId: window.chsk.clientId,
  }));
}

function expectExactly(got, want, what) {
  if (JSON.stringify(got) === JSON.stringify(want)) return;
  const seen = new Map();
  for (const n of got) seen.set(n, (seen.get(n) || 0) + 1);
  const missing = want.filter((n) => !seen.has(n));
  const twice = [...seen].filter(([, c]) => c > 1).map(([n]) => n);
  const disorder = got.findIndex((n, i) => i > 0 && n <= got[i - 1]);
  throw new Error(
    `${what}: ${got.length} pushes, want ${want.length}; missing ${runs(missing)}, ` +
      `more than once ${runs(twice)}, first out of order at index ${disorder}: ${runs(got)}`,
  );
}

// ---- scenarios ----

const STREAM = 300;

async function stream() {
  const page = await openPage();
  const opened = await step(`page open on ${transport}`, () => waitOpen(page));

  await step("every push once, in order, across the cuts", async () => {
    const answer = await need("stream", 0, STREAM);
    const r = await waitFor(page, STREAM - 1);
    expectExactly(r.got, range(0, STREAM), "the stream");
    if (r.state.lost) throw new Error(`state.lost after the cuts: ${JSON.stringify(r.handshakes)}`);
    if (r.handshakes.some((h) => h.lost)) throw new Error(`a handshake said lost: ${JSON.stringify(r.handshakes)}`);
    if (r.handshakes.length < 2) throw new Error(`no reconnect despite the cuts (${answer})`);
    if (!r.state.open || r.state.transport !== transport) throw new Error(`state ${JSON.stringify(r.state)}`);
    return { received: r.got.length, handshakes: r.handshakes.length, lost: r.state.lost, position: r.position, proxy: answer };
  });

  // The page reloads and waits (test-hold) while the Go test pushes, past
  // the server's grace period: the server has forgotten the client, and only
  // the position kept in sessionStorage gets the page those pushes.
  await step("a reload resumes from the stored position", async () => {
    const before = await page.evaluate(() => {
      sessionStorage.setItem("test-hold", "1");
      return { clientId: window.chsk.clientId, position: window.chsk.position };
    });
    await page.reload();
    await page.waitForFunction(() => typeof window.release === "function", null, { timeout: TIMEOUT_MS });
    await need("push-after-grace", STREAM, STREAM + 100);
    await page.evaluate(() => window.release());
    const r = await waitFor(page, STREAM + 99);
    if (r.clientId !== before.clientId) throw new Error(`client id ${before.clientId} became ${r.clientId} on reload`);
    expectExactly(r.got, range(0, STREAM + 100), "across the reload");
    const last = r.handshakes.at(-1);
    if (r.state.lost || last.lost) throw new Error(`lost after the reload: ${JSON.stringify(last)}`);
    return { clientId: r.clientId, positionBefore: before.position, handshake: last, position: r.position };
  });
  await page.close();
}

async function lost() {
  const page = await openPage();
  await step(`page open on ${transport}`, () => waitOpen(page));

  await step("pushes before the cut", async () => {
    await need("push", 0, 20);
    const r = await waitFor(page, 19);
    expectExactly(r.got, range(0, 20), "before the cut");
    if (r.state.lost) throw new Error("state.lost before any cut");
    return { position: r.position };
  });

  // 200 pushes while the network is down, to a server that keeps 16.
  let handshakes;
  await step("a long cut loses pushes: state.lost", async () => {
    const n0 = await page.evaluate(() => window.handshakes.length);
    await need("lost", 20, 220);
    const r = await waitFor(page, 219);
    await page.waitForFunction(() => window.chsk.state.open, null, { timeout: TIMEOUT_MS });
    const s = await page.evaluate(() => ({ ...window.chsk.state }));
    handshakes = r.handshakes.length;
    const after = r.handshakes.slice(n0);
    if (!s.lost) throw new Error(`state.lost is false after the long cut; handshakes ${JSON.stringify(after)}`);
    if (!after.some((h) => h.lost && h.stateLost)) throw new Error(`no handshake event said lost: ${JSON.stringify(after)}`);
    // What the server still held arrives, in order, once.
    if (r.got.some((n, i) => i > 0 && n <= r.got[i - 1])) throw new Error(`out of order or twice: ${runs(r.got)}`);
    expectExactly(r.got.slice(0, 20), range(0, 20), "before the cut");
    const tail = r.got.slice(-16);
    expectExactly(tail, range(204, 220), "the pushes the server held");
    return {
      lost: s.lost,
      eventLost: after.some((h) => h.lost),
      missing: 220 - r.got.length,
      received: r.got.length,
      tail,
      handshakesBefore: n0,
      handshakes: after,
    };
  });

  // 10 pushes before the cut, 10 after: within the 16 the server keeps.
  await step("the next cut resumes without loss", async () => {
    const n0 = await page.evaluate(() => window.got.length);
    await need("cut-push", 220, 240);
    await page.waitForFunction((h) => window.handshakes.length > h && window.chsk.state.open, handshakes, {
      timeout: TIMEOUT_MS,
    });
    const r = await waitFor(page, 239);
    expectExactly(r.got.slice(n0), range(220, 240), "after the long cut");
    if (r.state.lost || r.handshakes.slice(handshakes).some((h) => h.lost))
      throw new Error(`lost again after a short cut: ${JSON.stringify(r.handshakes.slice(handshakes))}`);
    return { lost: r.state.lost, handshake: r.handshakes.at(-1) };
  });

  if (transport === "ajax") {
    // 40 pushes to another client: none for the page, but an idle poll's
    // timeout answer (the server's PollTimeout is 1 s) carries the position,
    // so that the next cut finds the page within the 16 pushes kept.
    await step("an idle poll's timeout moves the position", async () => {
      const [before, h0, n0] = await page.evaluate(() => [window.chsk.position, window.handshakes.length, window.got.length]);
      await need("push-others", 0, 40);
      await page.waitForFunction((p) => window.chsk.position !== p, before, { timeout: TIMEOUT_MS });
      const moved = await page.evaluate(() => ({ position: window.chsk.position, lost: window.chsk.state.lost, handshakes: window.handshakes.length }));
      if (moved.lost || moved.handshakes !== h0) throw new Error(`the position moved by a handshake, not an idle poll: ${JSON.stringify(moved)}`);
      await need("cut-push", 240, 250);
      await page.waitForFunction((h) => window.handshakes.length > h && window.chsk.state.open, h0, { timeout: TIMEOUT_MS });
      const r = await waitFor(page, 249);
      expectExactly(r.got.slice(n0), range(240, 250), "after the idle poll");
      if (r.state.lost || r.handshakes.slice(h0).some((h) => h.lost))
        throw new Error(`lost after the idle poll and a short cut: ${JSON.stringify(r.handshakes.slice(h0))}`);
      return { positionBefore: before, positionMoved: moved.position, handshake: r.handshakes.at(-1) };
    });
  }
  await page.close();
}

let failed = false;
try {
  if (transport !== "ws" && transport !== "ajax") throw new Error(`unknown transport ${transport}`);
  switch (mode) {
    case "stream":
      await stream();
      break;
    case "lost":
      await lost();
      break;
    default:
      throw new Error(`unknown mode ${mode}`);
  }
  emit({ step: "done", ok: true });
} catch (e) {
  failed = true;
  console.error(e);
} finally {
  await step("browser closed", () => browser.close()).catch(() => {});
  stdin.close();
}
process.exit(failed ? 1 : 0);
