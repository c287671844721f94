/**
 * The benchmark behind scripts/bench/uvpn_direct.sh: inside one site (both programs in subnet A
 * of a loopback overlay, tests/helpers.ts's Overlay), iperf3 with 128 KiB and 100-byte writes
 * and a python3 connect loop, natively (127.0.0.1), and in both overlay modes (libuvpn.so,
 * the seccomp supervisor) over the direct path (brokered by router A) and relayed through router A
 * (the client with UVPN_DIRECT=never). Servers run with UVPN_BIND_ANY=virtual, so their wildcard
 * binds are virtual-only listeners, which may be reached directly. Router A's `paths` counters
 * confirm which path each run took. Prints a table and the ratios to native.
 */
import { cli, Overlay, tempDir } from "../../tests/helpers.ts";
import { benchClient, benchServer, CONNECT_CLIENT, CONNECT_SERVER, fmt, median, type Mode } from "./overlay_runs.ts";

const seconds = Number(Deno.args[0] ?? 3);
const connects = Number(Deno.args[1] ?? 500);
const rounds = Number(Deno.args[2] ?? 1);
type Column = { name: string; mode: Mode; env: Record<string, string>; direct: boolean };
const COLUMNS: Column[] = [
  { name: "native", mode: "native", env: {}, direct: false },
  { name: "preload direct", mode: "preload", env: {}, direct: true },
  { name: "preload relayed", mode: "preload", env: { UVPN_DIRECT: "never" }, direct: false },
  { name: "seccomp direct", mode: "seccomp", env: {}, direct: true },
  { name: "seccomp relayed", mode: "seccomp", env: { UVPN_DIRECT: "never" }, direct: false },
];
const LABELS = ["iperf3 128 KiB", "iperf3 100 B", "connects/s"];
const SERVER_ENV = { UVPN_BIND_ANY: "virtual" };

using dir = tempDir("myrt-bench-direct-");
const o = new Overlay(dir.path);
await o.start();
/** Router A's brokered (direct) and relayed connection counts. */
async function paths(): Promise<{ offered: number; relayed: number }> {
  const r = await cli("uvpn_proxy", ["--status", "--routes", o.routes, "--subnet", o.a.prefix], { env: o.baseEnv });
  const m = /^paths direct_offered=(\d+) .* relayed=(\d+) /m.exec(r.stdout);
  if (!m) throw new Error(`No paths line in the status of router A: ${r.stdout}${r.stderr}`);
  return { offered: Number(m[1]), relayed: Number(m[2]) };
}
/** Runs one client, checking on router A that it took the path its column says. */
async function measured(c: Column, argv: string[]): Promise<string> {
  const before = await paths();
  const out = await benchClient(o, o.a, c.mode, argv, c.env);
  if (c.mode === "native") return out;
  const after = await paths();
  const direct = after.offered > before.offered && after.relayed === before.relayed;
  const relayed = after.relayed > before.relayed && after.offered === before.offered;
  if (c.direct ? !direct : !relayed) throw new Error(`${c.name}: ${argv[0]} did not go ${c.direct ? "direct" : "relayed"}: ${JSON.stringify([before, after])}`);
  return out;
}

const samples: Record<string, Record<string, number[]>> = Object.fromEntries(LABELS.map((l) => [l, Object.fromEntries(COLUMNS.map((c) => [c.name, []]))]));
try {
  for (let round = 0; round < rounds; round++) for (const c of COLUMNS) {
    for (const [label, len] of [["iperf3 128 KiB", "128K"], ["iperf3 100 B", "100"]]) {
      // A server per run (-1), so that every run starts from the same state.
      const s = await benchServer(o, o.a, c.mode, ["iperf3", "-s", "-1", "-p", "5201", "--forceflush"], /Server listening/, SERVER_ENV);
      try {
        const out = await measured(c, ["iperf3", "-c", s.addr, "-p", "5201", "-t", String(seconds), "-l", len, "-J"]);
        samples[label][c.name].push(JSON.parse(out).end.sum_received.bits_per_second / 1e9);
        console.error(`${c.name} ${label}: ${fmt(samples[label][c.name].at(-1)!)} Gbit/s`);
      } finally {
        await s.p.stop();
      }
    }
    const srv = await benchServer(o, o.a, c.mode, ["python3", "-c", CONNECT_SERVER], /ready/, SERVER_ENV);
    try {
      samples["connects/s"][c.name].push(Number(await measured(c, ["python3", "-c", CONNECT_CLIENT, srv.addr, String(connects)])));
      console.error(`${c.name} connects/s: ${fmt(samples["connects/s"][c.name].at(-1)!)}`);
    } finally {
      await srv.p.stop();
    }
  }
} finally {
  await o.stop();
}

console.log(`UVPN inside one site on loopback, median of ${rounds} round(s) (iperf3 ${seconds} s per run, ${connects} connects;`);
console.log(`native = 127.0.0.1 without the overlay; direct = brokered by the home router; relayed = through it)`);
console.log(["", ...COLUMNS.map((c) => c.name), ...COLUMNS.slice(1).map((c) => `${c.name}/native`)].join("\t"));
for (const label of LABELS) {
  const r = COLUMNS.map((c) => median(samples[label][c.name]));
  const unit = label.startsWith("iperf3") ? " Gbit/s" : "";
  console.log([label + unit, ...r.map(fmt), ...r.slice(1).map((x) => (x / r[0]).toFixed(2))].join("\t"));
}
