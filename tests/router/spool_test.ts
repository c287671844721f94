/** The session spool: memory then disk, reads at any held offset, trims, file reuse, backpressure. */
import assert from "node:assert/strict";
import { Spool } from "../../router/spool.ts";
import { tempDir } from "../helpers.ts";

Deno.test("spool: bytes read back exactly across memory and disk, after trims and file reuse", async () => {
  using dir = tempDir();
  const spool = new Spool({ memoryBytes: 1000, totalBytes: 1 << 20, dir: dir.path });
  const all: number[] = [];
  let next = 0;
  const add = async (n: number) => {
    const b = new Uint8Array(n).map((_, i) => (next + i) * 7 % 251);
    next += n;
    all.push(...b);
    await spool.append(b);
  };
  const check = async () => {
    for (let off = spool.base; off < spool.end;) {
      const got = await spool.read(off, 333);
      assert.deepEqual([...got], all.slice(off, off + got.length), `at ${off}`);
      off += got.length;
    }
  };
  for (const n of [600, 600, 900, 50]) await add(n); // 600 and 50 fit in memory, 1500 go to disk
  assert.equal(spool.spooled, 1500);
  await check();
  spool.trim(700); // inside the first disk segment
  await check();
  spool.trim(2150); // everything: the file is reused from its start
  for (const n of [400, 700, 1200]) await add(n);
  spool.trim(2500);
  await check();
  assert.throws(() => spool.trim(99_999), /beyond what was sent/);
  await assert.rejects(spool.read(10, 5), /not held/);
  spool.close();
});

Deno.test("spool: a full spool makes the sender wait until bytes are acknowledged", async () => {
  using dir = tempDir();
  const spool = new Spool({ memoryBytes: 100, totalBytes: 300, dir: dir.path });
  await spool.append(new Uint8Array(250));
  let done = false;
  const waiting = spool.append(new Uint8Array(100)).then(() => (done = true));
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(done, false, "blocked while full");
  spool.trim(200);
  await waiting;
  assert.equal(spool.size, 150);
  spool.close();
});
