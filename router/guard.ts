/**
 * What protects a router from connections that have not authenticated yet (docs/PROTOCOL.md,
 * "Links and the handshake"): at most a few per source address and in all, each with a short
 * deadline; and the refusal log, which writes one line per source and reason per interval (with
 * the count of those it kept quiet), never one per packet.
 */

/** Limits before authentication. */
export interface GuardLimits {
  /** Unauthenticated connections allowed per source address. */
  perSource: number;
  /** Unauthenticated connections allowed in all. */
  total: number;
  /** Time a connection gets to authenticate (link: first frame under the link key; data: its ticket), ms. */
  handshakeMs: number;
}

/**
 * Defaults: 256 per source, 4096 in all, 3 s. (The design said 64 and 1024: one busy client host
 * opens data connections in bursts — an asyncio program with 64 connects in flight — and a
 * router under load accepts them faster than it reads their tickets.)
 */
export const DEFAULT_LIMITS: GuardLimits = { perSource: 256, total: 4096, handshakeMs: 3000 };

/** How often a refusal of one kind from one source is logged at most. */
export const REFUSAL_LOG_MS = 60_000;

/** Counts unauthenticated connections per source and in all. */
export class PreAuthGuard {
  #bySource = new Map<string, number>();
  #total = 0;

  constructor(readonly limits: GuardLimits) {}

  /** Admits a new connection from `source`; false when a limit is reached (close it at once). */
  admit(source: string): boolean {
    const n = this.#bySource.get(source) ?? 0;
    if (n >= this.limits.perSource || this.#total >= this.limits.total) return false;
    this.#bySource.set(source, n + 1);
    this.#total++;
    return true;
  }

  /** A connection from `source` authenticated or ended. */
  release(source: string): void {
    const n = this.#bySource.get(source) ?? 0;
    if (n <= 1) this.#bySource.delete(source);
    else this.#bySource.set(source, n - 1);
    this.#total--;
  }

  /** Unauthenticated connections now. */
  get pending(): number {
    return this.#total;
  }
}

/** Logs refusals at most once per source and reason per interval, with a count of the rest. */
export class RefusalLog {
  #seen = new Map<string, { at: number; quiet: number }>();

  constructor(private readonly log: (line: string) => void, private readonly intervalMs = REFUSAL_LOG_MS) {}

  /** Records a refusal of `peer` (`host:port`) for `why`; logs it unless one like it was logged lately. */
  refuse(peer: string, why: string): void {
    const host = peer.replace(/:\d+$/, "");
    const key = `${host} ${why.replace(/\d+/g, "#")}`;
    const now = Date.now();
    const s = this.#seen.get(key);
    if (s && now - s.at < this.intervalMs) {
      s.quiet++;
      return;
    }
    const more = s?.quiet ? ` (and ${s.quiet} more like it since the last line)` : "";
    this.#seen.set(key, { at: now, quiet: 0 });
    this.log(`refused ${peer}: ${why}${more}`);
    if (this.#seen.size > 10_000) {
      for (const [k, v] of this.#seen) if (now - v.at >= this.intervalMs) this.#seen.delete(k);
    }
  }
}
