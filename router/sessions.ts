/**
 * The resumable sessions of one router with its peer routers (docs/PROTOCOL.md, "Sessions
 * between routers"), control side: the bytes move in the data plane (router/dataplane.ts, C).
 * Owns the router links to each peer (a small pool, dialed on demand with HELLO/CHALLENGE and
 * MUX, redialed with backoff while sessions wait for one, then handed to the data plane), links
 * peer routers dial to us (handed over at their MUX), opening a session for a CONNECT whose
 * destination is a peer's subnet, answering a peer's OPEN (our listener dialed by the data plane
 * with its RELAYED ticket), and the log lines and counters of sessions and links.
 */
import { hex, unhex } from "../common/bytes.ts";
import type { RouterCounters } from "./counters.ts";
import type { DataPlane, DataPlaneEvent } from "./dataplane.ts";
import { trace } from "./trace.ts";
import { AtMostEvery } from "./deadlines.ts";
import { formatIp, type Subnet } from "./ipv4.ts";
import type { LeaseTable } from "./leases.ts";
import { type Link, LinkError, openLink } from "./link.ts";
import type { Refusal } from "./relay.ts";
import { type Route, routeFor } from "./routes.ts";
import { type ConnectBody, FrameType, ipBytes, randomId, Role, Status, statusName } from "./wire.ts";

/** The sessions' totals line is logged at most once in this many ms, ending with the final counts. */
export const TOTALS_MS = 1000;

/** Knobs of sessions between routers. */
export interface SessionConfig {
  /** A link with nothing received for this long is declared dead. */
  deadMs: number;
  /** First reconnect delay, doubled up to `retryMaxMs`. */
  retryFirstMs: number;
  retryMaxMs: number;
  /** An outage longer than this resets both applications. */
  outageLimitMs: number;
  /** Bytes a receiver buffers per session direction. */
  windowBytes: number;
  /** Session bytes in memory, router-wide. */
  memoryLimit: number;
  /** Spool per session and direction, and for the router, while a link is down. */
  spool: { limitBytes: number; totalBytes: number; dir: string };
  /** Encrypt sessions (to every peer; a route line's `encrypt` does it for one). */
  encrypt: boolean;
}

/** Defaults: first retry after 0.5 s, capped at 10 s; outages up to 5 minutes survive. */
export function defaultSessionConfig(dir: string): SessionConfig {
  return {
    deadMs: 4000,
    retryFirstMs: 500,
    retryMaxMs: 10_000,
    outageLimitMs: 300_000,
    windowBytes: 4 << 20,
    memoryLimit: 1 << 30,
    spool: { limitBytes: 256 << 20, totalBytes: 4 << 30, dir },
    encrypt: false,
  };
}

/** An open session toward a peer router, waiting for the program's data connection. */
export interface PeerHop {
  session: number;
  via: string;
}

/** What the sessions of a router need from it. */
export interface SessionTableOptions {
  routes: Route[];
  self: Subnet;
  key: Uint8Array;
  timeoutMs: number;
  cfg: SessionConfig;
  counters: RouterCounters;
  table: () => LeaseTable;
  dp: () => DataPlane;
  log: (line: string) => void;
}

interface Peer {
  route: Route;
  id: number;
  dialing: boolean;
  failures: number;
  retryAt: number;
  timer?: ReturnType<typeof setTimeout>;
}

interface Known {
  what: string;
  sid: string;
  opener: boolean;
  opened?: (r: { status: number }) => void;
}

/** The sessions of one router. */
export class SessionTable {
  #peers = new Map<number, Peer>();
  #peerOf = new Map<Route, Peer>();
  #links = new Map<number, { peer: number; via: string }>();
  #nextLink = 1;
  #sessions = new Map<number, Known>();
  #nextId = 1;
  /** The totals line, at most once per TOTALS_MS (not one per session end). */
  #totals = new AtMostEvery(TOTALS_MS, () => this.o.log(this.o.counters.totalsLine()));

  constructor(private readonly o: SessionTableOptions) {
    o.routes.forEach((route, i) => {
      const p: Peer = { route, id: i + 1, dialing: false, failures: 0, retryAt: 0 };
      this.#peers.set(p.id, p);
      this.#peerOf.set(route, p);
    });
  }

  /** Ids of sessions and local relays (shared by router/connects.ts: one space). */
  nextId(): number {
    const id = this.#nextId;
    this.#nextId = this.#nextId >= 0x7fffffff ? 1 : this.#nextId + 1;
    return id;
  }

  /** Router links in the data plane now. */
  get links(): number {
    return this.#links.size;
  }

  /**
   * Opens a session to the peer router responsible for the destination; resolves once the peer
   * reached its listener (or refused).
   */
  async open(c: ConnectBody, what: string): Promise<PeerHop | Refusal> {
    const route = routeFor(this.o.routes, c.dstIp);
    const peer = route && this.#peerOf.get(route);
    if (!route || !peer) return { status: Status.ENETUNREACH, why: "no route to its subnet" };
    const id = this.nextId();
    const sid = randomId();
    const answer = new Promise<{ status: number }>((resolve) => {
      this.#sessions.set(id, { what, sid: hex(sid).slice(0, 12), opener: true, opened: resolve });
    });
    trace("open");
    this.o.dp().open(id, peer.id, sid, c, this.o.cfg.encrypt || route.encrypt === true);
    const r = await answer;
    const via = `peer router ${route.host}:${route.port}`;
    if (r.status !== Status.OK) return { status: r.status, why: `${via} answered ${statusName(r.status)}` };
    return { session: id, via };
  }

  /** A link a peer router opened to us, at its MUX frame: handed to the data plane. */
  accept(link: Link): void {
    const dp = this.o.dp();
    const id = this.#nextLink++;
    const fd = dp.adopt(link.conn);
    this.#links.set(id, { peer: 0, via: `peer router ${link.peer}` });
    dp.addLink(fd, id, 0, link.sendKey, link.recvKey, link.sendSeq, link.recvSeq);
  }

  /** An event of the data plane about sessions or links; false when it is not one. */
  event(e: DataPlaneEvent): boolean {
    switch (e.type) {
      case "opened": {
        trace("opened");
        const s = this.#sessions.get(e.id);
        s?.opened?.({ status: e.status });
        if (s) s.opened = undefined;
        return true;
      }
      case "open_req":
        trace("open_req");
        this.#answer(e.id, e.connect, e.sid, e.link);
        return true;
      case "open_dialed":
        this.#answered(e.id, connText(e.connect), e.sid, `${e.realHost}:${e.realPort}`);
        return true;
      case "dial_fail": {
        const s = this.#sessions.get(e.id);
        if (s) this.o.log(`connect ${s.what}: ${statusName(e.status)} (listener unreachable: errno ${e.errno})`);
        return true;
      }
      case "end": {
        trace("end");
        const s = this.#sessions.get(e.id);
        this.#sessions.delete(e.id);
        s?.opened?.({ status: Status.ENETUNREACH });
        if (!e.opened || !s) return true;
        this.o.log(this.o.counters.sessionEnded(s.sid, e, s.what));
        this.#totals.due();
        return true;
      }
      case "link_down": {
        const l = this.#links.get(e.link);
        this.#links.delete(e.link);
        this.o.log(`${l?.via ?? "peer router"}: link down (${e.why}); ${e.sessions} session(s), ${e.unacked} unacknowledged byte(s) kept`);
        return true;
      }
      case "need_link": {
        const p = this.#peers.get(e.peer);
        if (p) this.#dial(p);
        return true;
      }
      default:
        return false;
    }
  }

  /** A peer's OPEN: our listener for the destination, dialed by the data plane, or a refusal. */
  #answer(id: number, c: ConnectBody, sid: Uint8Array, link: number): void {
    const what = connText(c);
    const via = this.#links.get(link)?.via ?? "a peer router";
    const table = this.o.table();
    const l = c.proto === 6 ? table.listener(c.dstIp, c.dstPort) : undefined;
    if (!l) {
      const status = c.proto !== 6 ? Status.EINVAL : table.leases.has(c.dstIp) ? Status.ECONNREFUSED : Status.EHOSTUNREACH;
      this.o.log(`connect ${what} from ${via}: ${statusName(status)} (${status === Status.ECONNREFUSED ? "no listener on that port" : "address not leased"})`);
      this.o.dp().answerRefuse(id, status);
      return;
    }
    this.#answered(id, what, sid, `${l.realHost}:${l.realPort}`);
    this.o.dp().answerDial(id, l.realHost, l.realPort, unhex(l.id));
    trace("answer");
  }

  /** Session `id` answered here: our listener at `real` is dialed for it. */
  #answered(id: number, what: string, sid: Uint8Array, real: string): void {
    this.#sessions.set(id, { what, sid: hex(sid).slice(0, 12), opener: false });
    this.o.log(`relay ${what} open via listener ${real}`);
  }

  /** Opens a link to a peer (unless one is being opened); on failure retries later if needed. */
  #dial(p: Peer): void {
    if (p.dialing || p.timer) return;
    const wait = p.retryAt - Date.now();
    if (wait > 0) {
      p.timer = setTimeout(() => {
        p.timer = undefined;
        this.#dial(p);
      }, wait);
      return;
    }
    p.dialing = true;
    const via = `peer router ${p.route.host}:${p.route.port}`;
    (async () => {
      let link: Link | undefined;
      try {
        link = await openLink(p.route, this.o.key, { role: Role.ROUTER, timeoutMs: this.o.timeoutMs });
        const mux = new Uint8Array(6);
        mux.set(ipBytes(this.o.self.net), 1);
        mux[5] = this.o.self.len;
        await link.send(FrameType.MUX, 0, mux);
        const dp = this.o.dp();
        const id = this.#nextLink++;
        const fd = dp.adopt(link.conn);
        this.#links.set(id, { peer: p.id, via });
        dp.addLink(fd, id, p.id, link.sendKey, link.recvKey, link.sendSeq, link.recvSeq);
        if (p.failures > 0) this.o.log(`link to ${via} up again after ${p.failures} failed attempt(s)`);
        p.failures = 0;
        p.retryAt = 0;
      } catch (e) {
        link?.close();
        const delay = Math.min(this.o.cfg.retryFirstMs * 2 ** p.failures, this.o.cfg.retryMaxMs);
        p.failures++;
        p.retryAt = Date.now() + delay;
        if (p.failures === 1) this.o.log(`cannot open a link to ${via}: ${(e as Error).message}; retrying`);
        const status = e instanceof LinkError && e.kind === "timeout" ? Status.ETIMEDOUT : Status.ENETUNREACH;
        this.o.dp().linkFail(p.id, status);
      } finally {
        p.dialing = false;
      }
    })();
  }

  /** Stops retrying (router shutdown). */
  close(): void {
    for (const p of this.#peers.values()) clearTimeout(p.timer);
    this.#totals.close();
  }
}

/** "src:port -> dst:port" of a connection, as the log lines name it. */
function connText(c: ConnectBody): string {
  return `${formatIp(c.srcIp)}:${c.srcPort} -> ${formatIp(c.dstIp)}:${c.dstPort}`;
}
