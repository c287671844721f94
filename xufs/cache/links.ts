/**
 * The links of B's cache manager to A's file server, and their re-attachment. The main link
 * carries metadata and the journal; further links (each its own TCP connection) carry ranges and
 * pre-caching. A link lost to a protocol error, a timeout or a dropped connection never ends the
 * session: the pool says so on stderr, dials again with backoff (through the ssh tunnel's
 * sockets; with --notun, host A dials and the session hands the new links in), and once a main
 * link answers again it says so and the cache revalidates and resends what was not answered.
 * The pool also counts the foreground fetches in flight (a program's open fetching a file), so
 * that pre-caching starts no new batch while one is outstanding.
 */
import { FsError } from "../fserror.ts";
import type { Remote } from "../remote.ts";

/** Backoff of re-dialling a lost link. */
const DIAL_FIRST_MS = 200, DIAL_MAX_MS = 5000;

/** Options of a link pool. */
export interface LinkPoolOptions {
  log: (line: string) => void;
  /** Dials link `slot` again (0: the main one); none: the other side dials (--notun). */
  dial?: (slot: number) => Promise<Remote>;
  /** Called when a main link answers after none did: the first (`again` false), or after a loss. */
  onMain: (r: Remote, again: boolean) => void;
  /** Called with every notice a link pushes (change callbacks). */
  onNotice: (head: Record<string, unknown>) => void;
}

/** The links of one session. */
export class LinkPool {
  #main: Remote | null = null;
  #all = new Set<Remote>();
  #down = false;
  #downSince = 0;
  #closed = false;
  #waiters: (() => void)[] = [];
  #next = 0;
  #foreground = 0;
  #foregroundIdle = new Set<() => void>();

  constructor(private readonly o: LinkPoolOptions) {}

  /** The main link, when it is up. */
  get main(): Remote | null {
    return this.#main?.up ? this.#main : null;
  }

  /** Links that are up: the main one first. */
  get links(): Remote[] {
    const up = [...this.#all].filter((r) => r.up && r !== this.#main);
    return this.main ? [this.#main!, ...up] : up;
  }

  /** Since when no main link answered (0: one does). */
  get downSince(): number {
    return this.#down ? this.#downSince : 0;
  }

  /** The main link, or EIO at once when there is none. */
  remoteOrEio(): Remote {
    const m = this.main;
    if (!m) throw new FsError("EIO", "Host A is unreachable");
    return m;
  }

  /** Adds a link (dialled as `slot`, to be dialled again when lost); it is the main one if there is none. */
  add(r: Remote, slot?: number): void {
    if (this.#closed) return r.close();
    r.onNotice = (h) => this.o.onNotice(h);
    r.onClose = (reason) => this.#lost(r, slot, reason);
    this.#all.add(r);
    if (!this.main) this.#promote(r);
  }

  /** Makes `r` the main link; once it answers (subscribing to change callbacks), the cache is told. */
  #promote(r: Remote): void {
    this.#main = r;
    r.request({ op: "watch" }).then(() => {
      if (this.#main !== r) return;
      const again = this.#down;
      if (again) this.o.log("link to host A re-established");
      this.#down = false;
      this.o.onMain(r, again);
      for (const w of this.#waiters.splice(0)) w();
    }, () => {});
  }

  #lost(r: Remote, slot: number | undefined, reason: string): void {
    this.#all.delete(r);
    if (this.#closed) return;
    if (r === this.#main) {
      this.#main = null;
      if (!this.#down) {
        this.#down = true;
        this.#downSince = Date.now();
        this.o.log(`link to host A lost (${reason}); reconnecting`);
      }
      const spare = this.links[0];
      if (spare) this.#promote(spare); // another link takes over at once
    }
    if (this.o.dial && slot !== undefined) this.#redial(slot);
  }

  async #redial(slot: number): Promise<void> {
    for (let wait = DIAL_FIRST_MS; !this.#closed; wait = Math.min(DIAL_MAX_MS, wait * 2)) {
      await new Promise((r) => setTimeout(r, wait));
      if (this.#closed) return;
      try {
        this.add(await this.o.dial!(slot), slot);
        return;
      } catch { /* not yet: A away, or its end not back */ }
    }
  }

  /** Waits (at most `ms`) until a main link answers; whether one does. */
  async waitForMain(ms: number): Promise<boolean> {
    if (this.main && !this.#down) return true;
    let timer: ReturnType<typeof setTimeout> | undefined;
    await new Promise<void>((resolve) => {
      timer = setTimeout(resolve, ms);
      this.#waiters.push(resolve);
    });
    clearTimeout(timer);
    return !!this.main && !this.#down;
  }

  /** The link for background work: a further one when there is one, so the main link stays free. */
  background(): Remote | undefined {
    const links = this.links;
    return links.length > 1 ? links[1 + (this.#next++ % (links.length - 1))] : links[0];
  }

  /** Runs a foreground fetch (`work`): while any runs, `foregroundBusy` holds. */
  async foreground<T>(work: () => Promise<T>): Promise<T> {
    this.#foreground++;
    try {
      return await work();
    } finally {
      if (--this.#foreground === 0) for (const w of [...this.#foregroundIdle]) w();
    }
  }

  /** Whether a foreground fetch is in flight. */
  get foregroundBusy(): boolean {
    return this.#foreground > 0;
  }

  /** Calls `wake` whenever the last foreground fetch in flight ends. */
  onForegroundIdle(wake: () => void): void {
    this.#foregroundIdle.add(wake);
  }

  /** Closes every link and stops dialling. */
  close(): void {
    this.#closed = true;
    for (const r of this.#all) r.close("session ended");
    for (const w of this.#waiters.splice(0)) w();
  }
}
