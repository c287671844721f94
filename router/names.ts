/**
 * Overlay host names (docs/PROTOCOL.md, "Names"): answers NAME queries from a router's own
 * leases, and for names it does not hold, from its peer routers (asked in parallel with LOCAL
 * queries; the first route in route-file order that knows the name wins). Peer answers are kept
 * for a short while so a burst of lookups costs one round trip per peer.
 */
import { request } from "./client.ts";
import { contains, formatIp } from "./ipv4.ts";
import type { LeaseTable } from "./leases.ts";
import { type Route, routeFor } from "./routes.ts";
import {
  decodeNameAnswer,
  decodeNameQuery,
  encodeNameAnswer,
  encodeNameQuery,
  encodeReply,
  FrameType,
  NAME_F_LOCAL,
  NameKind,
  type NameQuery,
  Role,
  Status,
} from "./wire.ts";

/** How long a peer's answer (found or not) is kept, ms. */
export const NAME_CACHE_MS = 5_000;

type Answer = { ip: number; name: string } | null;

/** The NAME service of one router. */
export class NameService {
  #cache = new Map<string, { answer: Answer; at: number }>();

  constructor(
    private readonly table: () => LeaseTable,
    private readonly routes: Route[],
    private readonly key: Uint8Array,
    private readonly timeoutMs: number,
    private readonly log: (line: string) => void,
  ) {}

  /** The REPLY body for a NAME request body (throws FrameError when malformed). */
  async reply(body: Uint8Array): Promise<Uint8Array> {
    const q = decodeNameQuery(body);
    const a = await this.resolve(q);
    return a ? encodeReply(Status.OK, encodeNameAnswer(a.ip, a.name)) : encodeReply(Status.ENOENT);
  }

  /** Answers a query: own leases first, then (unless LOCAL) the peers. */
  async resolve(q: NameQuery): Promise<Answer> {
    const own = this.#own(q);
    if (own || q.flags & NAME_F_LOCAL) return own;
    if (q.kind === NameKind.REVERSE) {
      const route = routeFor(this.routes, q.ip);
      return route && !contains(this.table().subnet, q.ip) ? await this.#ask(route, q) : null;
    }
    const answers = await Promise.all(
      this.routes.filter((r) => !contains(r.subnet, this.table().subnet.net))
        .map((r) => this.#ask(r, q)),
    );
    return answers.find((a) => a !== null) ?? null;
  }

  #own(q: NameQuery): Answer {
    const table = this.table();
    const lease = q.kind === NameKind.FORWARD ? table.byName(q.name) : table.leases.get(q.ip);
    return lease && lease.name ? { ip: lease.ip, name: lease.name } : null;
  }

  /** A LOCAL query to one peer router; unreachable peers count as "not found" (logged). */
  async #ask(route: Route, q: NameQuery): Promise<Answer> {
    const id = `${route.host}:${route.port} ${
      q.kind === NameKind.FORWARD ? q.name.toLowerCase() : formatIp(q.ip)
    }`;
    const hit = this.#cache.get(id);
    if (hit && Date.now() - hit.at < NAME_CACHE_MS) return hit.answer;
    let answer: Answer = null;
    try {
      const r = await request(
        route,
        this.key,
        FrameType.NAME,
        encodeNameQuery({ ...q, flags: NAME_F_LOCAL }),
        { timeoutMs: this.timeoutMs, role: Role.ROUTER },
      );
      if (r.status === Status.OK) answer = decodeNameAnswer(r.data);
    } catch (e) {
      this.log(
        `name query to peer router ${route.host}:${route.port} failed: ${(e as Error).message}`,
      );
      return null; // not cached: the peer may be back at the next query
    }
    this.#cache.set(id, { answer, at: Date.now() });
    if (this.#cache.size > 4096) {
      for (const [k, v] of this.#cache) {
        if (Date.now() - v.at >= NAME_CACHE_MS) this.#cache.delete(k);
      }
    }
    return answer;
  }
}
