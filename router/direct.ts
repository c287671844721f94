/**
 * The direct path (docs/UVPN.md, "The direct path"; docs/PROTOCOL.md, "Connections"): whether a
 * CONNECT is brokered — answered with the listener's real address and the id of a DIRECT ticket,
 * the router then out of the data path — or relayed. Brokered only when the client allows it
 * (CONNECT flag DIRECT), the router's policy (`--direct auto|never`) does, the listener is in
 * the client's site — one of this router's (its nodes are one site), or of a router of the same
 * `site=` in the route file, which is asked (CONNECT on a router link) — and checks the ticket of
 * every connection it accepts, and the path from the client's host to the listener's has not
 * failed lately. A client whose
 * direct attempt failed asks again with flag DIRECT_FAILED: that path (one direction, client host
 * to listener host) is then not offered for a while, doubling on each failure, so a path blocked
 * one way never flaps between direct and relayed.
 */
import { formatIp, parseIp } from "./ipv4.ts";
import type { Listener } from "./leases.ts";

/** Whether a router brokers direct connections at all (`uvpn_proxy --direct`). */
export type DirectPolicy = "auto" | "never";

/** Parses a `--direct` value; throws with the offending value. */
export function parseDirectPolicy(text: string): DirectPolicy {
  if (text === "auto" || text === "never") return text;
  throw new Error(`Expected --direct auto or never: ${text}`);
}

/** How long a failed path is not offered after its first failure, ms (doubles on each failure). */
export const DIRECT_HOLD_FIRST_MS = 120_000;
/** The longest hold of a failed path, ms. */
export const DIRECT_HOLD_MAX_MS = 1_800_000;

/** Where the client connects for a brokered connection. */
export interface DirectTarget {
  ip: number;
  port: number;
}

interface Failure {
  until: number;
  holdMs: number;
}

/** The direct paths of one router: the policy and the paths that failed. */
export class DirectPaths {
  #failed = new Map<string, Failure>();

  constructor(readonly policy: DirectPolicy, private readonly now: () => number = Date.now) {}

  /**
   * The listener's address as a client of `routerHost` reaches it, when the policy allows a
   * direct connection to it: `routerHost` is this router's own address as the asking link
   * reached it, and replaces a listener's loopback address (the listener runs on this host).
   */
  target(routerHost: string, l: Pick<Listener, "realHost" | "realPort" | "direct">): DirectTarget | null {
    if (this.policy === "never" || !l.direct) return null;
    const ip = parseIp(unmapped(isLoopback(l.realHost) ? routerHost : l.realHost));
    return ip === null ? null : { ip, port: l.realPort };
  }

  /** True while the path from the client's host to the target's has failed lately. */
  held(clientHost: string, to: DirectTarget): boolean {
    const f = this.#failed.get(`${unmapped(clientHost)} -> ${formatIp(to.ip)}`);
    return f !== undefined && f.until > this.now();
  }

  /** The client's direct attempt to `to` failed: holds that path; returns it and the hold, ms. */
  failed(clientHost: string, to: DirectTarget): { path: string; holdMs: number } {
    const path = `${unmapped(clientHost)} -> ${formatIp(to.ip)}`;
    const prev = this.#failed.get(path);
    const holdMs = prev ? Math.min(prev.holdMs * 2, DIRECT_HOLD_MAX_MS) : DIRECT_HOLD_FIRST_MS;
    this.#failed.set(path, { until: this.now() + holdMs, holdMs });
    if (this.#failed.size > 4096) this.#sweep();
    return { path, holdMs };
  }

  /** Paths held now. */
  get holds(): number {
    this.#sweep();
    return this.#failed.size;
  }

  /** Forgets holds that ran out long ago (a path that failed again within its hold doubles it). */
  #sweep(): void {
    const now = this.now();
    for (const [k, f] of this.#failed) if (f.until + f.holdMs < now) this.#failed.delete(k);
  }
}

function unmapped(host: string): string {
  return host.replace(/^::ffff:/, "");
}

function isLoopback(host: string): boolean {
  const ip = parseIp(unmapped(host));
  return host === "::1" || (ip !== null && formatIp(ip).startsWith("127."));
}
