/**
 * The counters of one router, in one object that every part of it updates: the router itself
 * (refused requests), its relays (open, total, bytes of local relays), its UDP side (datagrams)
 * and its resumable sessions (the live ones, and the totals of those that ended). The
 * `uvpn_proxy --status` text and the log lines that report counters are produced here, from
 * these counters only; their format is parsed by tests and users, so it must not change.
 */
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

/**
 * What a live session shows in the counters: its identity and state, the bytes each way (its
 * s_bytes and r_bytes), the bytes that went to its spool file, and the counters it updates.
 */
export interface SessionCounters {
  readonly idHex: string;
  readonly role: string;
  readonly state: string;
  readonly sent: number;
  readonly received: number;
  readonly spooled: number;
  reconnects: number;
  replayed: number;
}

/** Live links and what hangs on them, for `--status`. */
export interface LinkCounts {
  clients: number;
  routers: number;
  unauthenticated: number;
  listeners: number;
  pending: number;
}

/** Sums of session counters. */
interface SessionSums {
  sent: number;
  received: number;
  reconnects: number;
  replayed: number;
  spooled: number;
}

/** Adds the counters of session `s` to the sums `into`. */
function addTo(into: SessionSums, s: SessionCounters): void {
  into.sent += s.sent;
  into.received += s.received;
  into.reconnects += s.reconnects;
  into.replayed += s.replayed;
  into.spooled += s.spooled;
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
  /** Live sessions, in the order they started. */
  readonly #live = new Set<SessionCounters>();
  /** Sessions started, sessions reset, and the sums of the sessions that ended. */
  readonly #ended = { sessions: 0, resets: 0, sent: 0, received: 0, reconnects: 0, replayed: 0, spooled: 0 };

  /** A relay (local, or a session to a peer router) was opened. */
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

  /** A session started: it counts as live until `sessionEnded`. */
  sessionStarted(s: SessionCounters): void {
    this.#live.add(s);
    this.#ended.sessions++;
  }

  /** Sessions live now. */
  get liveSessions(): number {
    return this.#live.size;
  }

  /**
   * A session ended (cleanly or with a reset): its counters join the totals. Returns the two log
   * lines, the session's own and the running totals.
   */
  sessionEnded(s: SessionCounters, clean: boolean, what: string): [string, string] {
    this.#live.delete(s);
    const t = this.#ended;
    addTo(t, s);
    if (!clean) t.resets++;
    return [
      `session ${s.idHex} ${what} ${clean ? "closed" : "reset"}: ${s.sent} bytes sent, ${s.received} received, ` +
      `${s.reconnects} reconnect(s), ${s.replayed} replayed, ${s.spooled} spooled`,
      `totals: ${t.sessions} session(s), ${this.#live.size} live, ${t.resets} reset, ${t.sent} bytes sent, ` +
      `${t.received} received, ${t.reconnects} reconnect(s), ${t.replayed} replayed, ${t.spooled} spooled`,
    ];
  }

  /**
   * Text for `uvpn_proxy --status`: relays, sessions (ended and live together), UDP, then one
   * line per live session. `leases` and `udpEndpoints` are the router's current table sizes.
   */
  statusText(subnet: Subnet, leases: number, udpEndpoints: number, links?: LinkCounts): string {
    const t = this.#ended;
    const live: SessionSums = { sent: 0, received: 0, reconnects: 0, replayed: 0, spooled: 0 };
    const lines = [...this.#live].map((s) => {
      addTo(live, s);
      return `session ${s.idHex} ${s.role} ${s.state} sent=${s.sent} received=${s.received} ` +
        `reconnects=${s.reconnects} replayed=${s.replayed} spooled=${s.spooled}`;
    });
    const u = this.udp;
    return [
      `subnet ${formatSubnet(subnet)} leases=${leases} relays_open=${this.relaysOpen} ` +
      `relays_total=${this.relaysTotal} refused=${this.refused}`,
      `sessions live=${this.#live.size} total=${t.sessions} resets=${t.resets} ` +
      `sent=${t.sent + live.sent} received=${t.received + live.received} reconnects=${t.reconnects + live.reconnects} ` +
      `replayed=${t.replayed + live.replayed} spooled=${t.spooled + live.spooled}`,
      `udp endpoints=${udpEndpoints} received=${u.received} delivered=${u.delivered} ` +
      `forwarded=${u.forwarded} dropped=${u.dropped}`,
      ...(links
        ? [`links clients=${links.clients} routers=${links.routers} unauthenticated=${links.unauthenticated} ` +
          `listeners=${links.listeners} pending_tickets=${links.pending}`]
        : []),
      ...lines,
    ].join("\n") + "\n";
  }
}
