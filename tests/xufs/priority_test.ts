/**
 * Foreground first (issue 15): over one slow link busy pre-caching a tree, B's foreground
 * requests — a lookup (a listing) and the fetch of one file — are answered ahead of the
 * pre-cache batches queued before them, and pre-caching carries on afterwards. Observed through
 * the bytes the link delivered before each answer: answered in request order (the old server, one
 * request at a time per connection), every batch already asked for would come first.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { CacheManager } from "../../xufs/cache/mod.ts";
import { sleep, tempDir } from "../helpers.ts";
import { type Counter, serve } from "./serve.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };

/** Pre-cache batches are of 1 MiB (xufs/cache/precache.ts): 16 files of this size. */
const FILE = 64 << 10;
const BATCHES = 8, JOBS = 4;
/** The link delivers this many bytes per second (a batch: 1/8 s). */
const RATE = 8 << 20;

Deno.test("xufs foreground first: a lookup and a fetch overtake the pre-cache batches queued before them on a slow link", opts, async () => {
  using dir = tempDir();
  const a = join(dir.path, "A");
  Deno.mkdirSync(join(a, "tree"), { recursive: true });
  Deno.mkdirSync(join(a, "u"));
  const body = new Uint8Array(FILE).fill(0x61);
  for (let i = 0; i < BATCHES * 16; i++) Deno.writeFileSync(join(a, "tree", `f${String(i).padStart(3, "0")}`), body);
  // Too large to be pre-cached: only a foreground fetch brings them.
  Deno.writeFileSync(join(a, "solo"), new Uint8Array(FILE + 1).fill(0x62));
  Deno.writeFileSync(join(a, "u/v"), new Uint8Array(FILE + 1).fill(0x63));
  const srv = serve(a, dir.path);
  const counter: Counter = { bytes: 0 };
  try {
    const cache = new CacheManager({ dir: join(dir.path, "B"), from: "hostB", log: () => {}, precacheMax: FILE, precacheJobs: JOBS });
    await cache.init();
    cache.attach(await srv.connect(undefined, counter, RATE));
    // Entering the tree queues 8 batches, 4 of them asked for at once on the only link.
    assert.equal(await cache.answer("LIST\ttree"), "OK\n");
    const before = counter.bytes;
    assert.equal(await cache.answer("LOOKUP\tu/v"), "OK\n");
    const lookupAfter = counter.bytes - before;
    assert.equal(await cache.answer("FETCH\tsolo"), "OK\n");
    const fetchAfter = counter.bytes - before - lookupAfter;
    assert.equal(Deno.readFileSync(join(cache.tree, "solo")).length, FILE + 1);
    // In request order, each would come after the 4 MiB of batches asked for before it; first,
    // after the batch being sent (and what the socket holds) at most. Allowance: 2.5 batches.
    const batch = 16 * FILE, most = 2.5 * batch;
    assert.ok(lookupAfter < most, `the lookup was answered after ${lookupAfter} bytes of pre-caching (a batch is ${batch})`);
    assert.ok(fetchAfter < most, `the fetch was answered after ${fetchAfter} bytes of pre-caching (a batch is ${batch})`);
    // Pre-caching was only put behind: every small file arrives.
    const last = join(cache.tree, "tree", `f${String(BATCHES * 16 - 1).padStart(3, "0")}`);
    const end = Date.now() + 10_000;
    const cached = () => cache.state.meta.get(`tree/f${String(BATCHES * 16 - 1).padStart(3, "0")}`)?.fetched === true;
    while (!cached() && Date.now() < end) await sleep(20);
    assert.ok(cached(), "pre-caching went on after the foreground requests");
    assert.equal(Deno.readFileSync(last)[0], 0x61);
    for (const l of cache.links) l.close();
  } finally {
    srv.close();
  }
});
