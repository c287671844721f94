/**
 * Reads a UVPN_TRACE_FILE written by both routers during `INFLIGHT=1 ./scripts/bench/uvpn_connect.sh`
 * (router/trace.ts, dp_trace in native/router/core/loop.c) and prints, per step of a connection
 * across two routers, the median time from the step before it: where one connection's set-up
 * time goes (docs/BENCHMARKS.md, "Across two routers"). A connection starts at the CONNECT its
 * router reads ("connect") and counts when it opened a session ("dp.open"); "A:" is that router,
 * "B:" the peer's.
 *   deno run -A scripts/bench/connect_trace.ts TRACE_FILE
 */
const file = Deno.args[0];
if (!file) {
  console.error("usage: connect_trace.ts TRACE_FILE");
  Deno.exit(2);
}
const steps = Deno.readTextFileSync(file).trim().split("\n").map((l) => {
  const [t, pid, step] = l.split(" ");
  return { t: Number(t), pid, step };
}).sort((a, b) => a.t - b.t);

const conns: (typeof steps)[] = [];
for (const s of steps) {
  if (s.step === "connect") conns.push([]);
  conns.at(-1)?.push(s);
}
const sessions = conns.filter((c) => c.some((s) => s.step === "dp.open"));
const gaps = new Map<string, number[]>();
for (const c of sessions) {
  const seen = new Map<string, number>();
  let prev: { t: number; label: string } | undefined;
  for (const s of c) {
    let label = `${s.pid === c[0].pid ? "A" : "B"}:${s.step}`;
    const n = (seen.get(label) ?? 0) + 1;
    seen.set(label, n);
    if (n > 1) label += `#${n}`;
    if (prev) {
      const k = `${prev.label} -> ${label}`;
      gaps.set(k, [...(gaps.get(k) ?? []), s.t - prev.t]);
    }
    prev = { t: s.t, label };
  }
}
const median = (v: number[]) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)];
console.log(`${sessions.length} connection(s) across two routers; median µs from the step before (steps seen in ≥ 30 % of them):`);
for (const [k, v] of gaps) {
  if (v.length >= sessions.length * 0.3) console.log(`${k.padEnd(40)} ${String(median(v)).padStart(6)} µs  (n=${v.length})`);
}
const spans = sessions.map((c) => c.at(-1)!.t - c[0].t);
console.log(`median span from the CONNECT read to the last step: ${median(spans)} µs`);
