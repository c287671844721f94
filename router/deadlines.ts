/**
 * Timing helpers of a router that serves thousands of connections per second: deadlines of one
 * fixed length served by one timer, and an action done at most once per interval.
 */

/**
 * Deadlines of one fixed length (a DATA ticket's 10 s, a connection's handshake), kept in the
 * order they were set, which is the order they fall due, and served by one timer for all of
 * them: setting or cancelling one is a Map operation, not a timer of its own (two timers per
 * connection were a measurable part of a router's time at thousands of connections per second:
 * docs/BENCHMARKS.md, "Across two routers").
 */
export class Deadlines {
  #due = new Map<number, { at: number; fn: () => void }>();
  #next = 1;
  #timer?: ReturnType<typeof setTimeout>;

  /** Deadlines `ms` after they are set. */
  constructor(readonly ms: number) {}

  /** Calls `fn` `ms` from now unless cancelled before; the handle for `cancel`. */
  add(fn: () => void): number {
    const id = this.#next++;
    this.#due.set(id, { at: performance.now() + this.ms, fn });
    if (this.#timer === undefined) this.#arm();
    return id;
  }

  /** Cancels a deadline (one that fired or was cancelled already: nothing). */
  cancel(id: number): void {
    if (this.#due.delete(id) && this.#due.size === 0) this.#stop();
  }

  /** Deadlines set and not yet fired or cancelled. */
  get size(): number {
    return this.#due.size;
  }

  /** Cancels every deadline. */
  close(): void {
    this.#due.clear();
    this.#stop();
  }

  #stop(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #arm(): void {
    const first = this.#due.values().next().value;
    this.#timer = first ? setTimeout(() => this.#fire(), Math.max(0, first.at - performance.now())) : undefined;
  }

  #fire(): void {
    const now = performance.now();
    for (const [id, d] of this.#due) {
      if (d.at > now) break;
      this.#due.delete(id);
      d.fn(); // (what it adds falls due later: at the end of the map)
    }
    this.#arm();
  }
}

/**
 * An action done when due, at most once per `ms`: at once when it was last done longer ago,
 * else once at the end of the interval (so the last call is always followed by one). A line
 * such as a router's totals costs one per interval instead of one per session.
 */
export class AtMostEvery {
  #last = -Infinity;
  #timer?: ReturnType<typeof setTimeout>;

  constructor(readonly ms: number, private readonly action: () => void) {}

  /** The action is due. */
  due(): void {
    if (this.#timer !== undefined) return;
    const wait = this.#last + this.ms - performance.now();
    if (wait <= 0) return this.#run();
    this.#timer = setTimeout(() => this.#run(), wait);
  }

  /** Does a pending run now (the router stops: its last totals are logged). */
  close(): void {
    if (this.#timer === undefined) return;
    clearTimeout(this.#timer);
    this.#run();
  }

  #run(): void {
    this.#timer = undefined;
    this.#last = performance.now();
    this.action();
  }
}
