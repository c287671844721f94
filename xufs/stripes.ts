/**
 * Adaptive striping on host A (docs/XUFS.md, "Striped transfers"): the file server meters the
 * range data it moves (range reads sent, ranges of write-backs received), and while a large
 * transfer runs the session adds striping connections as GridFTP adds parallel streams: from the
 * count it started with (8), doubled (up to the limit, XUFS_STRIPES_MAX, default 16) as long as each
 * step made the measured throughput grow by at least a tenth. `XUFS_STRIPES=N` keeps N fixed.
 */

import { envCount } from "./session.ts";

/** Largest number of striping connections a session grows to (XUFS_STRIPES_MAX). */
export const DEFAULT_STRIPES_MAX = 16;
/** A step counts as growth when throughput rose by at least this factor. */
export const GROWTH = 1.1;
/** Length of one measurement. */
export const WINDOW_MS = 1000;
/** Connections an adaptive session starts with: on a 50 ms path a further ssh login takes about a
 * second to join, so starting at 4 left a 256 MiB read half done before 8 were up (docs/BENCHMARKS.md). */
export const ADAPTIVE_START = 8;

/** How many striping connections a session starts with, and up to how many it may grow (none: fixed). */
export function stripePlan(): { stripes: number; limit?: number } {
  const limit = envCount("XUFS_STRIPES_MAX", DEFAULT_STRIPES_MAX);
  // XUFS_STRIPES set: that many, always; else from ADAPTIVE_START up while throughput grows.
  if (Deno.env.get("XUFS_STRIPES")) return { stripes: envCount("XUFS_STRIPES", ADAPTIVE_START) };
  const stripes = Math.min(ADAPTIVE_START, limit);
  return limit <= stripes ? { stripes } : { stripes, limit };
}

/** What the file server counts of range data: bytes moved, and requests running or waiting. */
export class RangeMeter {
  bytes = 0;
  inFlight = 0;
}

/**
 * The decision: fed one throughput sample per window in which range data flowed all along, says
 * to how many connections to grow (or nothing). The window after a step is left out (the new
 * connections are still joining); a step that did not pay ends the growth for the session.
 */
export class StripePolicy {
  #best = 0;
  #settling = false;
  done: boolean;

  constructor(public count: number, readonly limit: number) {
    this.done = count >= limit;
  }

  /** Takes a sample (bytes per second at `count` connections); the new count to open, if any. */
  sample(bytesPerSec: number): number | undefined {
    if (this.done) return undefined;
    if (this.#settling) {
      this.#settling = false;
      return undefined;
    }
    if (this.#best > 0 && bytesPerSec < this.#best * GROWTH) {
      this.done = true; // the last step did not pay: this many is what the path takes
      return undefined;
    }
    this.#best = bytesPerSec;
    this.count = Math.min(this.limit, this.count * 2);
    this.done = this.count >= this.limit;
    this.#settling = true;
    return this.count;
  }
}

/**
 * Samples `meter` every `windowMs` while range data flows and calls `grow(from, to)` when the
 * policy says so (one step at a time: the next window starts after `grow` returns). Returns the stop.
 */
export function adaptStripes(
  meter: RangeMeter,
  policy: StripePolicy,
  grow: (from: number, to: number) => Promise<void>,
  windowMs = WINDOW_MS,
): () => void {
  let last = meter.bytes, loaded = false, stopped = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const tick = async () => {
    const bytes = meter.bytes - last;
    last = meter.bytes;
    // A sample counts only when ranges were in flight at both ends of the window.
    const busy = meter.inFlight > 0;
    const from = policy.count;
    const to = loaded && busy ? policy.sample((bytes * 1000) / windowMs) : undefined;
    loaded = busy;
    if (to !== undefined) {
      await grow(from, to).catch(() => {});
      last = meter.bytes;
    }
    if (!stopped && !policy.done) timer = setTimeout(tick, windowMs);
  };
  timer = setTimeout(tick, windowMs);
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
