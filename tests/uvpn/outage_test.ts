/**
 * UVPN across WAN outages. 256 MiB each way at once while the link between the routers is reset
 * and blackholed at exact points of the stream by the fault-injection relay (applications see no
 * error, SHA-256 checked at both ends; a reconnect per fault); an outage longer than the limit
 * (every link blackholed from a point of the stream on) ends in a reset on both sides; the
 * router's status reports sessions, reconnects and replayed bytes.
 */
import assert from "node:assert/strict";
import type { FaultEvent } from "../../scripts/fault_relay.ts";
import { withTimeout } from "../../common/io.ts";
import { cli, type Proc, tempDir } from "../helpers.ts";
import { assertIntact, bulkPeers, relayedOverlay, report } from "./bulk.ts";

const MIB = 1024 * 1024;

Deno.test("uvpn outage: 256 MiB each way survive cuts and blackholes, byte for byte", async () => {
  using dir = tempDir();
  const { o, relay } = await relayedOverlay(dir.path, ["--dead-after", "1", "--retry-max", "1"]);
  const N = 256 * MIB;
  let server: Proc | undefined, client: Proc | undefined;
  try {
    const addrA = await o.register(o.a), addrB = await o.register(o.b);
    const p = bulkPeers(o, addrA, addrB, N);
    server = p.server;
    client = await p.client();
    // Faults at points of the stream, not after sleeps: each on whichever router link first
    // carries that many bytes in that direction (the bulk one: control links carry kilobytes),
    // one after the other, each armed once the one before it fired, so every fault meets a new
    // link: two resets and two blackholes (the routers give up on a silent link after 1 s).
    const faults = [
      { dir: "up", afterBytes: 32 * MIB, action: "rst" },
      { dir: "down", afterBytes: 16 * MIB, action: "blackhole" },
      { dir: "down", afterBytes: 16 * MIB, action: "rst" },
      { dir: "up", afterBytes: 16 * MIB, action: "blackhole" },
    ] as const;
    // Each fault is armed as the one before it fires (in the same turn: the next link is not up yet).
    const fired: FaultEvent[] = [];
    const armed = (async () => {
      for (const f of faults) fired.push(await relay.arm({ ...f }));
    })();
    // The status is asked for while the session is surely live: once the first fault fired.
    await withTimeout(relay.arm({ dir: "up", afterBytes: 8 * MIB, action: "drop", count: 0 }), 60_000, "the transfer to start");
    const status = await cli("uvpn_proxy", ["--status", "--routes", o.routes, "--subnet", o.a.prefix, "--listen", `${o.a.host}:${o.a.port}`], { env: o.baseEnv });
    await withTimeout(armed, 60_000, "the faults").catch(() => {}); // bounded; the assertion says which did not fire
    assert.deepEqual(fired.map((e) => e.offset), faults.map((f) => f.afterBytes), `every fault fired where it was armed:\n${o.a.router!.stderr.slice(-3000)}`);
    const { rc, rs } = await assertIntact(server, client, N, 240_000);
    assert.equal(rc.recv_error ?? rc.send_error ?? rs.recv_error ?? rs.send_error, undefined);
    // The routers saw the outages and replayed: a reconnect per fault.
    await o.a.router!.waitFor(/session \w+ .* closed: 268435456 bytes sent, 268435456 received, ([4-9]|\d\d+) reconnect\(s\)/, 20_000);
    assert.match(status.stdout, /^session \w+ initiator (up|down) sent=\d+ received=\d+ reconnects=\d+/m, status.stderr);
    assert.match(o.a.router!.stderr, /link down \(nothing received for 1000 ms\)/);
    assert.match(o.a.router!.stderr, /link restored; replaying \d+ byte/);
    assert.match(o.a.router!.stderr, /totals: 1 session\(s\), 0 live, 0 reset, 268435456 bytes sent, 268435456 received, ([4-9]|\d\d+) reconnect/);
  } finally {
    await client?.stop();
    await server?.stop();
    await o.stop();
    relay.close();
  }
});

Deno.test("uvpn outage: an outage longer than the limit resets both applications", async () => {
  using dir = tempDir();
  const { o, relay } = await relayedOverlay(dir.path, ["--dead-after", "1", "--outage-limit", "2", "--retry-max", "1"]);
  const N = 64 * MIB;
  let server: Proc | undefined, client: Proc | undefined;
  let outage = true;
  try {
    const addrA = await o.register(o.a), addrB = await o.register(o.b);
    const p = bulkPeers(o, addrA, addrB, N);
    server = p.server;
    client = await p.client();
    // The outage starts 4 MiB into the transfer (not after a sleep: the data plane may move all
    // 64 MiB in a few hundred ms) and lasts: every link after it is blackholed too, as it comes.
    await withTimeout(relay.arm({ dir: "down", afterBytes: 4 * MIB, action: "blackhole" }), 60_000, "the transfer to start");
    (async () => {
      while (outage) await relay.arm({ dir: "up", afterBytes: 0, action: "blackhole" });
    })();
    const [c, s] = [await client.result(30_000), await server.result(30_000)];
    const [rc, rs] = [report(c), report(s)];
    assert.match(String(rc.recv_error ?? rc.send_error), /ConnectionResetError|BrokenPipe/, JSON.stringify(rc));
    assert.match(String(rs.recv_error ?? rs.send_error), /ConnectionResetError|BrokenPipe/, JSON.stringify(rs));
    assert.ok(rc.received < N && rs.received < N, "nothing looked complete");
    await o.a.router!.waitFor(/reset \(outage longer than 2 s\)/);
    // Status of every router of the route file: the reset is counted.
    const all = await cli("uvpn_proxy", ["--status", "--routes", o.routes], { env: o.baseEnv });
    assert.equal(all.code, 0, all.stderr);
    assert.match(all.stdout, /^== 100\.64\.0\.0\/16 127\.0\.0\.2:\d+\nsubnet 100\.64\.0\.0\/16 leases=1 .*\nsessions live=0 total=1 resets=1 /m);
  } finally {
    outage = false;
    await client?.stop();
    await server?.stop();
    await o.stop();
    relay.close();
  }
});
