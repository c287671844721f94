/**
 * The counters of one router, in one object that every part of it updates: the router itself
 * (refused requests), its relays (open, total, bytes of local relays), its UDP side (datagrams),
 * connect latency, and the sessions that ended (the data plane counts the live ones:
 * router/dataplane.ts). The `uvpn_proxy --status` text, its JSON form and the log lines that
 * report counters are produced here; their format is parsed by tests and users, so lines are
 * only ever added, never changed.
 */
import type { DataPlaneStats } from "./dataplane.ts";
import { formatSubnet, type Subnet } from "./ipv4.ts";

/** The relay and refusal counters of a router (`Router.stats`). */
export interface RouterStats {
  relaysOpen: number;
  relaysTotal: number;
  bytesUp: number;
  bytesDown: number;
  refused: number;
}

/** Counters of the UDP side, for `--status`. */
export interface UdpStats {
  received: number;
  delivered: number;
  forwarded: number;
  dropped: number;
}

/** Live links and what hangs on them, for `--status`. */
export interface LinkCounts {
  clients: number;
  routers: number;
  unauthenticated: number;
  listeners: number;
  pending: number;
}

/** How a session ended (the data plane's EV_END). */
export interface SessionEnd {
  clean: boolean;
  opener: boolean;
  sent: number;
  received: number;
  reconnects: number;
  replayed: number;
  spooled: number;
  why: string;
}

/** One live session, from the data plane's snapshot. */
export interface SessionLine {
  id: string;
  role: string;
  state: string;
  sent: number;
  received: number;
  reconnects: number;
  replayed: number;
  spooled: number;
}

/** Upper bounds (ms) of the connect-latency histogram's buckets. */
export const CONNECT_BUCKETS_MS = [0.5, 1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000];

/** Everything `--status` and `--metrics` report, gathered at one moment. */
export interface StatusReport {
  subnet: string;
  leases: number;
  relays: { open: number; total: number };
  refused: number;
  sessions: {
    live: number;
    total: number;
    resets: number;
    clean: number;
    sent: number;
    received: number;
    reconnects: number;
    replayed: number;
    spooled: number;
  };
  local: { up: number; down: number };
  udp: UdpStats & { endpoints: number };
  links: LinkCounts & { losses: number };
  memory: { used: number; peak: number; limit: number };
  spool: { used: number; peak: number; limit: number };
  frames: { in: number; out: number; refused: Record<string, number> };
  connects: { ok: number; failed: number; sumMs: number; buckets: number[] };
  /** Direct and relayed connections and their bytes (relayed: this router's relays and sessions). */
  paths: DirectCounts & { relayed: number; relayedBytes: number };
  crypto: string;
  list: SessionLine[];
}

/** The direct path's counters: brokered, failed attempts, and what clients reported of them. */
export interface DirectCounts {
  /** CONNECTs answered with a DIRECT ticket. */
  directOffered: number;
  /** Direct attempts that failed (the client fell back to the relay). */
  directFailed: number;
  /** Direct connections that ended, as their clients reported them (UVPN request PATHS). */
  direct: number;
  directBytes: number;
}

/** Every counter of one router. */
export class RouterCounters implements RouterStats {
  relaysOpen = 0;
  relaysTotal = 0;
  bytesUp = 0;
  bytesDown = 0;
  refused = 0;
  /** Updated by the UDP side (router/udp.ts). */
  readonly udp: UdpStats = { received: 0, delivered: 0, forwarded: 0, dropped: 0 };
  /** The data plane's counters, once it runs. */
  dp?: () => DataPlaneStats;
  /** Sums of the sessions that ended. */
  readonly #ended = { resets: 0, sent: 0, received: 0, reconnects: 0, replayed: 0, spooled: 0 };
  readonly #connects = { ok: 0, failed: 0, sumMs: 0, buckets: CONNECT_BUCKETS_MS.map(() => 0) };
  readonly #direct: DirectCounts = { directOffered: 0, directFailed: 0, direct: 0, directBytes: 0 };

  /** A CONNECT was answered with a DIRECT ticket. */
  directOffered(): void {
    this.#direct.directOffered++;
  }

  /** A client's direct attempt failed; it asked for the relay. */
  directFailed(): void {
    this.#direct.directFailed++;
  }

  /** A client reported `n` direct connections that ended, with their bytes both ways. */
  directReported(n: number, bytes: number): void {
    this.#direct.direct += n;
    this.#direct.directBytes += bytes;
  }

  /** A relay (local, or a session to a peer router) was joined to its data connection. */
  relayOpened(): void {
    this.relaysOpen++;
    this.relaysTotal++;
  }

  /** A relay ended. */
  relayClosed(): void {
    this.relaysOpen--;
  }

  /** Counts the bytes of a local relay that finished; returns its log line. */
  relayFinished(what: string, up: number, down: number): string {
    this.bytesUp += up;
    this.bytesDown += down;
    return `relay ${what} closed: ${up} bytes up, ${down} bytes down`;
  }

  /** A CONNECT was answered after `ms` (ok: with a ticket). */
  connectAnswered(ms: number, ok: boolean): void {
    const c = this.#connects;
    if (ok) c.ok++;
    else c.failed++;
    c.sumMs += ms;
    const i = CONNECT_BUCKETS_MS.findIndex((b) => ms <= b);
    if (i >= 0) c.buckets[i]++;
  }

  /**
   * A session that had opened ended (cleanly or with a reset): its counters join the totals.
   * Returns its log line (the running totals: `totalsLine`).
   */
  sessionEnded(id: string, e: SessionEnd, what: string): string {
    const t = this.#ended;
    t.sent += e.sent;
    t.received += e.received;
    t.reconnects += e.reconnects;
    t.replayed += e.replayed;
    t.spooled += e.spooled;
    if (!e.clean) t.resets++;
    return `session ${id} ${what} ${e.clean ? "closed" : "reset"}: ${e.sent} bytes sent, ${e.received} received, ` +
      `${e.reconnects} reconnect(s), ${e.replayed} replayed, ${e.spooled} spooled${e.clean ? "" : ` (${e.why})`}`;
  }

  /** The log line of the sessions' running totals. */
  totalsLine(): string {
    const t = this.#ended;
    const d = this.dp?.();
    return `totals: ${d?.sessionsTotal ?? 0} session(s), ${d?.sessionsLive ?? 0} live, ${t.resets} reset, ${t.sent} bytes sent, ` +
      `${t.received} received, ${t.reconnects} reconnect(s), ${t.replayed} replayed, ${t.spooled} spooled`;
  }

  /** Gathers the report; `list` is the data plane's snapshot text (one line per live session). */
  report(subnet: Subnet, leases: number, udpEndpoints: number, links: LinkCounts, list: string, crypto: string): StatusReport {
    const d = this.dp?.();
    const z = (n: number | undefined) => n ?? 0;
    return {
      subnet: formatSubnet(subnet),
      leases,
      relays: { open: this.relaysOpen, total: this.relaysTotal },
      refused: this.refused,
      sessions: {
        live: z(d?.sessionsLive),
        total: z(d?.sessionsTotal),
        resets: z(d?.sessionsReset),
        clean: z(d?.sessionsClean),
        sent: z(d?.sent),
        received: z(d?.received),
        reconnects: z(d?.resumes),
        replayed: z(d?.replayed),
        spooled: z(d?.spooledTotal),
      },
      local: { up: z(d?.localUp), down: z(d?.localDown) },
      udp: { ...this.udp, endpoints: udpEndpoints },
      links: { ...links, losses: z(d?.linkLosses) },
      memory: { used: z(d?.memoryUsed), peak: z(d?.memoryPeak), limit: z(d?.memoryLimit) },
      spool: { used: z(d?.spoolUsed), peak: z(d?.spoolPeak), limit: z(d?.spoolLimit) },
      frames: {
        in: z(d?.framesIn),
        out: z(d?.framesOut),
        refused: {
          bad_mac: z(d?.refusedMac),
          out_of_sequence: z(d?.refusedSeq),
          malformed: z(d?.refusedFrame),
          protocol: z(d?.refusedProtocol),
          ended_session: z(d?.ignoredUnknown),
        },
      },
      connects: { ...this.#connects, buckets: [...this.#connects.buckets] },
      paths: {
        ...this.#direct,
        relayed: this.relaysTotal,
        relayedBytes: z(d?.localUp) + z(d?.localDown) + z(d?.sent) + z(d?.received),
      },
      crypto,
      list: parseSessionLines(list),
    };
  }
}

/** Parses the data plane's snapshot lines. */
function parseSessionLines(text: string): SessionLine[] {
  const out: SessionLine[] = [];
  for (const line of text.split("\n")) {
    const m = /^session (\S+) (\S+) (\S+) sent=(\d+) received=(\d+) reconnects=(\d+) replayed=(\d+) spooled=(\d+)$/.exec(line);
    if (!m) continue;
    out.push({
      id: m[1],
      role: m[2],
      state: m[3],
      sent: Number(m[4]),
      received: Number(m[5]),
      reconnects: Number(m[6]),
      replayed: Number(m[7]),
      spooled: Number(m[8]),
    });
  }
  return out;
}

/**
 * Text for `uvpn_proxy --status`: relays, sessions (ended and live together), UDP, links, the
 * budgets and the frames refused, then one line per live session.
 */
export function statusText(r: StatusReport): string {
  const s = r.sessions, u = r.udp, l = r.links, f = r.frames.refused;
  return [
    `subnet ${r.subnet} leases=${r.leases} relays_open=${r.relays.open} relays_total=${r.relays.total} refused=${r.refused}`,
    `sessions live=${s.live} total=${s.total} resets=${s.resets} sent=${s.sent} received=${s.received} ` +
    `reconnects=${s.reconnects} replayed=${s.replayed} spooled=${s.spooled}`,
    `udp endpoints=${u.endpoints} received=${u.received} delivered=${u.delivered} forwarded=${u.forwarded} dropped=${u.dropped}`,
    `links clients=${l.clients} routers=${l.routers} unauthenticated=${l.unauthenticated} listeners=${l.listeners} ` +
    `pending_tickets=${l.pending}`,
    `budget memory_used=${r.memory.used} memory_peak=${r.memory.peak} memory_limit=${r.memory.limit} ` +
    `spool_used=${r.spool.used} spool_peak=${r.spool.peak} spool_limit=${r.spool.limit}`,
    `frames in=${r.frames.in} out=${r.frames.out} refused_mac=${f.bad_mac} refused_sequence=${f.out_of_sequence} ` +
    `refused_malformed=${f.malformed} refused_protocol=${f.protocol} ended_session=${f.ended_session} link_losses=${l.losses}`,
    `paths direct_offered=${r.paths.directOffered} direct_failed=${r.paths.directFailed} direct=${r.paths.direct} ` +
    `direct_bytes=${r.paths.directBytes} relayed=${r.paths.relayed} relayed_bytes=${r.paths.relayedBytes}`,
    ...r.list.map((x) =>
      `session ${x.id} ${x.role} ${x.state} sent=${x.sent} received=${x.received} reconnects=${x.reconnects} ` +
      `replayed=${x.replayed} spooled=${x.spooled}`
    ),
  ].join("\n") + "\n";
}
