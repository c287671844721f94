/**
 * XUFS on the wide-area network, with A's real file server and B's cache managers over real
 * sockets: striped fetches and write-backs over several links (random sizes around the range
 * boundaries, every byte compared, and each link carrying ranges); corrupted and incomplete
 * ranged uploads refused; pre-caching of small files; change callbacks reaching B's skeleton
 * with no request from B; two B caches on one export staying coherent and keeping both copies
 * of a conflict; the progress line.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { dirname, join } from "node:path";
import { CacheManager, type CacheOptions } from "../../xufs/cache/mod.ts";
import { Progress, PROGRESS_AFTER_MS, progressWanted } from "../../xufs/progress.ts";
import { sha256 } from "../../common/bytes.ts";
import { sleep, tempDir } from "../helpers.ts";
import { assertConflictKept, type Counter, serve } from "./serve.ts";

const STRIPE = 4096;

/** A cache manager in `dir` attached to `srv` over `links` connections. */
async function cacheOn(srv: ReturnType<typeof serve>, dir: string, links = 1, o: Partial<CacheOptions> = {}, counters: Counter[] = []) {
  const logs: string[] = [];
  const cache = new CacheManager({ dir, from: `host-${links}`, log: (l) => logs.push(l), ...o });
  await cache.init();
  for (let i = 0; i < links; i++) counters.push({ bytes: 0 });
  cache.attach(await srv.connect(undefined, counters[0]));
  for (let i = 1; i < links; i++) cache.addLink(await srv.connect(undefined, counters[i]));
  return { cache, logs };
}

/** Waits (at most `ms`) until `cond` holds (a throw counts as not yet); false if it never did. */
async function until(cond: () => boolean, ms = 5000): Promise<boolean> {
  const holds = () => {
    try {
      return cond();
    } catch {
      return false;
    }
  };
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (holds()) return true;
    await sleep(20);
  }
  return holds();
}

/** A's export in `dir`/A holding `files` (path: content), and a file server for it. */
function exported(dir: string, files: Record<string, string | Uint8Array>) {
  const a = join(dir, "A");
  Deno.mkdirSync(a);
  for (const [path, data] of Object.entries(files)) {
    Deno.mkdirSync(dirname(join(a, path)), { recursive: true });
    Deno.writeFileSync(join(a, path), typeof data === "string" ? new TextEncoder().encode(data) : data);
  }
  return { a, srv: serve(a, dir) };
}

const sizeOf = (p: string) => Deno.statSync(p).size;
const isFile = (p: string) => Deno.statSync(p).isFile;

Deno.test("xufs striping: random sizes around range boundaries arrive intact, both ways, over every link", async () => {
  using dir = tempDir();
  // The file of 16 ranges gives every link (two workers each, taking ranges in turn) at least two.
  const sizes = [STRIPE * 2, STRIPE * 2 + 1, STRIPE * 3 - 1, STRIPE * 5, STRIPE * 7 + 1, STRIPE * 16];
  for (let i = 0; i < 5; i++) sizes.push(STRIPE * 2 + Math.floor(Math.random() * STRIPE * 10));
  const files = sizes.map((n, i) => ({ name: `f${i}`, data: new Uint8Array(randomBytes(n)) }));
  const { a, srv } = exported(dir.path, Object.fromEntries(files.map((f) => [f.name, f.data])));
  const counters: Counter[] = [];
  try {
    const { cache } = await cacheOn(srv, join(dir.path, "B"), 4, { stripeSize: STRIPE, stripeMin: STRIPE * 2, precacheMax: 0 }, counters);
    for (const f of files) {
      assert.equal(await cache.answer(`FETCH\t${f.name}`), "OK\n");
      assert.equal(sha256(Deno.readFileSync(join(cache.tree, f.name))), sha256(f.data), `${f.name}: ${f.data.length} bytes`);
    }
    // Every link carried ranges, not just the main one.
    for (const [i, c] of counters.entries()) assert.ok(c.bytes > STRIPE * 2, `link ${i} received ${c.bytes} bytes`);
    // Write-back: new random sizes around the boundaries, sent as checked ranges and committed.
    const back = files.map((f, i) => ({ name: f.name, data: new Uint8Array(randomBytes(sizes[(i + 3) % sizes.length] + (i % 3) - 1)) }));
    for (const f of back) {
      Deno.writeFileSync(join(cache.tree, f.name), f.data);
      assert.equal(await cache.answer(`CLOSED\t${f.name}`), "OK\n");
    }
    assert.equal(await cache.flush(20_000), 0);
    for (const f of back) assert.equal(sha256(Deno.readFileSync(join(a, f.name))), sha256(f.data), `${f.name} on A`);
    assert.deepEqual([...Deno.readDirSync(a)].map((e) => e.name).sort(), files.map((f) => f.name).sort(), "no temporary files left");
  } finally {
    srv.close();
  }
});

Deno.test("xufs slow link: a fetch longer than any fixed deadline completes while bytes keep coming", async () => {
  using dir = tempDir();
  // 96 KiB at 24 KiB/s: 4 s, twice the link's watchdog (2 s here): only progress keeps it alive.
  const data = new Uint8Array(randomBytes(96 << 10));
  const { srv } = exported(dir.path, { slow: data });
  try {
    const cache = new CacheManager({ dir: join(dir.path, "B"), from: "slow", log: () => {}, precacheMax: 0 });
    await cache.init();
    cache.attach(await srv.connect(undefined, undefined, 24 << 10, 2000));
    const started = Date.now();
    assert.equal(await cache.answer("FETCH\tslow"), "OK\n");
    assert.ok(Date.now() - started > 3000, "the fetch outlasted the watchdog");
    assert.equal(sha256(Deno.readFileSync(join(cache.tree, "slow"))), sha256(data));
  } finally {
    srv.close();
  }
});

Deno.test("xufs striping: a corrupted range and an incomplete upload are refused; A's file stays", async () => {
  using dir = tempDir();
  const { a, srv } = exported(dir.path, { f: "original\n" });
  try {
    const r = await srv.connect();
    const base = (await r.request({ op: "stat", path: "f" })).head.entry.version;
    const { upload } = (await r.request({ op: "wbegin", path: "f", size: 8 })).head;
    const part = new TextEncoder().encode("abcd");
    await assert.rejects(r.request({ op: "wpart", upload, offset: 0, sha256: sha256(new Uint8Array(4)) }, part), /arrived corrupted/);
    await assert.rejects(r.request({ op: "wpart", upload, offset: 6, sha256: sha256(part) }, part), /Range outside the upload of 8 bytes: 6\+4/);
    await r.request({ op: "wpart", upload, offset: 0, sha256: sha256(part) }, part);
    await assert.rejects(r.request({ op: "write", path: "f", base, upload }), /Upload of f is incomplete: 4 of 8 bytes/);
    assert.equal(Deno.readTextFileSync(join(a, "f")), "original\n");
    assert.deepEqual([...Deno.readDirSync(a)].map((e) => e.name), ["f"]);
    // A range read carries the hash of exactly its bytes.
    const got = await r.request({ op: "read", path: "f", offset: 2, length: 3, hash: true });
    assert.equal(new TextDecoder().decode(got.payload), "igi");
    assert.equal(got.head.sha256, sha256(got.payload));
    r.close();
  } finally {
    srv.close();
  }
});

Deno.test("xufs pre-caching: entering a directory lists its subdirectories and fetches small files, not large ones", async () => {
  using dir = tempDir();
  const files: Record<string, string | Uint8Array> = { "src/sub/deep.c": "int deep;\n", "src/big.bin": new Uint8Array(randomBytes(100_000)) };
  for (let i = 0; i < 40; i++) files[`src/s${i}.c`] = `int f${i}(void) { return ${i}; }\n`;
  const { srv } = exported(dir.path, files);
  try {
    const { cache } = await cacheOn(srv, join(dir.path, "B"), 2, { precacheMax: 1000 });
    assert.equal(await cache.answer("LIST\tsrc"), "OK\n");
    // With A gone, the small files were already cached; the large one was not.
    assert.ok(await until(() => Deno.readTextFileSync(join(cache.tree, "src/s39.c")).startsWith("int f39")), "pre-cached");
    assert.ok(await until(() => Deno.readTextFileSync(join(cache.tree, "src/sub/deep.c")) === "int deep;\n"), "subdirectory pre-listed");
    srv.close();
    for (const l of cache.links) l.close();
    assert.equal(await cache.answer("FETCH\tsrc/s7.c"), "OK\n");
    assert.equal(Deno.readTextFileSync(join(cache.tree, "src/s7.c")), "int f7(void) { return 7; }\n");
    assert.equal(await cache.answer("FETCH\tsrc/big.bin"), "ERR EIO\n");
    assert.equal(await cache.answer("FETCH\tsrc/sub/deep.c"), "OK\n");
  } finally {
    srv.close();
  }
});

Deno.test("xufs change callbacks: a change on A reaches B's skeleton unasked; a revalidation after reconnecting", async () => {
  using dir = tempDir();
  const { a, srv } = exported(dir.path, { "d/f": "v1\n" });
  try {
    const bdir = join(dir.path, "B");
    const { cache } = await cacheOn(srv, bdir, 1, { precacheMax: 0 });
    assert.equal(await cache.answer("FETCH\td/f"), "OK\n");
    assert.equal(Deno.readTextFileSync(join(cache.tree, "d/f")), "v1\n");
    await sleep(100); // the watch is set up
    Deno.writeTextFileSync(join(a, "d/f"), "version 2\n");
    Deno.writeTextFileSync(join(a, "d/new"), "new on A\n");
    // No request from B: only the pushed callback can change the skeleton.
    assert.ok(await until(() => sizeOf(join(cache.tree, "d/f")) === 10), "changed size seen on B");
    assert.ok(await until(() => isFile(join(cache.tree, "d/new"))), "new file seen on B");
    assert.equal(await cache.answer("FETCH\td/f"), "OK\n");
    assert.equal(Deno.readTextFileSync(join(cache.tree, "d/f")), "version 2\n");
    // The link drops; A changes meanwhile; a new cache manager on the same cache revalidates.
    for (const l of cache.links) l.close();
    await cache.saveNow();
    Deno.writeTextFileSync(join(a, "d/f"), "changed while away\n");
    const again = await cacheOn(srv, bdir, 1, { precacheMax: 0 });
    assert.equal(Deno.readTextFileSync(join(again.cache.tree, "d/f")), "version 2\n", "stale until revalidated");
    assert.equal(await again.cache.answer("FETCH\td/f"), "OK\n");
    assert.equal(Deno.readTextFileSync(join(again.cache.tree, "d/f")), "changed while away\n");
  } finally {
    srv.close();
  }
});

Deno.test("xufs two B caches: one's write-back reaches the other; concurrent edits keep both copies", async () => {
  using dir = tempDir();
  // Two ussh sessions: two file servers on A for one export, one cache on each B host.
  const { a, srv } = exported(dir.path, { shared: "start\n" });
  const srv2 = serve(a, dir.path);
  try {
    const b1 = (await cacheOn(srv, join(dir.path, "B1"), 1)).cache;
    const { cache: b2, logs: logs2 } = await cacheOn(srv2, join(dir.path, "B2"), 2);
    for (const b of [b1, b2]) assert.equal(await b.answer("FETCH\tshared"), "OK\n");
    await sleep(100);
    Deno.writeTextFileSync(join(b1.tree, "shared"), "from B1\n");
    assert.equal(await b1.answer("CLOSED\tshared"), "OK\n");
    assert.equal(await b1.flush(5000), 0);
    assert.ok(await until(() => sizeOf(join(b2.tree, "shared")) === 8), "B2 sees B1's write-back");
    assert.equal(await b2.answer("FETCH\tshared"), "OK\n");
    assert.equal(Deno.readTextFileSync(join(b2.tree, "shared")), "from B1\n");
    // Now both edit the same version; B1 writes back first, B2's edit (in progress) is kept.
    await sleep(20);
    Deno.writeTextFileSync(join(b2.tree, "shared"), "B2 was here\n");
    Deno.writeTextFileSync(join(b1.tree, "shared"), "B1 again\n");
    const relisted = b2.callbacks.relisted;
    assert.equal(await b1.answer("CLOSED\tshared"), "OK\n");
    assert.equal(await b1.flush(5000), 0);
    // The callback reaches B2 (B2 relists the directory) and must not undo its edit.
    assert.ok(await until(() => b2.callbacks.relisted > relisted), "B2 relisted after B1's write-back");
    assert.equal(Deno.readTextFileSync(join(b2.tree, "shared")), "B2 was here\n");
    assert.equal(await b2.answer("CLOSED\tshared"), "OK\n");
    assert.equal(await b2.flush(5000), 0);
    await assertConflictKept(a, b2, logs2, "shared", "host-2", "B1 again\n", "B2 was here\n");
  } finally {
    srv.close();
    srv2.close();
  }
});

Deno.test("xufs progress: a line after 2 s of a transfer, rewritten in place and erased; none when disabled", async () => {
  const shown: string[] = [], quiet: string[] = [];
  const on = new Progress("fetching big", 8 << 20, true, (s) => shown.push(s));
  const off = new Progress("fetching big", 8 << 20, false, (s) => quiet.push(s));
  for (const p of [on, off]) p.add(4 << 20);
  await sleep(PROGRESS_AFTER_MS + 700);
  for (const p of [on, off]) p.end();
  assert.ok(shown[0].startsWith("\r\x1b[K"), JSON.stringify(shown[0]));
  assert.match(shown[0].slice(4), /^xufs: fetching big {2}50% {2}4\/8 MiB {2}[0-9.]+ MB\/s$/);
  assert.equal(shown.at(-1), "\r\x1b[K");
  assert.deepEqual(quiet, []);
  const saved = Deno.env.get("XUFS_PROGRESS");
  try {
    Deno.env.set("XUFS_PROGRESS", "1");
    assert.equal(progressWanted(), true);
    Deno.env.set("XUFS_PROGRESS", "0");
    assert.equal(progressWanted(), false);
  } finally {
    if (saved === undefined) Deno.env.delete("XUFS_PROGRESS");
    else Deno.env.set("XUFS_PROGRESS", saved);
  }
});
