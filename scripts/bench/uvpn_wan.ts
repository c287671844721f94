/**
 * Benchmark (not a test): UVPN through the WAN emulator with a 50 ms round trip.
 * 1. Throughput of a bulk transfer both ways at once: overlay (client -> router A -> WAN ->
 *    router B -> server) vs direct (client -> WAN -> server), same emulator settings, same run.
 * 2. Time from a link restore (after a 3 s blackhole) to data flowing again.
 * Run: ./scripts/bench/uvpn_wan.sh [MiB] (inside a loopback-only network namespace).
 */
import { join } from "node:path";
import { WanEmulator } from "../wan_emulator.ts";
import { freePort, Overlay, Proc, ROOT, sleep, tempDir } from "../../tests/helpers.ts";

const MIB = Number(Deno.args[0] ?? 64);
const N = MIB * 1024 * 1024;
const PEER = join(ROOT, "tests/fixtures/bulk_peer.py");
const wan = { delayMs: 25, rateBytesPerSec: 100e6 / 8 * 10, windowBytes: 8 * 1024 * 1024 }; // 1 Gbit/s, 8 MiB window

async function timed(server: Proc, client: () => Proc): Promise<number> {
  await server.waitFor(/listening/);
  const t0 = performance.now();
  const c = client();
  const [rc, rs] = [await c.result(600_000), await server.result(600_000)];
  if (rc.code !== 0 || rs.code !== 0) throw new Error(`transfer failed: ${rc.stderr} ${rs.stderr}`);
  return (performance.now() - t0) / 1000;
}

using dir = tempDir();
// Direct: client -> emulator -> server.
const directPort = freePort();
const emuDirect = new WanEmulator({ listen: { hostname: "127.0.0.5", port: freePort("127.0.0.5") }, target: { hostname: "127.0.0.1", port: directPort }, ...wan });
const dport = emuDirect.start();
const direct = await timed(
  new Proc("python3", [PEER, "listen", "127.0.0.1", String(directPort), String(N), "1"]),
  () => new Proc("python3", [PEER, "connect", "127.0.0.5", String(dport), String(N), "2"]),
);
emuDirect.close();

// Overlay: the routers' link runs through the emulator.
const viaPort = freePort("127.0.0.4");
const o = new Overlay(dir.path, { bVia: { host: "127.0.0.4", port: viaPort }, routerArgs: ["--dead-after", "1", "--retry-max", "1"] });
const emu = new WanEmulator({ listen: { hostname: "127.0.0.4", port: viaPort }, target: { hostname: o.b.host, port: o.b.port }, ...wan });
emu.start();
await o.start();
const addrA = await o.register(o.a), addrB = await o.register(o.b);
const overlay = await timed(
  new Proc("python3", [PEER, "listen", addrB, "9100", String(N), "1"], { env: o.env(o.b, addrB) }),
  () => new Proc("python3", [PEER, "connect", addrB, "9100", String(N), "2"], { env: o.env(o.a, addrA) }),
);

// Restore-to-flow: blackhole mid-transfer for 3 s, then measure until bytes cross again.
const server = new Proc("python3", [PEER, "listen", addrB, "9101", String(N), "3"], { env: o.env(o.b, addrB) });
await server.waitFor(/listening/);
const client = new Proc("python3", [PEER, "connect", addrB, "9101", String(N), "4"], { env: o.env(o.a, addrA) });
await sleep(1000);
emu.blackhole();
await sleep(3000);
const before = emu.bytes;
const tRestore = performance.now();
emu.restore();
while (emu.bytes === before && performance.now() - tRestore < 30_000) await sleep(5);
const resumeMs = performance.now() - tRestore;
await client.result(600_000);
await server.result(600_000);
await o.stop();
emu.close();

const rate = (s: number) => ((2 * MIB) / s).toFixed(1);
console.log(`UVPN over an emulated WAN (50 ms RTT, 1 Gbit/s, 8 MiB window), ${MIB} MiB each way at once:`);
console.log(`  direct:  ${direct.toFixed(2)} s  ${rate(direct)} MiB/s`);
console.log(`  overlay: ${overlay.toFixed(2)} s  ${rate(overlay)} MiB/s  (overlay/direct = ${(direct / overlay).toFixed(2)})`);
console.log(`  link restore -> data flowing again: ${resumeMs.toFixed(0)} ms (router --retry-max 1, --dead-after 1)`);
