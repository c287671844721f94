/**
 * UVPN across WAN outages: two routers with the WAN emulator between them. 256 MiB each way at
 * once while the link is cut and blackholed several times (applications see no error, SHA-256
 * checked at both ends); an outage longer than the limit ends in a reset on both sides; the
 * router's status reports sessions, reconnects and replayed bytes.
 */
import assert from "node:assert/strict";
import { WanEmulator } from "../../scripts/wan_emulator.ts";
import { cli, Overlay, type Proc, sleep, tempDir } from "../helpers.ts";
import { assertIntact, bulkPeers, report } from "./bulk.ts";

/** An overlay whose A->B router link runs through a WAN emulator. */
async function wanOverlay(dir: string, routerArgs: string[], rateBytesPerSec?: number) {
  const o = new Overlay(dir, { routerArgs });
  const emu = new WanEmulator({
    listen: { hostname: "127.0.0.4", port: 0 },
    target: { hostname: o.b.host, port: o.b.port },
    delayMs: 2,
    rateBytesPerSec,
  });
  o.routeBVia({ host: "127.0.0.4", port: emu.start() });
  await o.start();
  return { o, emu };
}

Deno.test("uvpn outage: 256 MiB each way survive cuts and blackholes, byte for byte", async () => {
  using dir = tempDir();
  const { o, emu } = await wanOverlay(dir.path, ["--dead-after", "1", "--retry-max", "1"], 60e6);
  const N = 256 * 1024 * 1024;
  let server: Proc | undefined, client: Proc | undefined;
  try {
    const addrA = await o.register(o.a), addrB = await o.register(o.b);
    const p = bulkPeers(o, addrA, addrB, N);
    server = p.server;
    client = await p.client();
    // Faults while the data flows: two resets and two 3-second blackholes.
    const faults = [["cut", 1500], ["blackhole", 1500], ["restore", 3000], ["cut", 1500], ["blackhole", 1000], ["restore", 3000]] as const;
    // The status is asked for while the session is surely live: just after the first restore
    // (the transfer itself may end before the last fault: the data plane is fast).
    let status: Awaited<ReturnType<typeof cli>> | undefined;
    for (const [i, [what, after]] of faults.entries()) {
      await sleep(after);
      emu[what]();
      if (i === 2) status = await cli("uvpn_proxy", ["--status", "--routes", o.routes, "--subnet", o.a.prefix, "--listen", `${o.a.host}:${o.a.port}`], { env: o.baseEnv });
    }
    const { rc, rs } = await assertIntact(server, client, N, 240_000);
    assert.equal(rc.recv_error ?? rc.send_error ?? rs.recv_error ?? rs.send_error, undefined);
    // The routers saw the outages and replayed.
    await o.a.router!.waitFor(/session \w+ .* closed: 268435456 bytes sent, 268435456 received, [2-9]\d* reconnect\(s\)/, 20_000);
    // (by then the first cut was resumed: at least one reconnect)
    assert.match(status!.stdout, /^session \w+ initiator (up|down) sent=\d+ received=\d+ reconnects=[1-9]\d*/m, status!.stderr);
    assert.match(o.a.router!.stderr, /link down \(nothing received for 1000 ms\)/);
    assert.match(o.a.router!.stderr, /link restored; replaying \d+ byte/);
    assert.match(o.a.router!.stderr, /totals: 1 session\(s\), 0 live, 0 reset, 268435456 bytes sent, 268435456 received, [2-9]\d* reconnect/);
  } finally {
    await client?.stop();
    await server?.stop();
    await o.stop();
    emu.close();
  }
});

Deno.test("uvpn outage: an outage longer than the limit resets both applications", async () => {
  using dir = tempDir();
  const { o, emu } = await wanOverlay(dir.path, ["--dead-after", "1", "--outage-limit", "2", "--retry-max", "1"]);
  let server: Proc | undefined, client: Proc | undefined;
  try {
    const addrA = await o.register(o.a), addrB = await o.register(o.b);
    const p = bulkPeers(o, addrA, addrB, 64 * 1024 * 1024);
    server = p.server;
    client = await p.client();
    await o.a.router!.waitFor(/relay .*:9100 open via peer router/);
    await sleep(300); // data is flowing
    emu.blackhole();
    const [c, s] = [await client.result(30_000), await server.result(30_000)];
    const [rc, rs] = [report(c), report(s)];
    assert.match(String(rc.recv_error ?? rc.send_error), /ConnectionResetError|BrokenPipe/, JSON.stringify(rc));
    assert.match(String(rs.recv_error ?? rs.send_error), /ConnectionResetError|BrokenPipe/, JSON.stringify(rs));
    assert.ok(rc.received < 64 * 1024 * 1024 && rs.received < 64 * 1024 * 1024, "nothing looked complete");
    await o.a.router!.waitFor(/reset \(outage longer than 2 s\)/);
    // Status of every router of the route file: the reset is counted.
    const all = await cli("uvpn_proxy", ["--status", "--routes", o.routes], { env: o.baseEnv });
    assert.equal(all.code, 0, all.stderr);
    assert.match(all.stdout, /^== 100\.64\.0\.0\/16 127\.0\.0\.2:\d+\nsubnet 100\.64\.0\.0\/16 leases=1 .*\nsessions live=0 total=1 resets=1 /m);
  } finally {
    emu.restore();
    await client?.stop();
    await server?.stop();
    await o.stop();
    emu.close();
  }
});
