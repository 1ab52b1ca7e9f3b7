// Drives the chat demo (examples/chat) in headless Chromium for chat_test.go.
//
//   node chat.mjs <scenario> <base-url> [screenshot.png]
//
// scenario: "ws", "ajax" (WebSocket unavailable in the pages) or "restart".
// Prints one JSON line per step on stdout: {"step", "ok", "ms", "detail"} or
// {"step", "ok": false, "error"}; {"need": "restart"} asks the Go test to
// restart the server, which answers "restarted" on stdin. The last line is
// {"step": "done", "ok": true}. Every wait is bounded by TIMEOUT_MS.
import { chromium } from "playwright-core";
import { createInterface } from "node:readline";

const [scenario, base, screenshot] = process.argv.slice(2);
const TIMEOUT_MS = 15_000; // generous: CI machines are often loaded
const executablePath = process.env.WSASYNC_CHROMIUM || "/usr/bin/chromium";

// A last resort if something hangs past every bounded wait.
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

// ---- page helpers ----

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

// A browser context is one browser profile: its tabs share the session cookie.
async function newUser(initScript) {
  const ctx = await browser.newContext({ viewport: { width: 960, height: 600 } });
  ctx.setDefaultTimeout(TIMEOUT_MS);
  if (initScript) await ctx.addInitScript(initScript);
  return ctx;
}

// The most Ajax polls (GET /chsk) each page had in flight at once: a client
// keeps one, so more means a poll loop that outlived its connection.
const polls = new Map(); // label → {now, max}

function watch(page, label) {
  const p = { now: 0, max: 0 };
  polls.set(label, p);
  const isPoll = (r) => r.method() === "GET" && new URL(r.url()).pathname === "/chsk";
  page.on("request", (r) => {
    if (isPoll(r)) p.max = Math.max(p.max, ++p.now);
  });
  const done = (r) => {
    if (isPoll(r)) p.now--;
  };
  page.on("requestfinished", done);
  page.on("requestfailed", done);
  page.on("pageerror", (e) => console.error(`[${label}] page error: ${e}`));
  page.on("console", (m) => {
    if (m.type() === "error" || m.type() === "warning") console.error(`[${label}] console.${m.type()}: ${m.text()}`);
  });
  return page;
}

async function signIn(ctx, name) {
  const page = watch(await ctx.newPage(), name);
  await page.goto(base + "/");
  await page.fill("#name", name);
  await page.click(".signin button");
  await page.waitForSelector("#conn"); // the chat page, after the redirect
  return page;
}

async function openTab(ctx, label, query = "") {
  const page = watch(await ctx.newPage(), label);
  await page.goto(base + "/" + query);
  return page;
}

// Waits until the state panel shows the connection open (on transport, if
// given, and after at least `opens` handshakes) and returns what it shows.
async function waitOpen(page, transport, opens = 1) {
  await page.waitForFunction(
    ([transport, opens]) => {
      const d = document.getElementById("conn")?.dataset;
      return d && d.state === "open" && (!transport || d.transport === transport) && Number(d.opens) >= opens;
    },
    [transport, opens],
    { timeout: TIMEOUT_MS },
  );
  return page.evaluate(() => ({
    ...document.getElementById("conn").dataset,
    shown: document.getElementById("conn-transport").textContent,
  }));
}

async function waitUsers(page, users) {
  for (const u of users) await page.waitForSelector(`#users li[data-user="${u}"]`);
  return page.$$eval("#users li", (lis) => lis.map((li) => li.dataset.user));
}

// Sends through the form and waits for the server's reply to be shown.
async function send(page, text, to = "") {
  if (to) await page.waitForSelector(`#to option[value="${to}"]`, { state: "attached" });
  await page.selectOption("#to", to);
  await page.fill("#text", text);
  await page.press("#text", "Enter"); // the submit handler marks the status "pending" at once
  await page.waitForSelector('#status[data-result="ok"], #status[data-result="error"]');
  const status = await page.textContent("#status");
  if ((await page.getAttribute("#status", "data-result")) !== "ok") throw new Error(`send failed: ${status}`);
  return status;
}

async function waitMessage(page, kind, from, text) {
  await page.locator(`#messages li.${kind}[data-from="${from}"]`, { hasText: text }).waitFor();
}

function maxPolls() {
  const max = Object.fromEntries([...polls].map(([label, p]) => [label, p.max]));
  const over = Object.entries(max).filter(([, n]) => n > 1);
  if (over.length) throw new Error(`several polls in flight at once: ${JSON.stringify(max)}`);
  return max;
}

// ---- scenarios ----

// The chat end to end on one transport: alice in two tabs, bob and carol.
async function chat(transport, init = {}) {
  const alice = await newUser(init.alice);
  const bob = await newUser(init.bob);
  const carol = await newUser(init.carol);

  let a1, a2, b, c;
  await step(`alice tab 1 open on ${transport}`, async () => waitOpen((a1 = await signIn(alice, "alice")), transport));
  await step(`alice tab 2 open on ${transport}`, async () => waitOpen((a2 = await openTab(alice, "alice-2")), transport));
  await step(`bob open on ${transport}`, async () => waitOpen((b = await signIn(bob, "bob")), transport));
  await step(`carol open on ${transport}`, async () => waitOpen((c = await signIn(carol, "carol")), transport));

  await step("users online pushed", async () => {
    const all = ["alice", "bob", "carol"];
    return { a1: await waitUsers(a1, all), a2: await waitUsers(a2, all), b: await waitUsers(b, all) };
  });
  await step("request resolves", () => a1.evaluate(() => window.chsk.request("chat/users?")));

  await step("room message: sender gets ok", () => send(a1, "hello everyone"));
  await step("room message reaches every tab", async () => {
    for (const p of [a1, a2, b, c]) await waitMessage(p, "room", "alice", "hello everyone");
  });
  await step("bob answers the room", async () => {
    await send(b, "hi alice, hi carol");
    for (const p of [a1, a2, c]) await waitMessage(p, "room", "bob", "hi alice, hi carol");
  });

  await step("private message: sender gets ok", () => send(b, "psst alice, this is for your eyes only", "alice"));
  await step("private message reaches both of alice's tabs", async () => {
    for (const p of [a1, a2, b]) await waitMessage(p, "private", "bob", "for your eyes only");
  });
  await step("private message does not reach carol", async () => {
    // Pushes to one connection keep their order: carol sees the room
    // message sent after the private one, so a leaked one would be there.
    await send(a2, "ok bob, got it (from my other tab)");
    await waitMessage(c, "room", "alice", "got it");
    return { carolPrivate: await c.locator("#messages li.private").count() };
  });
  await step("alice answers bob privately", async () => {
    await send(a1, "see you at lunch at noon", "bob");
    for (const p of [a1, a2, b]) await waitMessage(p, "private", "alice", "see you at lunch");
  });
  await step("at most one poll in flight per page", () => maxPolls());
  const counts = await step("message counts", async () => {
    const n = (p, k) => p.locator(`#messages li.${k}`).count();
    return {
      a1: [await n(a1, "room"), await n(a1, "private")],
      a2: [await n(a2, "room"), await n(a2, "private")],
      b: [await n(b, "room"), await n(b, "private")],
      c: [await n(c, "room"), await n(c, "private")],
    };
  });

  if (screenshot) {
    await step("screenshot", async () => {
      await a1.bringToFront();
      await a1.screenshot({ path: screenshot });
      return screenshot;
    });
  }
  if (transport === "ws") await clientIds(alice, a1, a2);
  return counts;
}

// A reload keeps the tab's client id (sessionStorage); a tab opened from
// another starts with a copy of its sessionStorage but must get its own id,
// or its connection would replace the opener's.
async function clientIds(ctx, a1, a2) {
  await step("a reload keeps the client id", async () => {
    const before = await a2.evaluate(() => window.chsk.clientId);
    await a2.reload();
    await waitOpen(a2);
    const after = await a2.evaluate(() => window.chsk.clientId);
    if (after !== before) throw new Error(`client id ${before} became ${after} on reload`);
    return after;
  });
  await step("a tab opened with window.open gets its own client id", async () => {
    const [a3] = await Promise.all([ctx.waitForEvent("page"), a1.evaluate(() => void window.open("/"))]);
    watch(a3, "alice-3");
    await waitOpen(a3);
    const ids = [await a1.evaluate(() => window.chsk.clientId), await a3.evaluate(() => window.chsk.clientId)];
    if (ids[0] === ids[1]) throw new Error(`both tabs use client id ${ids[0]}`);
    // Had a3 replaced a1's connection, a1 would miss what a3 says next.
    await send(a3, "a third tab");
    await waitMessage(a1, "room", "alice", "a third tab");
    const s = await a1.evaluate(() => window.chsk.state);
    if (!s.open || s.stopped) throw new Error(`the opener's connection ended: ${JSON.stringify(s)}`);
    await a3.close();
    return ids;
  });
}

async function restart() {
  const alice = await newUser();
  const bob = await newUser();
  let aws, aajax, b;
  await step("before: alice open on ws", async () => waitOpen((aws = await signIn(alice, "alice")), "ws"));
  await step("before: alice's second tab open on ajax", async () =>
    waitOpen((aajax = await openTab(alice, "alice-ajax", "?transport=ajax")), "ajax"),
  );
  await step("before: bob open on ws", async () => waitOpen((b = await signIn(bob, "bob")), "ws"));
  await step("before: room message", async () => {
    await send(b, "before the restart");
    for (const p of [aws, aajax]) await waitMessage(p, "room", "bob", "before the restart");
  });

  emit({ need: "restart" });
  await step("server restarted", async () => {
    const l = await nextLine(30_000);
    if (l !== "restarted") throw new Error(`unexpected line ${JSON.stringify(l)}`);
  });

  // The pages reconnect by themselves: a second handshake, same transport.
  await step("after: alice reconnected on ws", () => waitOpen(aws, "ws", 2));
  await step("after: alice's second tab reconnected on ajax", () => waitOpen(aajax, "ajax", 2));
  await step("after: bob reconnected on ws", () => waitOpen(b, "ws", 2));
  await step("after: users online", async () => ({
    aws: await waitUsers(aws, ["alice", "bob"]),
    b: await waitUsers(b, ["alice", "bob"]),
  }));
  await step("after: room message", async () => {
    await send(aws, "after the restart");
    for (const p of [aajax, b]) await waitMessage(p, "room", "alice", "after the restart");
  });
  await step("after: private message to both of alice's tabs", async () => {
    await send(b, "welcome back", "alice");
    for (const p of [aws, aajax]) await waitMessage(p, "private", "bob", "welcome back");
  });
  await step("at most one poll in flight per page", () => maxPolls());
  return step("after: close codes seen", async () => ({
    ws: await aws.textContent("#conn-close"),
    ajax: await aajax.textContent("#conn-close"),
  }));
}

// Two ways to have no WebSocket: the constructor is gone, or it throws (as
// where a policy forbids it). Either way "auto" must fall back to Ajax.
const noWebSocket = () => {
  delete window.WebSocket;
};
const throwingWebSocket = () => {
  window.WebSocket = class {
    constructor() {
      throw new DOMException("WebSocket disabled by the test", "SecurityError");
    }
  };
};

let failed = false;
try {
  switch (scenario) {
    case "ws":
      await chat("ws");
      break;
    case "ajax":
      await chat("ajax", { alice: throwingWebSocket, bob: noWebSocket, carol: throwingWebSocket });
      break;
    case "restart":
      await restart();
      break;
    default:
      throw new Error(`unknown scenario ${scenario}`);
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
