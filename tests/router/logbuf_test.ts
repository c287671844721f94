/**
 * The router's batched log (router/logbuf.ts): lines keep their order and prefix, a burst of
 * lines costs one write, not one per line, a large burst is written before it grows past its
 * bound, and a router process's last lines reach stderr when it exits.
 */
import assert from "node:assert/strict";
import { batchedLog } from "../../router/logbuf.ts";
import { DENO, ROOT, run, tempDir } from "../helpers.ts";

function sink() {
  const writes: string[] = [];
  const dec = new TextDecoder();
  return { writes, writeSync: (p: Uint8Array) => (writes.push(dec.decode(p)), p.length) };
}

const tick = () => new Promise((r) => setTimeout(r, 5));

Deno.test("logbuf: a burst of lines is one write, in order, each with the prefix", async () => {
  const s = sink();
  const log = batchedLog("p: ", s);
  for (let i = 0; i < 100; i++) log(`line ${i}`);
  assert.equal(s.writes.length, 0);
  await tick();
  assert.equal(s.writes.length, 1);
  assert.equal(s.writes[0], Array.from({ length: 100 }, (_, i) => `p: line ${i}\n`).join(""));
  log("later");
  await tick();
  assert.deepEqual(s.writes.slice(1), ["p: later\n"]);
});

Deno.test("logbuf: a batch is written once it reaches 64 KiB, without waiting", () => {
  const s = sink();
  const log = batchedLog("", s);
  const line = "x".repeat(1023);
  for (let i = 0; i < 64; i++) log(line);
  assert.equal(s.writes.length, 1);
  assert.equal(s.writes[0].length, 64 * 1024);
});

Deno.test("logbuf: the last lines of a process that exits at once reach stderr", async () => {
  using d = tempDir();
  const f = `${d.path}/exit.ts`;
  Deno.writeTextFileSync(f, `import { batchedLog } from "${ROOT}/router/logbuf.ts";\n` +
    `const log = batchedLog("r: ");\nlog("one");\nlog("two");\nDeno.exit(3);\n`);
  const r = await run(DENO, ["run", "-A", "--no-prompt", f]);
  assert.equal(r.code, 3);
  assert.equal(r.stderr, "r: one\nr: two\n");
});
