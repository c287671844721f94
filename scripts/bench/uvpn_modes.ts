/**
 * The benchmark behind scripts/bench/uvpn_modes.sh: on a two-subnet overlay on loopback
 * (tests/helpers.ts's Overlay), iperf3 with 100-byte and 128 KiB writes and a connect loop,
 * each natively (127.0.0.1, no overlay), under libuvpn.so (--mode preload) and under the seccomp
 * supervisor (--mode seccomp), server and client in the same mode. Prints a table and ratios.
 */
import { Overlay, tempDir } from "../../tests/helpers.ts";
import { benchClient, benchServer, CONNECT_CLIENT, CONNECT_SERVER, fmt as f, median, type Mode } from "./overlay_runs.ts";

const seconds = Number(Deno.args[0] ?? 5);
const connects = Number(Deno.args[1] ?? 500);
const rounds = Number(Deno.args[2] ?? 3);
const MODES: Mode[] = ["native", "preload", "seccomp"];

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
    const s = await benchServer(o, o.b, mode, ["iperf3", "-s", "-p", "5201", "--forceflush"], /Server listening/);
    try {
      for (const [label, len] of [["iperf3 100 B", "100"], ["iperf3 128 KiB", "128K"]]) {
        const out = await benchClient(o, o.a, mode, ["iperf3", "-c", s.addr, "-p", "5201", "-t", String(seconds), "-l", len, "-J"]);
        samples[label][mode].push(JSON.parse(out).end.sum_received.bits_per_second / 1e9);
      }
    } finally {
      await s.p.stop();
    }
    const c = await benchServer(o, o.b, mode, ["python3", "-c", CONNECT_SERVER], /ready/);
    try {
      samples["connects/s"][mode].push(Number(await benchClient(o, o.a, mode, ["python3", "-c", CONNECT_CLIENT, c.addr, String(connects)])));
    } finally {
      await c.p.stop();
    }
  }
} finally {
  await o.stop();
}

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
