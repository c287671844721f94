/**
 * Striping connections: ussh's further ssh connections (xufs/ussh.ts, openStripes) — one that
 * comes up just as the session ends (the stop already signalled) is ended too, so ussh returns
 * instead of waiting for that ssh until the test's timeout (a session of one quick command hung 1
 * run in 10); adaptive striping (xufs/stripes.ts) — over links each capped in rate (a window-bound
 * path), a large fetch makes the session add links while its throughput grows, up to the limit,
 * and the links added during the fetch carry ranges of it; the policy stops at a plateau;
 * XUFS_STRIPES keeps a fixed count.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { sha256 } from "../../common/bytes.ts";
import { CacheManager } from "../../xufs/cache/mod.ts";
import { adaptStripes, StripePolicy, stripePlan } from "../../xufs/stripes.ts";
import { openStripes, type Ssh } from "../../xufs/ussh.ts";
import { tempDir } from "../helpers.ts";
import { type Counter, serve } from "./serve.ts";

Deno.test("ussh stripes: a connection that comes up as the session ends is closed, and ussh returns", async () => {
  const stop = new AbortController();
  const children: Deno.ChildProcess[] = [];
  const ssh = {
    // The stripe's forward is up only after the session ended: a real process stands for its ssh.
    stripe: () => {
      stop.abort();
      const child = new Deno.Command("sleep", { args: ["60"], stdout: "null", stderr: "null" }).spawn();
      children.push(child);
      return Promise.resolve(child);
    },
    run: () => Promise.resolve(""),
  } as unknown as Ssh;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const ended = await Promise.race([
    openStripes(ssh, 2, "/b/xufs.sock", "/a/server.sock", stop.signal).then(() => "ended"),
    new Promise((r) => (timer = setTimeout(() => r("still waiting after 10 s"), 10_000))),
  ]);
  clearTimeout(timer);
  for (const c of children) {
    try {
      c.kill("SIGKILL");
    } catch { /* ended */ }
    await c.status;
  }
  assert.equal(ended, "ended");
});

Deno.test("adaptive striping: a large fetch over rate-capped links adds links while throughput grows, up to the limit", { sanitizeOps: false, sanitizeResources: false }, async () => {
  using dir = tempDir();
  const a = join(dir.path, "A");
  Deno.mkdirSync(a);
  const data = new Uint8Array(randomBytes(24 << 20));
  Deno.writeFileSync(join(a, "big"), data);
  const srv = serve(a, dir.path);
  // Each link delivers 2 MiB/s at most, as a window-bound TCP connection on a long path would.
  const RATE = 2 << 20, LIMIT = 8;
  const counters: Counter[] = Array.from({ length: LIMIT }, () => ({ bytes: 0 }));
  const cache = new CacheManager({ dir: join(dir.path, "B"), from: "b", log: () => {}, stripeSize: 256 << 10, stripeMin: 1 << 20, precacheMax: 0 });
  await cache.init();
  cache.attach(await srv.connect(undefined, counters[0], RATE));
  cache.addLink(await srv.connect(undefined, counters[1], RATE));
  // As with --notun, A grows by connecting further links, which B takes at once.
  const steps: string[] = [];
  const stop = adaptStripes(srv.server.meter, new StripePolicy(2, LIMIT), async (from, to) => {
    steps.push(`${from}->${to}`);
    for (let k = from; k < to; k++) cache.addLink(await srv.connect(undefined, counters[k], RATE));
  }, 250);
  try {
    const before = counters.map((c) => c.bytes);
    assert.equal(await cache.answer("FETCH\tbig"), "OK\n");
    assert.equal(sha256(Deno.readFileSync(join(cache.tree, "big"))), sha256(data));
    assert.deepEqual(steps, ["2->4", "4->8"]);
    assert.equal(cache.links.length, LIMIT);
    // The links added during the fetch took ranges of it (each at least one range of 256 KiB).
    for (let k = 2; k < LIMIT; k++) assert.ok(counters[k].bytes - before[k] > 256 << 10, `link ${k} received ${counters[k].bytes} bytes`);
  } finally {
    stop();
    for (const l of cache.links) l.close();
    srv.close();
  }
});

Deno.test("adaptive striping: the policy doubles while a step pays, stops at a plateau or the limit; XUFS_STRIPES is a fixed count", () => {
  const grows = new StripePolicy(4, 16);
  assert.equal(grows.sample(20e6), 8);
  assert.equal(grows.sample(30e6), undefined, "the window after a step is left out");
  assert.equal(grows.sample(39e6), 16);
  assert.ok(grows.done);
  const flat = new StripePolicy(4, 16);
  assert.equal(flat.sample(20e6), 8);
  assert.equal(flat.sample(20e6), undefined);
  assert.equal(flat.sample(21e6), undefined, "8 links gave less than a tenth more than 4");
  assert.ok(flat.done);
  assert.equal(flat.count, 8);
  const saved = { s: Deno.env.get("XUFS_STRIPES"), m: Deno.env.get("XUFS_STRIPES_MAX") };
  try {
    Deno.env.delete("XUFS_STRIPES");
    Deno.env.delete("XUFS_STRIPES_MAX");
    assert.deepEqual(stripePlan(), { stripes: 8, limit: 16 });
    Deno.env.set("XUFS_STRIPES", "4");
    assert.deepEqual(stripePlan(), { stripes: 4 });
    Deno.env.delete("XUFS_STRIPES");
    Deno.env.set("XUFS_STRIPES_MAX", "12");
    assert.deepEqual(stripePlan(), { stripes: 8, limit: 12 });
    Deno.env.set("XUFS_STRIPES_MAX", "2");
    assert.deepEqual(stripePlan(), { stripes: 2 }, "the limit holds from the start");
    Deno.env.set("XUFS_STRIPES_MAX", "x");
    assert.throws(() => stripePlan(), /XUFS_STRIPES_MAX must be an integer of at least 1: x/);
  } finally {
    for (const [k, v] of [["XUFS_STRIPES", saved.s], ["XUFS_STRIPES_MAX", saved.m]] as const) {
      if (v === undefined) Deno.env.delete(k);
      else Deno.env.set(k, v);
    }
  }
});
