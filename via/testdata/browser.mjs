// Drives testdata/page.html in headless Chromium for browser_test.go:
//
//   node browser.mjs <base-url>
//
// Prints one JSON line per step: {"step", "ok", "ms", "detail"} or {"step",
// "ok": false, "error"}, and {"step": "done", "ok": true} last. Every wait
// is bounded.
import { chromium } from "playwright-core";

const [base] = process.argv.slice(2);
const TIMEOUT = 10_000;
const executablePath = process.env.WSASYNC_CHROMIUM || "/usr/bin/chromium";
setTimeout(() => {
  emit({ step: "watchdog", ok: false, error: "ran over 60 s" });
  process.exit(3);
}, 60_000).unref();

function emit(o) {
  process.stdout.write(JSON.stringify(o) + "\n");
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

const shows = (page, n) => page.waitForFunction((n) => document.getElementById("counter").textContent === String(n), n, { timeout: TIMEOUT });

let browser;
try {
  await step("browser launched", async () => {
    browser = await chromium.launch({ executablePath, timeout: 30_000, args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"] });
  });
  const ctx = await browser.newContext();
  ctx.setDefaultTimeout(TIMEOUT);
  const [p1, p2] = [await ctx.newPage(), await ctx.newPage()];
  const errors = [];
  for (const p of [p1, p2]) p.on("pageerror", (e) => errors.push(String(e)));

  await step("two tabs subscribe", async () => {
    await Promise.all([p1.goto(base + "/"), p2.goto(base + "/")]);
    await Promise.all([shows(p1, 100), shows(p2, 100)]);
  });
  await step("an invoke in one tab reaches both", async () => {
    const n = await p1.evaluate(() => t.via.invoke("t/counter/incr"));
    if (n !== 101) throw new Error(`incr answered ${n}`);
    await Promise.all([shows(p1, 101), shows(p2, 101)]);
  });
  await step("invoke rejects with status, timeout", async () => {
    const got = await p2.evaluate(async () => {
      const e1 = await t.via.invoke("t/forbidden").catch((e) => e);
      const e2 = await t.via.invoke("t/slow", null, { timeout: 50 }).catch((e) => e);
      return [e1.name, e1.kind, e1.status, e1.body, e2.kind, e2.message];
    });
    const want = ["ViaError", "status", 403, { error: "forbidden" }, "timeout", "timeout"];
    if (JSON.stringify(got) !== JSON.stringify(want)) throw new Error(`got ${JSON.stringify(got)}`);
  });
  await step("tabs reconnect and resubscribe after a drop", async () => {
    const drop = p1.evaluate(() => t.via.invoke("t/cut").catch((e) => e.kind));
    await drop;
    await Promise.all([
      p1.waitForFunction(() => t.via.status === "open" && t.values.length >= 3),
      p2.waitForFunction(() => t.via.status === "open" && t.values.length >= 3),
    ]);
    const n = await p2.evaluate(() => t.via.invoke("t/counter/incr"));
    await Promise.all([shows(p1, n), shows(p2, n)]);
    return { n, values: await p1.evaluate(() => t.values) };
  });
  await step("unsubscribe", async () => {
    const n = await p1.evaluate(() => {
      t.sub.unsubscribe();
      return t.via.invoke("t/subs");
    });
    if (n !== 0) throw new Error(`${n} subscriptions left for the tab`);
  });
  await step("no page errors", async () => {
    if (errors.length) throw new Error(errors.join("\n"));
  });
  await step("tabs closed", () => ctx.close());
  emit({ step: "done", ok: true });
} catch {
  // reported by step
} finally {
  await browser?.close();
}
