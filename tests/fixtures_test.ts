/**
 * The fixtures' own guards (tests/helpers.ts): root is told from the uid map, not from the uid
 * (inside `unshare -r` the uid reads 0), and a test refuses to run in a network namespace that
 * has an interface besides loopback.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { DENO, IS_ROOT, ROOT, run } from "./helpers.ts";

const PROBE = join(ROOT, "tests/fixtures/netns_probe.ts");
const opts = { ignore: !IS_ROOT };

Deno.test("fixtures: uid 0 of a user namespace is not root", opts, async () => {
  const real = await run(DENO, ["run", "-A", PROBE]);
  assert.equal(real.stdout.trim(), "IS_ROOT=true", real.stderr);
  const mapped = await run("unshare", ["-r", DENO, "run", "-A", PROBE]);
  assert.equal(mapped.stdout.trim(), "IS_ROOT=false", mapped.stderr);
});

Deno.test("fixtures: a test refuses to run in a namespace with a real interface", opts, async () => {
  const r = await run("unshare", ["-n", "sh", "-c", `ip link add probe0 type veth peer name probe1 && exec "$0" run -A "$1"`, DENO, PROBE]);
  assert.notEqual(r.code, 0, r.stdout);
  assert.match(r.stderr, /Tests run only in a loopback-only network namespace \(\.\/scripts\/test\.sh\); this one has: probe0, probe1/);
  const lo = await run("unshare", ["-n", DENO, "run", "-A", PROBE]);
  assert.equal(lo.stdout.trim(), "IS_ROOT=true", lo.stderr);
});
