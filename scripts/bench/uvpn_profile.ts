/**
 * The benchmark behind scripts/bench/uvpn_profile.sh: where the time goes in one preload iperf3
 * run (8 s, one stream, WRITE_LEN bytes per write) through both routers: CPU
 * seconds of each thread of each router (from /proc/PID/task: the data plane's thread is the busy
 * one) and the system calls of each router's data-plane thread over 3 s of the run (strace -c,
 * which slows that thread down while it is attached). With a second argument `perf` (perf(1)
 * installed; software cpu-clock sampling works in this VM), instead of strace: `perf stat` of
 * both routers over 3 s (page faults, context switches, CPU time: CPU milliseconds per GB carried)
 * and `perf record -a` over the same 3 s, summarised per command and shared object and as the
 * hottest symbols of both routers' processes (20, or UVPN_PROFILE_SYMBOLS of them).
 * UVPN_BENCH_ROUTER_ARGS="--session-window 1": extra flags for both routers (as in
 * uvpn_throughput.ts).
 */
import { Overlay, run, spawnCli, tempDir, sleep, Proc } from "../../tests/helpers.ts";
import { join } from "node:path";
const len = Deno.args[0] ?? "128K";
const usePerf = Deno.args[1] === "perf";
using dir = tempDir("myrt-prof-");
const routerArgs = Deno.env.get("UVPN_BENCH_ROUTER_ARGS")?.split(" ").filter((x) => x) ?? [];
const o = new Overlay(dir.path, { routerArgs });
await o.start();
const hz = 100;
function threads(pid: number) {
  const out: Record<string, number> = {};
  for (const t of Deno.readDirSync(`/proc/${pid}/task`)) {
    try {
      const st = Deno.readTextFileSync(`/proc/${pid}/task/${t.name}/stat`);
      const comm = st.slice(st.indexOf("(") + 1, st.lastIndexOf(")"));
      const f = st.slice(st.lastIndexOf(")") + 2).split(" ");
      out[`${comm}/${t.name}`] = (Number(f[11]) + Number(f[12])) / hz;
    } catch { /* gone */ }
  }
  return out;
}
const srv = spawnCli("uvpn_register", ["-r", "--mode", "preload", "--", "iperf3", "-s", "-p", "5201", "--forceflush"], { env: o.homeEnv(o.b) });
const addr = (await srv.waitFor(/Leased virtual address (\S+)/))[1];
await srv.waitFor(/Server listening/);
await o.b.router!.waitFor(/listener .*:5201 is at/);
const pa = o.a.router!.pid, pb = o.b.router!.pid;
// The router's pid is deno's; its data-plane thread is the busiest thread after a warm-up.
const before = { a: threads(pa), b: threads(pb) };
const t0 = performance.now();
const cl = new Proc(Deno.execPath(), ["run", "-A", "--no-prompt", join(import.meta.dirname!, "../../cli/uvpn_register.ts"), "-r", "-s", "--mode", "preload", "--", "iperf3", "-c", addr, "-p", "5201", "-t", "8", "-l", len, "-J"], { env: o.homeEnv(o.a) });
await sleep(2500);
const mid = { a: threads(pa), b: threads(pb) };
const busiest = (x: Record<string, number>, y: Record<string, number>) => Object.entries(y).map(([k, v]) => [k, v - (x[k] ?? 0)] as const).sort((p, q) => q[1] - p[1]);
const dpA = busiest(before.a, mid.a)[0][0].split("/")[1], dpB = busiest(before.b, mid.b)[0][0].split("/")[1];
const perfData = join(dir.path, "perf.data");
const [sa, sb] = usePerf
  ? await Promise.all([
    run("perf", ["stat", "-e", "page-faults,context-switches,cpu-clock", "-p", `${pa},${pb}`, "--", "sleep", "3"], { timeoutMs: 10_000 }),
    run("perf", ["record", "-a", "-g", "-o", perfData, "--", "sleep", "3"], { timeoutMs: 20_000 }),
  ])
  : await Promise.all([
    run("timeout", ["-s", "INT", "3", "strace", "-c", "-p", dpA], { timeoutMs: 10_000 }),
    run("timeout", ["-s", "INT", "3", "strace", "-c", "-p", dpB], { timeoutMs: 10_000 }),
  ]);
const r = await cl.result(30_000);
const dt = (performance.now() - t0) / 1000;
const after = { a: threads(pa), b: threads(pb) };
let gbps = "?";
let cpu = "";
try {
  const end = JSON.parse(r.stdout).end;
  gbps = (end.sum_received.bits_per_second / 1e9).toFixed(2);
  // iperf3's own CPU (% of one core): with the routers' threads, where the two cores went.
  cpu = `; iperf3 CPU: client ${end.cpu_utilization_percent.host_total.toFixed(0)} %, server ${end.cpu_utilization_percent.remote_total.toFixed(0)} % of a core`;
} catch { gbps = r.stderr.slice(-200); }
const lib = (pid: number) => Deno.readTextFileSync(`/proc/${pid}/maps`).split("\n").find((l) => l.includes("libuvpnrouter.so"))?.split(/\s+/).pop();
console.log(`router pids A ${pa} B ${pb} (data plane ${lib(pa)})`);
console.log(`iperf3 ${len} x1 preload: ${gbps} Gbit/s over ${dt.toFixed(1)} s wall (${usePerf ? "perf" : "strace"} ran 3 s of it)${cpu}`);
for (const [name, b, a] of [["router A", before.a, after.a], ["router B", before.b, after.b]] as const) {
  console.log(`${name}: CPU seconds per thread: ` + busiest(b, a).filter(([, v]) => v > 0.05).map(([k, v]) => `${k} ${v.toFixed(2)}`).join(", "));
}
if (usePerf) {
  const ms = Number(/([\d.,]+)\s+msec cpu-clock/.exec(sa.stderr)?.[1].replaceAll(",", "") ?? NaN);
  console.log(`perf stat of both routers over 3 s (${(ms / (Number(gbps) * 3 / 8)).toFixed(0)} CPU ms per GB at ${gbps} Gbit/s):\n` +
    sa.stderr.split("\n").filter((l) => /page-faults|context-switches|cpu-clock/.test(l)).join("\n"));
  const report = async (args: string[], lines: number) =>
    (await run("perf", ["report", "-i", perfData, "--stdio", "--no-children", "-g", "none", ...args], { timeoutMs: 60_000 })).stdout
      .split("\n").filter((l) => l.includes("%") && !l.startsWith("#")).slice(0, lines).join("\n");
  console.log("perf record -a over 3 s, share of all samples (both cores) by command and object:\n" + await report(["--sort", "comm,dso"], 12));
  console.log(`hottest symbols of both routers' processes (pids ${pa}, ${pb}), share of all samples:\n` + await report(["--pid", `${pa},${pb}`, "--sort", "dso,sym"], Number(Deno.env.get("UVPN_PROFILE_SYMBOLS") ?? 20)));
} else {
  console.log("strace -c of router A's data-plane thread:\n" + sa.stderr.split("\n").slice(0, 14).join("\n"));
  console.log("strace -c of router B's data-plane thread:\n" + sb.stderr.split("\n").slice(0, 14).join("\n"));
}
await srv.stop();
await o.stop();
