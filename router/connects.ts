/**
 * Virtual TCP connections through a router (docs/PROTOCOL.md, "Connections"): CONNECT on a
 * client link (a virtual source port assigned when asked, the far end reached first: the local
 * listener, with a RELAYED ticket written to it, or a session to the peer router of the
 * destination), the DATA ticket issued in the answer and kept for 10 s, the data connection
 * that presents it (checked: MAC, issued here to that host, bound to the connection's port,
 * single use), and the join of the two; and on a router link, a peer's SESSION toward one of our
 * listeners. The relays themselves are router/relay.ts and router/session.ts.
 */
import { hex, unhex } from "../common/bytes.ts";
import { type ConnSet, TimeoutError, withTimeout, writeAll } from "../common/io.ts";
import type { RouterCounters } from "./counters.ts";
import { contains, formatIp, parseIp, type Subnet } from "./ipv4.ts";
import type { LeaseTable } from "./leases.ts";
import type { Link } from "./link.ts";
import { type Hop, type Refusal, relayLocal } from "./relay.ts";
import type { PeerHop, SessionTable } from "./sessions.ts";
import {
  type ConnectBody,
  decodeConnect,
  encodeConnectAnswer,
  encodeTicket,
  type Frame,
  FrameError,
  randomId,
  Status,
  statusName,
  type Ticket,
  TicketKind,
} from "./wire.ts";

/** How long an issued DATA ticket waits for its data connection, ms. */
export const DATA_TICKET_MS = 10_000;

/** What the connections of a router need from it. */
export interface ConnectsOptions {
  subnet: Subnet;
  key: Uint8Array;
  timeoutMs: number;
  table: () => LeaseTable;
  sessions: SessionTable;
  counters: RouterCounters;
  conns: ConnSet;
  log: (line: string) => void;
  /** Counts and logs (rate-limited) a refused connection. */
  refuse: (peer: string, why: string) => void;
}

interface Pending {
  hop: Hop | PeerHop;
  c: ConnectBody;
  host: string;
  issued: number;
  timer: ReturnType<typeof setTimeout>;
  what: string;
}

const ZERO_ID = new Uint8Array(8);
const SESSION_RST = new Uint8Array([4, 0, 0, 0, 0]); // router/session.ts framing: RST, length 0

/** The virtual connections of one router. */
export class Connects {
  #pending = new Map<string, Pending>();
  /** Virtual source ports in use, per virtual source address (ports may repeat: counted). */
  #ports = new Map<number, Map<number, number>>();

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
    const c = { ...req, srcPort: this.#takePort(req.srcIp, req.srcPort) };
    const what = `${formatIp(c.srcIp)}:${c.srcPort} -> ${formatIp(c.dstIp)}:${c.dstPort}`;
    const hop = await this.#nextHop(c).catch((e): Refusal => ({ status: Status.ENETUNREACH, why: (e as Error).message }));
    if ("why" in hop) {
      this.#putPort(c.srcIp, c.srcPort);
      this.o.log(`connect ${what} from ${link.peer}: ${statusName(hop.status)} (${hop.why})`);
      await link.reply(reqId, hop.status);
      return;
    }
    this.o.conns.add(hop.conn);
    const ticketId = randomId();
    const issued = Date.now();
    const id = hex(ticketId);
    const local = link.conn.localAddr as Deno.NetAddr;
    const realIp = parseIp(local.hostname.replace(/^::ffff:/, "")) ?? 0;
    this.#pending.set(id, {
      hop,
      c,
      host: link.peerHost,
      issued,
      what,
      timer: setTimeout(() => this.#expire(id), DATA_TICKET_MS),
    });
    const answer = encodeConnectAnswer({
      kind: TicketKind.DATA,
      realIp,
      realPort: local.port,
      srcPort: c.srcPort,
      listenerId: ZERO_ID,
      issued,
      ticketId,
    });
    await link.reply(reqId, Status.OK, answer).catch(() => this.#expire(id));
  }

  /** A DATA ticket nobody used in time: the far end is dropped. */
  #expire(id: string): void {
    const p = this.#pending.get(id);
    if (!p) return;
    this.#pending.delete(id);
    clearTimeout(p.timer);
    this.#putPort(p.c.srcIp, p.c.srcPort);
    this.o.log(`connect ${p.what}: no data connection within ${DATA_TICKET_MS / 1000} s; dropped`);
    if ("session" in p.hop) p.hop.conn.write(SESSION_RST).catch(() => {}).finally(() => this.o.conns.close(p.hop.conn));
    else this.o.conns.close(p.hop.conn);
  }

  /** A connection that began with a DATA ticket: checked, then joined to its far end. */
  async dataConnection(conn: Deno.TcpConn, t: Ticket, peer: string): Promise<void> {
    const id = hex(t.ticketId);
    const p = this.#pending.get(id);
    const remote = conn.remoteAddr as Deno.NetAddr;
    const why = t.kind !== TicketKind.DATA
      ? `ticket of kind ${t.kind} on the router's port`
      : !p
      ? "unknown or used DATA ticket"
      : p.host !== remote.hostname
      ? `DATA ticket issued to ${p.host}`
      : t.boundPort !== remote.port
      ? `DATA ticket bound to port ${t.boundPort}, not ${remote.port}`
      : t.issued !== p.issued || t.srcIp !== p.c.srcIp || t.srcPort !== p.c.srcPort || t.dstIp !== p.c.dstIp || t.dstPort !== p.c.dstPort
      ? "DATA ticket does not match its CONNECT"
      : null;
    if (why || !p) {
      this.o.refuse(peer, why ?? "bad ticket");
      this.o.conns.close(conn);
      return;
    }
    this.#pending.delete(id);
    clearTimeout(p.timer);
    this.o.counters.relayOpened();
    this.o.log(`relay ${p.what} open via ${p.hop.via}`);
    try {
      if ("session" in p.hop) await this.o.sessions.initiate(p.hop, conn, p.what);
      else await relayLocal(conn, p.hop.conn, p.what, this.o.counters, this.o.log);
    } finally {
      this.o.counters.relayClosed();
      this.#putPort(p.c.srcIp, p.c.srcPort);
      this.o.conns.close(conn, p.hop.conn);
    }
  }

  /** The far end: our own listener, or a session to the peer router responsible for the destination. */
  #nextHop(c: ConnectBody): Promise<Hop | PeerHop | Refusal> {
    if (contains(this.o.subnet, c.dstIp)) return this.#dialListener(c);
    return this.o.sessions.dial(c);
  }

  /**
   * Dials the real listener registered for the destination (in our subnet) and writes a RELAYED
   * ticket to it. A listener refusing the connection is forgotten.
   */
  async #dialListener(c: ConnectBody): Promise<Hop | Refusal> {
    const table = this.o.table();
    const l = table.listener(c.dstIp, c.dstPort);
    if (!l) {
      return table.leases.has(c.dstIp)
        ? { status: Status.ECONNREFUSED, why: "no listener on that port" }
        : { status: Status.EHOSTUNREACH, why: "address not leased" };
    }
    let conn: Deno.TcpConn;
    try {
      conn = await withTimeout(
        Deno.connect({ hostname: l.realHost, port: l.realPort }),
        this.o.timeoutMs,
        `connecting to ${l.realHost}:${l.realPort}`,
      );
    } catch (e) {
      if (e instanceof TimeoutError) return { status: Status.ETIMEDOUT, why: e.message };
      table.forget(c.dstIp, c.dstPort);
      return { status: Status.ECONNREFUSED, why: `listener gone at ${l.realHost}:${l.realPort}: ${(e as Error).message}` };
    }
    conn.setNoDelay(true);
    const ticket = encodeTicket(this.o.key, {
      kind: TicketKind.RELAYED,
      srcIp: c.srcIp,
      srcPort: c.srcPort,
      dstIp: c.dstIp,
      dstPort: c.dstPort,
      listenerId: unhex(l.id),
      boundPort: (conn.localAddr as Deno.NetAddr).port,
      issued: Date.now(),
      ticketId: randomId(),
    });
    try {
      await writeAll(conn, ticket);
    } catch (e) {
      conn.close();
      return { status: Status.ECONNREFUSED, why: (e as Error).message };
    }
    return { conn, via: `listener ${l.realHost}:${l.realPort}` };
  }

  /**
   * SESSION from a peer router on its link: our listener is dialed; after an OK answer the link
   * carries the session (router/session.ts) until it ends.
   */
  async peerSession(link: Link, f: Frame, peer: string): Promise<void> {
    let c: ConnectBody, sessionId: Uint8Array;
    try {
      if (f.body.length !== 30) throw new FrameError(`SESSION body must be 30 bytes: ${f.body.length}`);
      sessionId = f.body.slice(0, 16);
      c = decodeConnect(f.body.subarray(16));
      if (c.proto !== 6) throw new FrameError(`Unsupported protocol: ${c.proto}`);
    } catch (e) {
      this.o.log(`bad SESSION from ${peer}: ${(e as Error).message}`);
      await link.reply(f.reqId, Status.EINVAL).catch(() => {});
      link.close();
      return;
    }
    const what = `${formatIp(c.srcIp)}:${c.srcPort} -> ${formatIp(c.dstIp)}:${c.dstPort}`;
    const hop = contains(this.o.subnet, c.dstIp)
      ? await this.#dialListener(c)
      : { status: Status.ENETUNREACH, why: "not in this router's subnet" };
    if ("why" in hop) {
      this.o.log(`connect ${what} from ${peer}: ${statusName(hop.status)} (${hop.why})`);
      await link.reply(f.reqId, hop.status).catch(() => {});
      link.close();
      return;
    }
    this.o.conns.add(hop.conn);
    this.o.conns.add(link.conn);
    try {
      await link.reply(f.reqId, Status.OK);
    } catch (e) {
      this.o.log(`connect ${what}: peer router went away (${(e as Error).message})`);
      this.o.conns.close(link.conn, hop.conn);
      return;
    }
    this.o.counters.relayOpened();
    this.o.log(`relay ${what} open via ${hop.via}`);
    try {
      await this.o.sessions.respond(sessionId, link.conn, hop.conn, what);
    } finally {
      this.o.counters.relayClosed();
      this.o.conns.close(link.conn, hop.conn);
    }
  }

  /** Drops every issued ticket (router shutdown). */
  close(): void {
    for (const id of [...this.#pending.keys()]) this.#expire(id);
  }
}
