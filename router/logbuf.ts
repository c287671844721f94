/**
 * The router's log sink: lines go to stderr in batches, one write per turn of the event loop
 * instead of one synchronous write per line. A router logs a few lines per connection (relay
 * open, session closed, totals); written one by one they cost it a sixth of its time at 1,000
 * connections per second (issue 12's profile, docs/BENCHMARKS.md). Lines keep their order; the
 * batch is written at the latest on the next timer tick, when it reaches 64 KiB, and before the
 * process exits (`Deno.exit`, an uncaught error or rejection).
 */

const MAX_BATCH = 64 * 1024;

/** A log function that prefixes each line and writes them to `sink` in batches. */
export function batchedLog(prefix: string, sink: { writeSync(p: Uint8Array): number } = Deno.stderr): (line: string) => void {
  const enc = new TextEncoder();
  let lines: string[] = [];
  let size = 0;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const flush = () => {
    if (timer !== undefined) clearTimeout(timer);
    timer = undefined;
    if (!lines.length) return;
    const bytes = enc.encode(lines.join(""));
    lines = [];
    size = 0;
    for (let off = 0; off < bytes.length;) {
      try {
        off += sink.writeSync(bytes.subarray(off));
      } catch {
        return; // stderr closed: nothing to be done
      }
    }
  };
  for (const ev of ["unload", "error", "unhandledrejection"]) globalThis.addEventListener(ev, flush);
  return (line: string) => {
    const s = `${prefix}${line}\n`;
    lines.push(s);
    size += s.length;
    if (size >= MAX_BATCH) flush();
    else if (timer === undefined) timer = setTimeout(flush, 0);
  };
}
