/**
 * A's file server and B's cache manager wired together over a real Unix socket: confinement,
 * malformed input, compare-and-swap write-back with conflict copies, the cache when A is gone,
 * and a queued write-back surviving a crash of the cache manager.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { CacheManager } from "../../xufs/cache/mod.ts";
import { encodeMessage } from "../../xufs/messages.ts";
import { tempDir } from "../helpers.ts";
import { assertConflictKept, serve } from "./serve.ts";


function setup(dir: string) {
  const a = join(dir, "A");
  Deno.mkdirSync(join(a, "sub/deep"), { recursive: true });
  Deno.writeTextFileSync(join(a, "file1"), "one\n");
  Deno.writeTextFileSync(join(a, "sub/deep/f"), "deep\n");
  Deno.writeTextFileSync(join(dir, "secret-outside"), "do not leak\n");
  Deno.symlinkSync("../secret-outside", join(a, "out-link"));
  Deno.symlinkSync("/etc/passwd", join(a, "abs-link"));
  return a;
}

/** A's tree, its server, and a cache manager on B attached to it, logging into `logs`. */
async function attachedCache(dir: string) {
  const a = setup(dir);
  const srv = serve(a, dir);
  const logs: string[] = [];
  const cache = new CacheManager({ dir: join(dir, "B"), from: "hostB", log: (l) => logs.push(l) });
  await cache.init();
  cache.attach(await srv.connect());
  return { a, srv, cache, logs };
}

Deno.test("xufs server: nothing outside the export is reachable; bad frames before authentication are logged, not fatal (after it: notun_test)", async () => {
  using dir = tempDir();
  const a = setup(dir.path);
  const srv = serve(a, dir.path);
  try {
    const r = await srv.connect();
    for (const path of ["../secret-outside", "/etc/passwd", "sub/../../secret-outside", "out-link", "abs-link", "sub/\0x", ""]) {
      await assert.rejects(r.request({ op: "read", path }), (e: Error & { code?: string }) => /EACCES|EINVAL/.test(e.code ?? ""), path);
    }
    await assert.rejects(r.request({ op: "write", path: "out-link", base: null }, new Uint8Array(3)), /Symlink not followed|EACCES/);
    assert.equal(Deno.readTextFileSync(join(dir.path, "secret-outside")), "do not leak\n");
    const entries: { name: string; type: string; target?: string }[] = [];
    const list = await r.request({ op: "list", path: "." }, undefined, { onPart: (h) => entries.push(...(h.entries as typeof entries)) });
    entries.push(...list.head.entries);
    const names = entries.map((e) => `${e.name}:${e.type}:${e.target ?? ""}`).sort();
    assert.deepEqual(names, ["abs-link:l:/etc/passwd", "file1:f:", "out-link:l:../secret-outside", "sub:d:"]);
    // A wrong secret gets nothing.
    await assert.rejects(srv.connect("wrong"), /refused|prove/);
    // Garbage: a huge header length, then a non-JSON header. The server logs and stays up.
    for (const bad of [new Uint8Array([0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]), encodeMessage({}).fill(0x7b, 8)]) {
      const c = await Deno.connect({ transport: "unix", path: srv.path });
      const hello = new Uint8Array(4096);
      await c.read(hello);
      await c.write(bad);
      assert.equal(await c.read(new Uint8Array(16)), null);
      c.close();
    }
    assert.ok(srv.logs.some((l) => /wrong session secret/.test(l)), srv.logs.join("\n"));
    assert.ok(srv.logs.some((l) => /malformed message/.test(l)), srv.logs.join("\n"));
    assert.equal((await (await srv.connect()).request({ op: "stat", path: "file1" })).head.entry.size, 4);
    r.close();
  } finally {
    srv.close();
  }
});

Deno.test("xufs cache: write-back is compare-and-swap; a concurrent change on A keeps both copies", async () => {
  using dir = tempDir();
  const { a, srv, cache, logs } = await attachedCache(dir.path);
  try {
    assert.equal(await cache.answer("FETCH\tfile1"), "OK\n");
    assert.equal(Deno.readTextFileSync(join(cache.tree, "file1")), "one\n");
    // B writes and closes: A gets the whole file.
    Deno.writeTextFileSync(join(cache.tree, "file1"), "one, edited on B\n");
    assert.equal(await cache.answer("CLOSED\tfile1"), "OK\n");
    assert.equal(await cache.flush(5000), 0);
    assert.equal(Deno.readTextFileSync(join(a, "file1")), "one, edited on B\n");
    // A changes it meanwhile; B's next write-back must not overwrite A's edit.
    await new Promise((r) => setTimeout(r, 20));
    Deno.writeTextFileSync(join(a, "file1"), "edited on A\n");
    Deno.writeTextFileSync(join(cache.tree, "file1"), "edited on B again\n");
    assert.equal(await cache.answer("CLOSED\tfile1"), "OK\n");
    assert.equal(await cache.flush(5000), 0);
    // A's copy stays, B's is kept beside it, and the next open on B sees A's version.
    await assertConflictKept(a, cache, logs, "file1", "hostB", "edited on A\n", "edited on B again\n");
  } finally {
    srv.close();
  }
});

Deno.test("xufs cache: with A gone, cached files read, uncached fail fast with EIO, queued write-backs pass to a new manager on the same cache (SIGKILL: writes_test)", async () => {
  using dir = tempDir();
  const a = setup(dir.path);
  let srv = serve(a, dir.path);
  const bdir = join(dir.path, "B");
  const first = new CacheManager({ dir: bdir, from: "hostB", log: () => {} });
  await first.init();
  const remote = await srv.connect();
  first.attach(remote);
  assert.equal(await first.answer("FETCH\tfile1"), "OK\n");
  assert.equal(await first.answer("LIST\tsub"), "OK\n");
  srv.close();
  remote.close(); // A is unreachable from here on
  const t0 = Date.now();
  assert.equal(await first.answer("FETCH\tfile1"), "OK\n"); // cached: no network
  assert.equal(await first.answer("LOOKUP\tsub/deep"), "OK\n"); // listed: no network
  assert.equal(await first.answer("FETCH\tsub/deep/f"), "ERR EIO\n");
  assert.ok(Date.now() - t0 < 5000);
  Deno.writeTextFileSync(join(first.tree, "new-on-B"), "written while A was away\n");
  assert.equal(await first.answer("CLOSED\tnew-on-B"), "OK\n");
  assert.equal(await first.flush(0), 1);
  // The manager "crashes" (is dropped); a new one on the same cache sends the queue once A is back.
  srv = serve(a, dir.path);
  const second = new CacheManager({ dir: bdir, from: "hostB", log: () => {} });
  await second.init();
  assert.equal(second.queued, 1);
  second.attach(await srv.connect());
  assert.equal(await second.flush(5000), 0);
  assert.equal(Deno.readTextFileSync(join(a, "new-on-B")), "written while A was away\n");
  srv.close();
});

Deno.test("xufs cache: rename over and unlink of a file changed on A keep A's edit", async () => {
  using dir = tempDir();
  const { a, srv, cache, logs } = await attachedCache(dir.path);
  try {
    assert.equal(await cache.answer("FETCH\tfile1"), "OK\n");
    assert.equal(await cache.answer("FETCH\tsub/deep/f"), "OK\n");
    await new Promise((r) => setTimeout(r, 20));
    Deno.writeTextFileSync(join(a, "file1"), "A's edit\n");
    Deno.writeTextFileSync(join(a, "sub/deep/f"), "A's other edit\n");
    // sed -i style: a new temporary file renamed over file1.
    Deno.writeTextFileSync(join(cache.tree, "tmpXYZ"), "B's edit\n");
    assert.equal(await cache.answer("CLOSED\ttmpXYZ"), "OK\n");
    assert.equal(await cache.answer("RENAME\ttmpXYZ\tfile1"), "OK\n");
    assert.equal(await cache.answer("UNLINK\tsub/deep/f"), "OK\n");
    assert.equal(await cache.flush(5000), 0);
    assert.equal(Deno.readTextFileSync(join(a, "file1")), "A's edit\n");
    const copy = [...Deno.readDirSync(a)].find((e) => e.name.startsWith("file1.conflict-hostB-"));
    assert.ok(copy, "conflict copy");
    assert.equal(Deno.readTextFileSync(join(a, copy.name)), "B's edit\n");
    assert.equal(Deno.readTextFileSync(join(a, "sub/deep/f")), "A's other edit\n");
    assert.equal(logs.filter((l) => l.startsWith("conflict:")).length, 2, logs.join("\n"));
  } finally {
    srv.close();
  }
});

Deno.test("xufs server: compare-and-swap is atomic across servers on A; conflict copies are numbered, never overwritten", async () => {
  using dir = tempDir();
  const a = setup(dir.path);
  // Two ussh sessions: two file servers for one export, each with its own link from B.
  const servers = [serve(a, dir.path), serve(a, dir.path)];
  try {
    const links = await Promise.all(servers.map((s) => s.connect()));
    for (let round = 0; round < 5; round++) {
      const base = (await links[0].request({ op: "stat", path: "file1" })).head.entry.version;
      // Four writers start from the same version at once: one may land, the others are kept aside.
      const replies = await Promise.all([0, 1, 2, 3].map((i) => {
        const body = new TextEncoder().encode(`writer ${i} round ${round}\n`);
        return links[i % 2].request({ op: "write", path: "file1", base, mode: 0o644, from: "hostB" }, body);
      }));
      const landed = replies.filter((r) => !r.head.conflict);
      assert.equal(landed.length, 1, JSON.stringify(replies.map((r) => r.head)));
      const copies = replies.filter((r) => r.head.conflict).map((r) => String(r.head.conflict));
      assert.equal(new Set(copies).size, 3, copies.join(" "));
      for (const c of copies) assert.match(c, /^file1\.conflict-hostB-\d{8}-\d{6}-\d+$/);
    }
    const all = [...Deno.readDirSync(a)].map((e) => e.name).filter((n) => n.startsWith("file1.conflict-"));
    assert.equal(all.length, 15, all.join(" "));
    for (const l of links) l.close();
  } finally {
    for (const s of servers) s.close();
  }
});

Deno.test("xufs cache: what an older MyRT left queued (queue/NNN.json) is journaled and sent", async () => {
  using dir = tempDir();
  const a = setup(dir.path);
  const srv = serve(a, dir.path);
  try {
    const queue = join(dir.path, "B", "queue");
    Deno.mkdirSync(queue, { recursive: true });
    Deno.writeTextFileSync(join(queue, "000000000001.json"), JSON.stringify({ seq: 1, op: "mkdir", path: "old-dir", mode: 0o755 }));
    Deno.writeTextFileSync(join(queue, "000000000002.json"), JSON.stringify({ seq: 2, op: "write", path: "old-dir/f", mode: 0o644 }));
    Deno.writeTextFileSync(join(queue, "000000000002.data"), "queued by an older session\n");
    const cache = new CacheManager({ dir: join(dir.path, "B"), from: "hostB", log: () => {} });
    await cache.init();
    assert.equal(cache.queued, 2);
    cache.attach(await srv.connect());
    assert.equal(await cache.flush(5000), 0);
    assert.equal(Deno.readTextFileSync(join(a, "old-dir/f")), "queued by an older session\n");
    assert.deepEqual([...Deno.readDirSync(queue)].filter((e) => e.name.endsWith(".json")), []);
  } finally {
    srv.close();
  }
});
