/**
 * The lease table: unique addresses, holders and lifetimes (held, grace, expiry), who may act on
 * an address, listeners that belong to links, the append-only journal (reopen, compaction, a
 * torn last record, a version-1 state file converted), corrupt state refused: wrong shapes and
 * random JSON records are ConfigErrors naming FILE:LINE (fast-check), never TypeErrors; random
 * operations and restarts agree with a model (fast-check).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import fc from "fast-check";
import { ConfigError } from "../../common/errors.ts";
import { formatIp } from "../../router/ipv4.ts";
import { type Holder, LeaseTable } from "../../router/leases.ts";
import { tempDir } from "../helpers.ts";

const subnet = { net: 0x64400000, len: 24 }; // 100.64.0.0/24
const link = (id: number, token: Uint8Array = new Uint8Array(16)): Holder => ({ id, token });
const H = 3_600_000;

Deno.test("leases: unique, skip network/broadcast, survive reopen, exhaust cleanly", async () => {
  using dir = tempDir();
  const file = join(dir.path, "s.json");
  const t = await LeaseTable.open(subnet, file);
  const a = link(1);
  const got = new Set<string>();
  for (let i = 0; i < 254; i++) got.add(formatIp((await t.lease("10.0.0.1", "", H, false, a))!.ip));
  assert.equal(got.size, 254);
  assert.ok(!got.has("100.64.0.0") && !got.has("100.64.0.255"));
  assert.equal(await t.lease("10.0.0.1", "", H, false, a), null);
  t.close();
  const again = await LeaseTable.open(subnet, file);
  assert.equal(again.leases.size, 254);
  const l = again.leases.get(0x64400005)!;
  assert.equal(again.state(l), "grace", "a restarted router's leases wait for their holders");
  const b = link(2);
  assert.equal(again.hold(b, 0x64400005), null, "an open lease may be used by any link");
  assert.equal(await again.release(b, 0x64400005), null);
  assert.equal(await again.release(b, 0x64400005), "ENOENT");
  assert.equal(formatIp((await again.lease("h", "n", H, false, b))!.ip), "100.64.0.5");
  again.close();
});

Deno.test("leases: held while a holder lives, then grace for the lifetime, then released", async () => {
  using dir = tempDir();
  const t = await LeaseTable.open(subnet, join(dir.path, "s.json"));
  const a = link(1);
  const l = (await t.lease("h", "web", 1000, true, a))!;
  assert.equal(t.state(l), "held");
  const later = link(2, l.token);
  assert.deepEqual(t.holdByToken(later).map((x) => x.ip), [l.ip], "the token in HELLO holds it");
  t.drop(a);
  assert.equal(t.state(l), "held", "still held by the second link");
  t.drop(later);
  assert.equal(t.state(l), "grace");
  await t.expire(Date.now() + 500);
  assert.ok(t.leases.has(l.ip), "grace not over yet");
  assert.equal(t.hold(link(3, l.token), l.ip), null, "a holder coming back during grace");
  assert.equal(t.state(l), "held");
  t.drop(link(3));
  await t.expire(Date.now() + 1500);
  assert.ok(!t.leases.has(l.ip), "released after its lifetime");
  assert.equal(t.byName("web"), undefined, "and its name with it");
  t.close();
});

Deno.test("leases: only a holder may release, listen or unlisten; listeners vanish with their links", async () => {
  using dir = tempDir();
  const t = await LeaseTable.open(subnet, join(dir.path, "s.json"));
  const owner = link(1), other = link(2);
  const l = (await t.lease("h", "", H, true, owner))!;
  assert.equal(t.hold(other, l.ip), "EPERM", "an exclusive lease refuses a link without its token");
  assert.equal(await t.release(other, l.ip), "EPERM");
  assert.equal(t.listen(owner, l.ip, 80, "10.0.0.9", 40000, "aa"), null);
  assert.equal(t.listen(owner, l.ip, 80, "10.0.0.9", 40000, "bb"), "EADDRINUSE", "another registration");
  const child = link(3);
  assert.equal(t.listen(child, l.ip, 80, "10.0.0.9", 40000, "aa"), null, "the same listener id adds a link");
  assert.equal(t.unlisten(other, l.ip, 80, "aa"), "EPERM", "a link that never registered it");
  assert.equal(t.unlisten(owner, l.ip, 80, "cc"), "ENOENT");
  assert.deepEqual(t.drop(owner), [], "still registered by the child's link");
  assert.equal(t.listener(l.ip, 80)?.realPort, 40000);
  assert.equal(t.drop(child).length, 1, "the last link gone: dropped");
  assert.equal(t.listener(l.ip, 80), undefined);
  t.close();
});

Deno.test("leases: changes are appended to a journal, compacted past twice the live state", async () => {
  using dir = tempDir();
  const file = join(dir.path, "s.json");
  const t = await LeaseTable.open(subnet, file);
  const a = link(1);
  for (let round = 0; round < 100; round++) {
    const l = (await t.lease("h", "", H, false, a))!;
    assert.equal(await t.release(a, l.ip), null);
  }
  const keep = (await t.lease("h", "keep", H, false, a))!;
  const lines = Deno.readTextFileSync(file).trim().split("\n");
  assert.ok(lines.length < 2 * t.leases.size + 64 + 2, `compacted: ${lines.length} lines`);
  assert.ok(lines.every((x) => JSON.parse(x)), "one JSON record per line");
  // A crash in the middle of an append leaves a torn last line: ignored, the rest kept.
  Deno.writeTextFileSync(file, Deno.readTextFileSync(file) + '{"lease":{"ip":"100.6');
  t.close();
  const again = await LeaseTable.open(subnet, file);
  assert.deepEqual([...again.leases.keys()], [keep.ip]);
  assert.equal(again.byName("keep")?.ip, keep.ip);
  again.close();
});

Deno.test("leases: a version-1 state file is converted; corrupt or foreign state is refused, not overwritten", async () => {
  using dir = tempDir();
  const file = join(dir.path, "s.json");
  const v1 = { version: 1, subnet: "100.64.0.0/24", cursor: 0x64400007, leases: [{ ip: "100.64.0.7", holder: "10.0.0.1", name: "old", since: 1 }], listeners: [] };
  await Deno.writeTextFile(file, JSON.stringify(v1, null, 1) + "\n");
  const t = await LeaseTable.open(subnet, file);
  assert.equal(t.byName("old")?.ip, 0x64400007);
  t.close();
  assert.match(Deno.readTextFileSync(file).split("\n")[0], /"uvpn_state":2/);
  await Deno.writeTextFile(file, "{not json");
  await assert.rejects(LeaseTable.open(subnet, file), /corrupt router state/);
  assert.equal(await Deno.readTextFile(file), "{not json");
  await Deno.writeTextFile(file, JSON.stringify({ version: 1, subnet: "100.99.0.0/16", cursor: 0, leases: [], listeners: [] }));
  await assert.rejects(LeaseTable.open(subnet, file), /belongs to subnet 100\.99\.0\.0\/16/);
});

Deno.test("leases: state files of the wrong shape are configuration errors naming FILE:LINE, never TypeErrors, and stay untouched", async () => {
  using dir = tempDir();
  const file = join(dir.path, "s.json");
  const head = JSON.stringify({ uvpn_state: 2, subnet: "100.64.0.0/24" });
  const lease = { ip: "100.64.0.7", holder: "10.0.0.1", name: "n", since: 1, ttl: 60, token: "00ff", exclusive: false };
  const cases: [string, RegExp][] = [
    ["null\n", /corrupt router state/],
    ['{"version": 1, "subnet": "100.64.0.0/24", "cursor": 0}', /s\.json: corrupt router state \(no list of leases\)/],
    ['{"version": 1, "subnet": "100.64.0.0/24", "leases": [null]}', /lease is not an object: null/],
    ['{"version": 1, "subnet": "100.64.0.0/24", "leases": [{"ip": "garbage", "holder": "h", "since": 1}]}', /lease outside subnet 100\.64\.0\.0\/24: garbage/],
    [`${head}\n{"lease": null}\n`, /s\.json:2: corrupt router state \(lease is not an object: null\)/],
    [`${head}\n${JSON.stringify({ lease: { ...lease, holder: 5 } })}\n`, /s\.json:2: .*lease field holder is not a string: 5/],
    [`${head}\n${JSON.stringify({ lease: { ...lease, token: "zz" } })}\n`, /s\.json:2: .*lease token is not hex/],
    [`${head}\n${JSON.stringify({ lease: { ...lease, ttl: -1 } })}\n`, /s\.json:2: .*lease ttl out of range: -1/],
    [`${head}\n{"release": "garbage"}\n`, /s\.json:2: .*release of a bad address: "garbage"/],
    [`${head}\n{"cursor": "x"}\n`, /s\.json:2: .*cursor is not a number/],
    [`${head}\n[1, 2]\n`, /s\.json:2: .*not a record/],
  ];
  for (const [text, why] of cases) {
    await Deno.writeTextFile(file, text);
    await assert.rejects(LeaseTable.open(subnet, file), (e: Error) => e instanceof ConfigError && why.test(e.message), text);
    assert.equal(await Deno.readTextFile(file), text, "a refused state file is left as it was");
  }
});

Deno.test("leases: any JSON records in a state file load or fail with ConfigError only (fast-check)", async () => {
  using dir = tempDir();
  const file = join(dir.path, "s.json");
  const head = JSON.stringify({ uvpn_state: 2, subnet: "100.64.0.0/24" });
  const field = fc.oneof(fc.jsonValue(), fc.constantFrom("100.64.0.9", "00ff", 1, true));
  const record = fc.oneof(
    fc.jsonValue(),
    fc.record({ lease: fc.dictionary(fc.constantFrom("ip", "holder", "name", "since", "ttl", "token", "exclusive"), field) }, { requiredKeys: [] }),
    fc.record({ release: field, cursor: field }, { requiredKeys: [] }),
  );
  await fc.assert(
    fc.asyncProperty(fc.array(record, { maxLength: 6 }), async (records) => {
      await Deno.writeTextFile(file, [head, ...records.map((r) => JSON.stringify(r))].join("\n") + "\n");
      try {
        (await LeaseTable.open(subnet, file)).close();
      } catch (e) {
        if (!(e instanceof ConfigError)) throw e;
      }
    }),
    { numRuns: Number(Deno.env.get("MYRT_PROPERTY_RUNS") ?? 100_000) / 50 },
  );
});

// A model of the table under random operations, with time moved by expire(now + offset) (the
// table's clock is Date.now(), so lifetimes are whole minutes and the steps far from their
// edges): after every step the table holds exactly the model's addresses, each inside the
// subnet and never its network or broadcast address; a release by a link that does not hold
// the address is refused and changes nothing; an address with a live holder never expires, and
// one without outlives its lifetime never; a reopened table has the same addresses, all in grace.
Deno.test("leases: random leases, holds, drops, releases, expiries and restarts agree with a model (fast-check)", async () => {
  const small = { net: 0x64400000, len: 28 }; // 14 usable addresses: exhaustion is reached
  const TTL = 60_000;
  const op = fc.oneof(
    fc.record({ k: fc.constant("lease" as const), link: fc.integer({ min: 1, max: 4 }), exclusive: fc.boolean() }),
    fc.record({ k: fc.constant("hold" as const), link: fc.integer({ min: 1, max: 4 }), slot: fc.nat(15) }),
    fc.record({ k: fc.constant("drop" as const), link: fc.integer({ min: 1, max: 4 }) }),
    fc.record({ k: fc.constant("release" as const), link: fc.integer({ min: 1, max: 4 }), slot: fc.nat(15) }),
    fc.record({ k: fc.constant("expire" as const), minutes: fc.constantFrom(0, 2) }),
    fc.record({ k: fc.constant("reopen" as const) }),
  );
  using dir = tempDir();
  let run = 0;
  await fc.assert(
    fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 40 }), async (ops) => {
      const file = join(dir.path, `s${run++}.json`);
      let t = await LeaseTable.open(small, file);
      /** ip → the links holding it (an empty set: in grace, since `graceFrom`). */
      const model = new Map<number, { holders: Set<number>; exclusive: boolean; token: Uint8Array; graceFrom: number }>();
      const tokens = new Map<number, Uint8Array>(); // a link presents the token of its last exclusive lease
      const holder = (id: number): Holder => ({ id, token: tokens.get(id) ?? new Uint8Array(16) });
      const slotIp = (slot: number) => (small.net + slot) >>> 0;
      try {
        for (const o of ops) {
          if (o.k === "lease") {
            const l = await t.lease("h", "", TTL, o.exclusive, holder(o.link));
            if (model.size === 14) assert.equal(l, null, "a full subnet leases nothing");
            else {
              assert.ok(l && !model.has(l.ip), "a fresh address");
              model.set(l.ip, { holders: new Set([o.link]), exclusive: o.exclusive, token: l.token, graceFrom: 0 });
              if (o.exclusive) tokens.set(o.link, l.token);
            }
          } else if (o.k === "hold") {
            const m = model.get(slotIp(o.slot));
            const r = t.hold(holder(o.link), slotIp(o.slot));
            const mayHold = m && (!m.exclusive || tokens.get(o.link) === m.token);
            assert.equal(r, !m ? "ENOENT" : mayHold ? null : "EPERM");
            if (m && mayHold) m.holders.add(o.link);
          } else if (o.k === "drop") {
            t.drop(holder(o.link));
            for (const m of model.values()) if (m.holders.delete(o.link) && m.holders.size === 0) m.graceFrom = Date.now();
          } else if (o.k === "release") {
            const ip = slotIp(o.slot), m = model.get(ip);
            const r = await t.release(holder(o.link), ip);
            assert.equal(r, !m ? "ENOENT" : m.holders.has(o.link) ? null : "EPERM");
            if (r === null) model.delete(ip);
          } else if (o.k === "expire") {
            await t.expire(Date.now() + o.minutes * 60_000);
            if (o.minutes) for (const [ip, m] of model) if (m.holders.size === 0) model.delete(ip);
          } else {
            t.close();
            t = await LeaseTable.open(small, file);
            for (const m of model.values()) {
              m.holders.clear();
              m.graceFrom = Date.now();
            }
          }
          assert.deepEqual([...t.leases.keys()].sort(), [...model.keys()].sort(), `after ${JSON.stringify(o)}`);
          for (const [ip, l] of t.leases) {
            assert.ok(ip > small.net && ip < small.net + 15, `${formatIp(ip)} is a usable address of the subnet`);
            assert.equal(t.state(l), model.get(ip)!.holders.size ? "held" : "grace");
          }
        }
      } finally {
        t.close();
      }
    }),
    { numRuns: Number(Deno.env.get("MYRT_PROPERTY_RUNS") ?? 100_000) / 500 },
  );
});
