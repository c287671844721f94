/**
 * Timestamps of the steps of a connection's set-up, for latency analysis (docs/BENCHMARKS.md,
 * "Across two routers"): with UVPN_TRACE_FILE set, each step appends a line "MICROSECONDS PID
 * STEP" (microseconds since the epoch) to that file; the data plane writes its own steps to the
 * same file (native/router/core/loop.c, dp_trace). Nothing but one test when it is not set.
 */
const path = Deno.env.get("UVPN_TRACE_FILE");
let file: Deno.FsFile | undefined;
const enc = new TextEncoder();

/** Appends one step's timestamp to UVPN_TRACE_FILE (nothing when it is not set). */
export function trace(step: string): void {
  if (!path) return;
  file ??= Deno.openSync(path, { append: true, create: true });
  file.writeSync(enc.encode(`${((performance.timeOrigin + performance.now()) * 1000).toFixed(0)} ${Deno.pid} ${step}\n`));
}
