/** The C side of the wire format: native/test_wire checks libuvpn's codec against the shared vectors. */
import assert from "node:assert/strict";
import { join } from "node:path";
import { ROOT, run } from "./helpers.ts";

Deno.test("native: C wire codec agrees with the shared vectors byte for byte", async () => {
  const r = await run(join(ROOT, "native/build/test_wire"), [join(ROOT, "tests/vectors/wire.txt")]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  const m = r.stdout.match(/^(\d+) passed, (\d+) failed$/m);
  assert.ok(m, r.stdout);
  assert.ok(Number(m[1]) >= 30, `only ${m[1]} checks`);
  assert.equal(m[2], "0");
});
