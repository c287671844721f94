/**
 * Virtual TCP connections through a router (docs/PROTOCOL.md, "Connections"): CONNECT on a
 * client link (a virtual source port assigned when asked, the far end reached first: the local
 * listener, dialed by the data plane with its RELAYED ticket, or a session to the peer router of
 * the destination), and the DATA ticket issued in the answer: announced to the data plane, whose
 * data port (native/router/core/data.c, the answer's real port) takes the program's data
 * connection, checks the ticket (MAC, issued here to that host for that CONNECT, bound to the
 * connection's port, single use, 10 s) and joins the connection to the far end itself, then
 * tells us (data_attached, data_expired). The bytes themselves move in the data plane
 * (router/dataplane.ts); sessions are router/sessions.ts.
 * A CONNECT inside the site may instead be brokered (router/direct.ts): answered with the
 * listener's real address and a DIRECT ticket's id, the router then holding nothing.
 */
import { unhex } from "../common/bytes.ts";
import type { RouterCounters } from "./counters.ts";
import type { DataPlane, DataPlaneEvent } from "./dataplane.ts";
import { contains, formatIp, parseIp, type Subnet } from "./ipv4.ts";
import type { LeaseTable } from "./leases.ts";
import type { Link } from "./link.ts";
import { request } from "./client.ts";
import { trace } from "./trace.ts";
import type { DirectPaths, DirectTarget } from "./direct.ts";
import type { Refusal } from "./relay.ts";
import type { PeerHop, SessionTable } from "./sessions.ts";
import { type Route, routeFor, sameSite } from "./routes.ts";
import {
  type ConnectAnswer,
  type ConnectBody,
  ConnectFlag,
  decodeConnectAnswer,
  encodeConnect,
  encodeConnectAnswer,
  FrameType,
  randomId,
  Role,
  Status,
  statusName,
  TicketKind,
} from "./wire.ts";

/** How long an issued DATA ticket waits for its data connection, ms. */
export const DATA_TICKET_MS = 10_000;

/** How long a router waits for a router of its site to broker a direct connection, ms. */
export const DIRECT_ASK_MS = 2000;

/** What the connections of a router need from it. */
export interface ConnectsOptions {
  subnet: Subnet;
  /** The route table, the router's own line and the network key (to ask the routers of its site). */
  routes: Route[];
  self: Route;
  key: Uint8Array;
  timeoutMs: number;
  table: () => LeaseTable;
  sessions: SessionTable;
  dp: () => DataPlane;
  /** The data port (where the programs' data connections present their DATA tickets). */
  dataPort: () => number;
  counters: RouterCounters;
  /** The direct paths: policy and failures. */
  direct: DirectPaths;
  log: (line: string) => void;
}

/** The far end of a virtual connection, reached: a local relay or a session to a peer router. */
type Hop = { relay: number; via: string } | PeerHop;

/** A connection whose DATA ticket is out (the data plane checks it). */
interface Pending {
  hop: Hop;
  c: ConnectBody;
  what: string;
}

const ZERO_ID = new Uint8Array(8);

/** A virtual source port for a connection whose program bound none and that the router does not hold. */
function randomPort(): number {
  return 32768 + Math.floor(Math.random() * 28232);
}

/** The host part of a socket address. */
function hostOf(a: Deno.Addr): string {
  return (a as Deno.NetAddr).hostname;
}

/** The virtual connections of one router. */
export class Connects {
  /** Connections whose DATA ticket is out: relay or session id -> the connection. */
  #pending = new Map<number, Pending>();
  /** Virtual source ports in use, per virtual source address (ports may repeat: counted). */
  #ports = new Map<number, Map<number, number>>();
  /** Local relays waiting for their listener's dial. */
  #dialing = new Map<number, (r: { status: number; errno: number }) => void>();
  /** Relays and sessions joined: id -> what and its port, for the end. */
  #live = new Map<number, { what: string; c: ConnectBody }>();
  /** Direct paths brokered lately: "client host dst:port" -> the listener's real address. */
  #brokered = new Map<string, DirectTarget>();

  constructor(private readonly o: ConnectsOptions) {}

  /** DATA tickets issued and not used yet. */
  get pending(): number {
    return this.#pending.size;
  }

  #takePort(ip: number, want: number): number {
    let m = this.#ports.get(ip);
    if (!m) this.#ports.set(ip, m = new Map());
    let port = want;
    if (!port) {
      const start = 32768 + Math.floor(Math.random() * 28232);
      for (let i = 0; i < 28232; i++) {
        const p = 32768 + ((start - 32768 + i) % 28232);
        if (!m.has(p)) {
          port = p;
          break;
        }
      }
      port ||= start; // 28,232 live connections from one address: share a port
    }
    m.set(port, (m.get(port) ?? 0) + 1);
    return port;
  }

  #putPort(ip: number, port: number): void {
    const m = this.#ports.get(ip);
    const n = m?.get(port) ?? 0;
    if (n <= 1) m?.delete(port);
    else m!.set(port, n - 1);
    if (m && m.size === 0) this.#ports.delete(ip);
  }

  /**
   * CONNECT from a client link (the source already checked): reaches the far end, then answers
   * with a DATA ticket for the client's data connection, or with the failure.
   */
  async connect(link: Link, reqId: number, req: ConnectBody): Promise<void> {
    const started = performance.now();
    if (await this.#broker(link, reqId, req, started)) return;
    const c = { ...req, srcPort: this.#takePort(req.srcIp, req.srcPort) };
    const what = `${formatIp(c.srcIp)}:${c.srcPort} -> ${formatIp(c.dstIp)}:${c.dstPort}`;
    const hop = await this.#nextHop(c, what).catch((e): Refusal => ({ status: Status.ENETUNREACH, why: (e as Error).message }));
    if ("why" in hop) {
      this.#putPort(c.srcIp, c.srcPort);
      this.o.log(`connect ${what} from ${link.peer}: ${statusName(hop.status)} (${hop.why})`);
      this.o.counters.connectAnswered(performance.now() - started, false);
      await link.reply(reqId, hop.status);
      return;
    }
    const ticketId = randomId();
    const issued = Date.now();
    const id = "relay" in hop ? hop.relay : hop.session;
    const local = link.conn.localAddr as Deno.NetAddr;
    const realIp = parseIp(local.hostname.replace(/^::ffff:/, "")) ?? 0;
    this.#pending.set(id, { hop, c, what });
    this.o.dp().expect({ id, ticketId, issued, connect: c, host: link.peerHost });
    const answer = encodeConnectAnswer({
      kind: TicketKind.DATA,
      realIp,
      realPort: this.o.dataPort(),
      srcPort: c.srcPort,
      listenerId: ZERO_ID,
      issued,
      ticketId,
    });
    this.o.counters.connectAnswered(performance.now() - started, true);
    trace("reply");
    await link.reply(reqId, Status.OK, answer).catch(() => {}); // (the ticket then expires in the data plane)
  }

  /**
   * Answers a CONNECT with a DIRECT ticket when it may go direct (router/direct.ts); notes a
   * client's failed direct attempt. True when answered.
   */
  async #broker(link: Link, reqId: number, req: ConnectBody, started: number): Promise<boolean> {
    const clientHost = link.peerHost;
    const key = `${clientHost} ${formatIp(req.dstIp)}:${req.dstPort}`;
    if (req.flags & ConnectFlag.DIRECT_FAILED) {
      const to = this.#brokered.get(key);
      if (to) {
        const f = this.o.direct.failed(clientHost, to);
        this.o.counters.directFailed();
        this.o.log(`direct path ${f.path} failed for ${formatIp(req.srcIp)} -> ${formatIp(req.dstIp)}:${req.dstPort}: relayed, not offered for ${f.holdMs / 1000} s`);
      }
      return false;
    }
    if (!(req.flags & ConnectFlag.DIRECT) || this.o.direct.policy === "never") return false;
    const a = await this.#directAnswer({ ...req, srcPort: req.srcPort || randomPort() }, hostOf(link.conn.localAddr));
    if (!a) return false;
    const to = { ip: a.realIp, port: a.realPort };
    if (this.o.direct.held(clientHost, to)) return false;
    this.#brokered.delete(key);
    this.#brokered.set(key, to);
    if (this.#brokered.size > 4096) this.#brokered.delete(this.#brokered.keys().next().value!);
    this.o.counters.directOffered();
    this.o.counters.connectAnswered(performance.now() - started, true);
    await link.reply(reqId, Status.OK, encodeConnectAnswer(a)).catch(() => {});
    return true;
  }

  /**
   * The DIRECT answer for connection c (its source port chosen): from our own listener, or
   * asked of the router of the destination when it is of our site. null: relay it.
   */
  async #directAnswer(c: ConnectBody, routerHost: string): Promise<ConnectAnswer | null> {
    if (contains(this.o.subnet, c.dstIp)) return this.directFor(c, routerHost);
    const route = routeFor(this.o.routes, c.dstIp);
    if (!route || !sameSite(this.o.self, route)) return null;
    try {
      const r = await request(route, this.o.key, FrameType.CONNECT, encodeConnect({ ...c, flags: ConnectFlag.DIRECT }), {
        timeoutMs: Math.min(this.o.timeoutMs, DIRECT_ASK_MS),
        role: Role.ROUTER,
      });
      if (r.status !== Status.OK) return null;
      const a = decodeConnectAnswer(r.data);
      return a.kind === TicketKind.DIRECT ? a : null;
    } catch (e) {
      this.o.log(`direct query to router ${route.host}:${route.port} of site ${route.site} failed: ${(e as Error).message}`);
      return null;
    }
  }

  /**
   * A DIRECT answer for connection c to a listener of our own subnet, reached by the asker at
   * our address `routerHost`: for our clients, and for the routers of our site that ask. null
   * when there is no such listener or it may not be reached directly.
   */
  directFor(c: ConnectBody, routerHost: string): ConnectAnswer | null {
    const l = this.o.table().listener(c.dstIp, c.dstPort);
    const to = l && this.o.direct.target(routerHost, l);
    if (!l || !to) return null;
    return {
      kind: TicketKind.DIRECT,
      realIp: to.ip,
      realPort: to.port,
      srcPort: c.srcPort || randomPort(),
      listenerId: unhex(l.id),
      issued: Date.now(),
      ticketId: randomId(),
    };
  }

  /**
   * The brokered answer for UDP from c.src (on `link`) to c.dst, an endpoint of our subnet
   * registered at `at` that takes datagrams directly (null: send through the router): its real
   * address.
   */
  udpDirectFor(link: Link, c: ConnectBody, at: { host: string; port: number } | null): ConnectAnswer | null {
    if (!at || !(c.flags & ConnectFlag.DIRECT) || !contains(this.o.subnet, c.dstIp) || !contains(this.o.subnet, c.srcIp)) return null;
    const to = this.o.direct.target(hostOf(link.conn.localAddr), { realHost: at.host, realPort: at.port, direct: true });
    if (!to || this.o.direct.held(link.peerHost, to)) return null; // a path TCP found blocked carries no UDP either
    return { kind: TicketKind.DIRECT, realIp: to.ip, realPort: to.port, srcPort: c.srcPort, listenerId: ZERO_ID, issued: Date.now(), ticketId: randomId() };
  }

  /** A connection whose DATA ticket will not be used (the data plane has dropped its far end). */
  #drop(id: number, why: string): void {
    const p = this.#pending.get(id);
    if (!p) return;
    this.#pending.delete(id);
    this.#putPort(p.c.srcIp, p.c.srcPort);
    this.o.log(`connect ${p.what}: ${why}; dropped`);
  }

  /** The data plane attached a connection's data connection (its DATA ticket checked). */
  #attached(id: number): void {
    const p = this.#pending.get(id);
    if (!p) return;
    this.#pending.delete(id);
    trace("attach");
    this.o.counters.relayOpened();
    this.o.log(`relay ${p.what} open via ${p.hop.via}`);
    this.#live.set(id, { what: p.what, c: p.c });
  }

  /** An event of the data plane about local relays and joined connections; false when not one. */
  event(e: DataPlaneEvent): boolean {
    if (e.type === "data_attached") {
      this.#attached(e.id);
      return true;
    }
    if (e.type === "data_expired") {
      this.#drop(e.id, `no data connection within ${DATA_TICKET_MS / 1000} s`);
      return true;
    }
    if (e.type === "relay_ready") {
      this.#dialing.get(e.id)?.({ status: e.status, errno: e.errno });
      this.#dialing.delete(e.id);
      return true;
    }
    if (e.type === "relay_end") {
      this.#drop(e.id, `the relay ended before its data connection came: ${e.why}`);
      const l = this.#live.get(e.id);
      if (!l) return true;
      this.#ended(e.id);
      if (e.reset) this.o.log(`relay ${l.what} reset: ${e.why}`);
      else this.o.log(this.o.counters.relayFinished(l.what, e.up, e.down));
      return true;
    }
    if (e.type === "end") {
      this.#drop(e.id, "the session ended before its data connection came");
      this.#ended(e.id);
      return false; // the session table logs it
    }
    return false;
  }

  #ended(id: number): void {
    const l = this.#live.get(id);
    if (!l) return;
    this.#live.delete(id);
    this.o.counters.relayClosed();
    this.#putPort(l.c.srcIp, l.c.srcPort);
  }

  /** The far end: our own listener, or a session to the peer router responsible for the destination. */
  #nextHop(c: ConnectBody, what: string): Promise<Hop | Refusal> {
    if (contains(this.o.subnet, c.dstIp)) return this.#dialListener(c);
    return this.o.sessions.open(c, what);
  }

  /**
   * Has the data plane dial the real listener registered for the destination (in our subnet) and
   * write a RELAYED ticket to it. A listener refusing the connection is forgotten.
   */
  async #dialListener(c: ConnectBody): Promise<Hop | Refusal> {
    const table = this.o.table();
    const l = table.listener(c.dstIp, c.dstPort);
    if (!l) {
      return table.leases.has(c.dstIp)
        ? { status: Status.ECONNREFUSED, why: "no listener on that port" }
        : { status: Status.EHOSTUNREACH, why: "address not leased" };
    }
    const id = this.o.sessions.nextId();
    const ready = new Promise<{ status: number; errno: number }>((r) => this.#dialing.set(id, r));
    this.o.dp().relayDial(id, l.realHost, l.realPort, unhex(l.id), c);
    const r = await ready;
    if (r.status === Status.ETIMEDOUT) return { status: Status.ETIMEDOUT, why: `connecting to ${l.realHost}:${l.realPort} timed out` };
    if (r.status !== Status.OK) {
      table.forget(c.dstIp, c.dstPort);
      return { status: Status.ECONNREFUSED, why: `listener gone at ${l.realHost}:${l.realPort}: errno ${r.errno}` };
    }
    return { relay: id, via: `listener ${l.realHost}:${l.realPort}` };
  }

  /** Drops every issued ticket (router shutdown: the data plane ends their far ends). */
  close(): void {
    for (const id of [...this.#pending.keys()]) this.#drop(id, "the router is stopping");
  }
}
