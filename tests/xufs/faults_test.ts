/**
 * XUFS links broken at exact points by the fault-injection relay (scripts/fault_relay.ts: faults
 * fire after N bytes, never after a sleep), between B's cache manager and A's real file server:
 * a striping link reset in the middle of a ranged fetch, and a link that goes silent (blackholed)
 * in the middle of one. The fetch completes byte for byte over the links left, within a bounded
 * time (the silent link is given up by its request timeout, not waited for), and the fault is
 * known to have fired where it was armed.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { FaultRelay, type FaultAction } from "../../scripts/fault_relay.ts";
import { sha256 } from "../../common/bytes.ts";
import { CacheManager } from "../../xufs/cache/mod.ts";
import { Remote } from "../../xufs/remote.ts";
import { tempDir } from "../helpers.ts";
import { withTimeout } from "../../common/io.ts";
import { SECRET, serve } from "./serve.ts";

/** The file (3 MiB, about 1 MiB per link), its ranges, and where the relayed link breaks. */
const SIZE = 3 << 20, STRIPE = 64 << 10, FAULT_AT = 256 << 10;

/**
 * A's export with one 3 MiB file, its server also on TCP behind a fault relay, and a cache
 * manager with two direct links and one through the relay whose `action` fires after
 * FAULT_AT bytes towards B.
 */
async function brokenStripe(dir: string, action: FaultAction) {
  const a = join(dir, "A");
  Deno.mkdirSync(a);
  const data = new Uint8Array(randomBytes(SIZE));
  Deno.writeFileSync(join(a, "big"), data);
  const srv = serve(a, dir);
  const tcp = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  (async () => {
    for await (const c of tcp) srv.server.serve(c);
  })().catch(() => {});
  const relay = new FaultRelay({ listen: { hostname: "127.0.0.1", port: 0 }, target: { hostname: "127.0.0.1", port: (tcp.addr as Deno.NetAddr).port } });
  const port = relay.start();
  const viaRelay = await Remote.open(await Deno.connect({ hostname: "127.0.0.1", port }), SECRET, 1500);
  const logs: string[] = [];
  const cache = new CacheManager({ dir: join(dir, "B"), from: "faults", log: (l) => logs.push(l), precacheMax: 0, stripeSize: STRIPE, stripeMin: STRIPE });
  await cache.init();
  cache.attach(await srv.connect());
  cache.addLink(await srv.connect());
  // The third link's requests time out after 1.5 s without a byte (the default is 10 s).
  cache.addLink(viaRelay);
  const fired = relay.arm({ dir: "down", afterBytes: FAULT_AT, action });
  return {
    data,
    cache,
    logs,
    fired,
    async close() {
      await cache.close();
      relay.close();
      tcp.close();
      srv.close();
    },
  };
}

for (const action of ["rst", "blackhole"] as const) {
  Deno.test(`xufs faults: a striping link ${action === "rst" ? "reset" : "gone silent"} after 256 KiB of a ranged fetch; the fetch completes over the others`, async () => {
    using dir = tempDir();
    const t = await brokenStripe(dir.path, action);
    try {
      const started = Date.now();
      assert.equal(await t.cache.answer("FETCH\tbig"), "OK\n", t.logs.join("\n"));
      const ev = await withTimeout(t.fired, 2000, "the fault to fire during the fetch");
      assert.equal(ev.offset, FAULT_AT, "the fault fired where it was armed");
      assert.equal(sha256(Deno.readFileSync(join(t.cache.tree, "big"))), sha256(t.data), "every byte, in place");
      assert.ok(Date.now() - started < 10_000, `the fetch took ${Date.now() - started} ms`);
      assert.equal(t.cache.links.length, 2, `the broken link is dropped:\n${t.logs.join("\n")}`);
    } finally {
      await t.close();
    }
  });
}
