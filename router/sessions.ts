/**
 * The resumable sessions of one router with its peer routers (the byte stream of one session is
 * router/session.ts): opening one to the peer router of a destination (a router link, HELLO and
 * CHALLENGE, then SESSION on it: no replay cache needed),
 * carrying a virtual connection in one as initiator or responder, the table of live sessions and
 * of those that ended cleanly (for a RESUME that comes late), answering a peer's RESUME, and
 * redialing the peer when our link breaks.
 */
import { be64, concat, hex, u64 } from "../common/bytes.ts";
import { type ConnSet, TimeoutError } from "../common/io.ts";
import type { RouterCounters } from "./counters.ts";
import { exchange, type Link, LinkError, openLink } from "./link.ts";
import type { Hop, Refusal } from "./relay.ts";
import { type Route, routeFor } from "./routes.ts";
import { type Redial, Session, type SessionConfig, SessionGone } from "./session.ts";
import { type ConnectBody, encodeConnect, type Frame, FrameError, FrameType, randomId, Role, Status, statusName } from "./wire.ts";

/** How long a session that ended cleanly is remembered for a late RESUME, ms. */
const COMPLETED_KEEP_MS = 600_000;

/** A hop to a peer router: the connection is the first link of a new session. */
export interface PeerHop extends Hop {
  session: { id: Uint8Array; redial: Redial };
}

/** What the sessions of a router need from it. */
export interface SessionTableOptions {
  routes: Route[];
  key: Uint8Array;
  timeoutMs: number;
  cfg: SessionConfig;
  counters: RouterCounters;
  /** The router's open connections: new links join them. */
  conns: ConnSet;
  log: (line: string) => void;
}

/** The sessions of one router. */
export class SessionTable {
  #live = new Map<string, Session>();
  /** Sessions that ended cleanly, by id: their final r_bytes, for a RESUME that comes late. */
  #completed = new Map<string, { recv: number; at: number }>();

  constructor(private readonly o: SessionTableOptions) {}

  /**
   * Opens the first link of a session to the peer router responsible for the destination; the
   * peer must answer OK (it has reached the real listener) first.
   */
  async dial(c: ConnectBody): Promise<PeerHop | Refusal> {
    const { key, timeoutMs } = this.o;
    const route = routeFor(this.o.routes, c.dstIp);
    if (!route) return { status: Status.ENETUNREACH, why: "no route to its subnet" };
    const via = `${route.host}:${route.port}`;
    let link: Link;
    try {
      link = await openLink(route, key, { role: Role.ROUTER, timeoutMs });
    } catch (e) {
      const status = e instanceof LinkError && e.kind === "timeout" ? Status.ETIMEDOUT : Status.ENETUNREACH;
      return { status, why: (e as Error).message };
    }
    const id = randomId(); // a fresh random session id
    try {
      const reply = await exchange(link, FrameType.SESSION, concat(id, encodeConnect(c)), timeoutMs);
      if (reply.status !== Status.OK) {
        link.close();
        return { status: reply.status, why: `peer router ${via} answered ${statusName(reply.status)}` };
      }
      return { conn: link.conn, via: `peer router ${via}`, session: { id, redial: () => this.#redial(route, id) } };
    } catch (e) {
      link.close(); // may be closed by the deadline already
      const status = e instanceof TimeoutError ? Status.ETIMEDOUT : Status.ENETUNREACH;
      return { status, why: `peer router ${via}: ${(e as Error).message}` };
    }
  }

  /** Carries a virtual connection as the initiator: `app` is our client, `hop` the first link. */
  async initiate(hop: PeerHop, app: Deno.TcpConn, what: string): Promise<void> {
    const session = new Session(hop.session.id, "initiator", app, this.o.cfg, this.o.log, hop.session.redial);
    session.attach(hop.conn, 0);
    await this.#run(session, what);
  }

  /** Carries a virtual connection as the responder: `link` is the initiating router's, `app` the server. */
  async respond(id: Uint8Array, link: Deno.TcpConn, app: Deno.TcpConn, what: string): Promise<void> {
    const session = new Session(id, "responder", app, this.o.cfg, this.o.log);
    session.attach(link, 0);
    await this.#run(session, what);
  }

  /** Resets every live session (router shutdown). */
  abortAll(why: string): void {
    for (const s of this.#live.values()) s.abort(why);
  }

  async #run(session: Session, what: string): Promise<void> {
    const key = hex(session.id);
    this.#live.set(key, session);
    this.o.counters.sessionStarted(session);
    const clean = await session.finished;
    this.#live.delete(key);
    if (clean) this.#completed.set(key, { recv: session.recv, at: Date.now() });
    for (const [k, v] of this.#completed) if (Date.now() - v.at > COMPLETED_KEEP_MS) this.#completed.delete(k);
    for (const line of this.o.counters.sessionEnded(session, clean, what)) this.o.log(line);
  }

  /** RESUME from the initiating router on a router link: reattach the session's new link. */
  async resume(link: Link, frame: Frame, peer: string): Promise<void> {
    const { conns, log } = this.o;
    if (frame.body.length !== 24) {
      log(`bad RESUME from ${peer}`);
      await link.reply(frame.reqId, Status.EINVAL).catch(() => {});
      link.close();
      return;
    }
    const key = hex(frame.body.subarray(0, 16));
    const peerRecv = u64(frame.body, 16);
    const session = this.#live.get(key);
    const done = this.#completed.get(key);
    if (!session) {
      const status = done ? Status.OK : Status.ENOENT;
      log(`resume of ${done ? "finished" : "unknown"} session ${key.slice(0, 12)} from ${peer}`);
      const data = done ? concat(be64(done.recv), new Uint8Array([1])) : undefined;
      await link.reply(frame.reqId, status, data).catch(() => {});
      await link.flushed();
      link.close();
      return;
    }
    const recv = session.detach(); // the old link delivers nothing more once we answer
    try {
      await link.reply(frame.reqId, Status.OK, concat(be64(recv), new Uint8Array([0])));
    } catch {
      link.close();
      return;
    }
    conns.add(link.conn);
    session.reconnects++;
    session.attach(link.conn, peerRecv);
  }

  /** Reconnects to the peer router for a session (a new router link) and resumes it. */
  async #redial(route: Route, id: Uint8Array): Promise<{ link: Deno.TcpConn; peerRecv: number }> {
    const session = this.#live.get(hex(id));
    if (!session) throw new SessionGone("Session already ended");
    const link = await openLink(route, this.o.key, { role: Role.ROUTER, timeoutMs: this.o.timeoutMs });
    try {
      const reply = await exchange(link, FrameType.RESUME, concat(id, be64(session.recv)), this.o.timeoutMs);
      if (reply.status === Status.ENOENT) throw new SessionGone("Peer router lost the session");
      if (reply.status !== Status.OK || reply.data.length !== 9) throw new FrameError(`RESUME refused: ${statusName(reply.status)}`);
      const peerRecv = u64(reply.data, 0);
      if (reply.data[8] === 1) {
        link.close();
        if (peerRecv === session.sent) throw new SessionGone("Peer finished the session cleanly meanwhile");
        throw new SessionGone("Peer finished the session without all our bytes");
      }
      this.o.conns.add(link.conn);
      return { link: link.conn, peerRecv };
    } catch (e) {
      link.close();
      throw e;
    }
  }
}
