/**
 * The direct path's policy and held paths (router/direct.ts): which listeners may be reached
 * directly and at which address, a failed path held for 120 s, doubling up to 30 minutes, per
 * client host and direction, and `--direct` values.
 */
import assert from "node:assert/strict";
import { DIRECT_HOLD_FIRST_MS, DIRECT_HOLD_MAX_MS, DirectPaths, parseDirectPolicy } from "../../router/direct.ts";
import { formatIp } from "../../router/ipv4.ts";

const listener = (realHost: string, direct = true) => ({ realHost, realPort: 41000, direct });

Deno.test("direct: a listener that checks tickets is offered at its address; a loopback one at the router's", () => {
  const d = new DirectPaths("auto");
  const to = d.target("198.18.1.1", listener("198.18.1.12"))!;
  assert.deepEqual([formatIp(to.ip), to.port], ["198.18.1.12", 41000]);
  assert.equal(formatIp(d.target("198.18.1.1", listener("127.0.0.1"))!.ip), "198.18.1.1");
  assert.equal(formatIp(d.target("198.18.1.1", listener("::ffff:198.18.1.13"))!.ip), "198.18.1.13");
  assert.equal(d.target("198.18.1.1", listener("198.18.1.12", false)), null, "a wildcard listener looks only at the router's connections");
  assert.equal(d.target("198.18.1.1", listener("fd00::1")), null, "IPv6 real addresses are not brokered");
  assert.equal(new DirectPaths("never").target("198.18.1.1", listener("198.18.1.12")), null);
});

Deno.test("direct: a failed path is held one way, 120 s, doubling to 30 minutes; then offered again", () => {
  let now = 1_000_000;
  const d = new DirectPaths("auto", () => now);
  const to = d.target("198.18.1.1", listener("198.18.1.12"))!;
  assert.equal(d.held("198.18.1.11", to), false);
  assert.deepEqual(d.failed("198.18.1.11", to), { path: "198.18.1.11 -> 198.18.1.12", holdMs: DIRECT_HOLD_FIRST_MS });
  assert.equal(d.held("198.18.1.11", to), true);
  assert.equal(d.held("::ffff:198.18.1.11", to), true, "the same host in its IPv4-mapped form");
  assert.equal(d.held("198.18.1.10", to), false, "another client host");
  const back = d.target("198.18.1.1", listener("198.18.1.11"))!;
  assert.equal(d.held("198.18.1.12", back), false, "the other direction");
  now += DIRECT_HOLD_FIRST_MS - 1;
  assert.equal(d.held("198.18.1.11", to), true);
  now += 1;
  assert.equal(d.held("198.18.1.11", to), false, "offered again after the hold");
  let hold = DIRECT_HOLD_FIRST_MS;
  for (let i = 0; i < 10; i++) {
    const f = d.failed("198.18.1.11", to);
    hold = Math.min(hold * 2, DIRECT_HOLD_MAX_MS);
    assert.equal(f.holdMs, hold);
  }
  assert.equal(hold, DIRECT_HOLD_MAX_MS);
  assert.equal(d.holds, 1);
});

Deno.test("direct: --direct takes auto or never", () => {
  assert.equal(parseDirectPolicy("auto"), "auto");
  assert.equal(parseDirectPolicy("never"), "never");
  assert.throws(() => parseDirectPolicy("sometimes"), /^Error: Expected --direct auto or never: sometimes$/);
});
