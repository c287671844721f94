/**
 * A one-line progress report on stderr for transfers that take longer than a couple of seconds
 * ("xufs: fetching big.iso  42%  108/256 MiB  37.5 MB/s"), rewritten in place and erased at the
 * end. Quiet unless enabled (by default: when stderr is a terminal).
 */

/** Seconds a transfer runs before its progress line appears. */
export const PROGRESS_AFTER_MS = 2000;

const enc = new TextEncoder();

/** Whether progress lines are wanted: XUFS_PROGRESS=1/0, else when stderr is a terminal. */
export function progressWanted(): boolean {
  const env = Deno.env.get("XUFS_PROGRESS");
  if (env === "1" || env === "0") return env === "1";
  return Deno.stderr.isTerminal();
}

/** One transfer's progress. */
export class Progress {
  #done = 0;
  #start = Date.now();
  #timer?: ReturnType<typeof setInterval>;
  #shown = false;

  constructor(readonly label: string, readonly total: number, enabled: boolean, private readonly write = (s: string) => Deno.stderr.writeSync(enc.encode(s))) {
    if (enabled) this.#timer = setInterval(() => this.#draw(), 500);
  }

  /** Counts `n` more bytes. */
  add(n: number): void {
    this.#done += n;
  }

  #draw(): void {
    const ms = Date.now() - this.#start;
    if (ms < PROGRESS_AFTER_MS) return;
    const mib = (n: number) => (n / 1048576).toFixed(0);
    const pct = this.total ? Math.floor((100 * this.#done) / this.total) : 100;
    const rate = (this.#done / 1e6 / (ms / 1000)).toFixed(1);
    this.write(`\r\x1b[Kxufs: ${this.label}  ${pct}%  ${mib(this.#done)}/${mib(this.total)} MiB  ${rate} MB/s`);
    this.#shown = true;
  }

  /** Ends the report, erasing the line if it was shown. */
  end(): void {
    clearInterval(this.#timer);
    if (this.#shown) this.write("\r\x1b[K");
  }
}

/**
 * The line shown while the end of a session waits for its changes to reach host A ("xufs:
 * writing back 1234 change(s), 12.3 MiB left"): rewritten in place on a terminal, else printed
 * every few seconds; shown only when the wait lasts.
 */
export class DrainProgress {
  #start = Date.now();
  #last = 0;
  #shown = false;
  readonly #tty = Deno.stderr.isTerminal();

  constructor(private readonly write = (s: string) => Deno.stderr.writeSync(enc.encode(s))) {}

  /** What is left now. */
  show(changes: number, bytes: number): void {
    const now = Date.now();
    if (now - this.#start < 300 || now - this.#last < (this.#tty ? 200 : 5000)) return;
    this.#last = now;
    const line = `xufs: writing back ${changes} change(s), ${(bytes / 1048576).toFixed(1)} MiB left`;
    this.write(this.#tty ? `\r\x1b[K${line}` : `${line}\n`);
    this.#shown = true;
  }

  /** The wait is over (`done`: nothing is left). */
  end(done: boolean): void {
    if (!this.#shown) return;
    if (this.#tty) this.write("\r\x1b[K");
    if (done) this.write("xufs: every change reached host A\n");
  }
}
