/**
 * The benchmark behind scripts/bench/uvpn_modes.sh: on a two-subnet overlay on loopback
 * (tests/helpers.ts's Overlay), iperf3 with 100-byte and 128 KiB writes and a connect loop,
 * each natively (127.0.0.1, no overlay), under libuvpn.so (--mode preload) and under the seccomp
 * supervisor (--mode seccomp), server and client in the same mode. Prints a table and ratios.
 */
import { join } from "node:path";
import { Overlay, Proc, run, spawnCli, tempDir } from "../../tests/helpers.ts";

const seconds = Number(Deno.args[0] ?? 5);
const connects = Number(Deno.args[1] ?? 500);
const rounds = Number(Deno.args[2] ?? 3);
type Mode = "native" | "preload" | "seccomp";
const MODES: Mode[] = ["native", "preload", "seccomp"];

/** Starts argv in subnet B in `mode`; resolves with the address clients use. */
async function server(o: Overlay, mode: Mode, argv: string[], ready: RegExp): Promise<{ p: Proc; addr: string }> {
  if (mode === "native") {
    const p = new Proc(argv[0], argv.slice(1));
    await p.waitFor(ready);
    return { p, addr: "127.0.0.1" };
  }
  const p = spawnCli("uvpn_register", ["-r", "--mode", mode, "--", ...argv], { env: o.homeEnv(o.b) });
  const addr = (await p.waitFor(/Leased virtual address (\S+)/))[1];
  await p.waitFor(ready);
  await o.b.router!.waitFor(new RegExp(`listener ${addr.replaceAll(".", "\\.")}:\\d+ is at`));
  return { p, addr };
}

/** Runs argv in subnet A in `mode` to completion; returns stdout. */
async function client(o: Overlay, mode: Mode, argv: string[]): Promise<string> {
  const r = mode === "native"
    ? await run(argv[0], argv.slice(1), { timeoutMs: 120_000 })
    : await run(Deno.execPath(), ["run", "-A", "--no-prompt", join(import.meta.dirname!, "../../cli/uvpn_register.ts"), "-r", "-s", "--mode", mode, "--", ...argv], {
      env: o.homeEnv(o.a),
      timeoutMs: 120_000,
    });
  if (r.code !== 0) throw new Error(`${argv.join(" ")} (${mode}) failed: ${r.stderr}`);
  return r.stdout;
}

const CONNECT_SERVER = `
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 5301)); s.listen(512); print("ready", flush=True)
while True:
    c, _ = s.accept(); c.close()
`;
const CONNECT_CLIENT = `
import socket, sys, time
host, n = sys.argv[1], int(sys.argv[2])
t = time.monotonic()
for _ in range(n):
    c = socket.create_connection((host, 5301)); c.close()
print(n / (time.monotonic() - t))
`;

using dir = tempDir("myrt-bench-");
const o = new Overlay(dir.path);
await o.start();
const LABELS = ["iperf3 100 B", "iperf3 128 KiB", "connects/s"];
/** Every round's figure per label and mode; the modes take turns so drift hits them alike. */
const samples: Record<string, Record<Mode, number[]>> = Object.fromEntries(
  LABELS.map((l) => [l, { native: [], preload: [], seccomp: [] }]),
);
try {
  for (let round = 0; round < rounds; round++) for (const mode of MODES) {
    const s = await server(o, mode, ["iperf3", "-s", "-p", "5201", "--forceflush"], /Server listening/);
    try {
      for (const [label, len] of [["iperf3 100 B", "100"], ["iperf3 128 KiB", "128K"]]) {
        const out = await client(o, mode, ["iperf3", "-c", s.addr, "-p", "5201", "-t", String(seconds), "-l", len, "-J"]);
        samples[label][mode].push(JSON.parse(out).end.sum_received.bits_per_second / 1e9);
      }
    } finally {
      await s.p.stop();
    }
    const c = await server(o, mode, ["python3", "-c", CONNECT_SERVER], /ready/);
    try {
      samples["connects/s"][mode].push(Number(await client(o, mode, ["python3", "-c", CONNECT_CLIENT, c.addr, String(connects)])));
    } finally {
      await c.p.stop();
    }
  }
} finally {
  await o.stop();
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const f = (x: number) => x.toFixed(x < 10 ? 2 : 0);
console.log(`UVPN modes on loopback, median of ${rounds} rounds (iperf3 ${seconds} s per run, ${connects} connects;`);
console.log(`native = 127.0.0.1 without the overlay; preload and seccomp go through both routers)`);
console.log(["", "native", "preload", "seccomp", "preload/native", "seccomp/native", "seccomp/preload"].join("\t"));
for (const label of LABELS) {
  const r = Object.fromEntries(MODES.map((m) => [m, median(samples[label][m])])) as Record<Mode, number>;
  const unit = label.startsWith("iperf3") ? " Gbit/s" : "";
  console.log([
    label + unit,
    f(r.native),
    f(r.preload),
    f(r.seccomp),
    (r.preload / r.native).toFixed(2),
    (r.seccomp / r.native).toFixed(2),
    (r.seccomp / r.preload).toFixed(2),
  ].join("\t"));
}
