/**
 * The resumable sessions of one router with its peer routers (the byte stream of one session is
 * router/session.ts): opening one to the peer router of a destination (the SESSION handshake),
 * carrying a virtual connection in one as initiator or responder, the table of live sessions and
 * of those that ended cleanly (for a RESUME that comes late), answering a peer's RESUME, and
 * redialing the peer when our link breaks.
 */
import { be64, concat, hex, u64 } from "../common/bytes.ts";
import { closeQuietly, type ConnSet, TimeoutError } from "../common/io.ts";
import { dialRouter } from "./client.ts";
import type { RouterCounters } from "./counters.ts";
import { exchange, writeReply } from "./frame_io.ts";
import type { Hop, Refusal } from "./relay.ts";
import { type Route, routeFor } from "./routes.ts";
import { type Redial, Session, type SessionConfig, SessionGone } from "./session.ts";
import { type ConnectBody, encodeConnect, type Frame, FrameError, FrameType, newNonce, Status, statusName } from "./wire.ts";

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
    let conn: Deno.TcpConn;
    try {
      conn = await dialRouter(route, timeoutMs);
    } catch (e) {
      return { status: Status.ENETUNREACH, why: (e as Error).message };
    }
    const id = newNonce(); // a fresh random session id
    try {
      const body = concat(encodeConnect(c), id);
      const reply = await exchange(conn, key, FrameType.SESSION, body, timeoutMs, "Peer router sent a bad reply");
      const status = reply.body[0] ?? Status.EINVAL;
      if (status !== Status.OK) {
        conn.close();
        return { status, why: `peer router ${via} answered ${statusName(status)}` };
      }
      return { conn, via: `peer router ${via}`, session: { id, redial: () => this.#redial(route, id) } };
    } catch (e) {
      closeQuietly(conn); // may be closed by the deadline already
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

  /** RESUME from the initiating router: reattach the session's new link. */
  async resume(conn: Deno.TcpConn, frame: Frame, peer: string): Promise<void> {
    const { key: netKey, conns, log } = this.o;
    if (frame.body.length !== 24) {
      log(`bad RESUME from ${peer}`);
      await writeReply(conn, netKey, frame, Status.EINVAL).catch(() => {});
      conns.close(conn);
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
      await writeReply(conn, netKey, frame, status, data).catch(() => {});
      conns.close(conn);
      return;
    }
    const recv = session.detach(); // the old link delivers nothing more once we answer
    try {
      await writeReply(conn, netKey, frame, Status.OK, concat(be64(recv), new Uint8Array([0])));
    } catch {
      conns.close(conn);
      return;
    }
    conns.add(conn);
    conn.setNoDelay(true);
    session.reconnects++;
    session.attach(conn, peerRecv);
  }

  /** Reconnects to the peer router for a session and resumes it. */
  async #redial(route: Route, id: Uint8Array): Promise<{ link: Deno.TcpConn; peerRecv: number }> {
    const session = this.#live.get(hex(id));
    if (!session) throw new SessionGone("Session already ended");
    const conn = await dialRouter(route, this.o.timeoutMs);
    try {
      const body = concat(id, be64(session.recv));
      const reply = await exchange(conn, this.o.key, FrameType.RESUME, body, this.o.timeoutMs, "Bad RESUME reply");
      if (reply.body[0] === Status.ENOENT) throw new SessionGone("Peer router lost the session");
      if (reply.body[0] !== Status.OK || reply.body.length !== 10) throw new FrameError(`RESUME refused: ${statusName(reply.body[0])}`);
      const peerRecv = u64(reply.body, 1);
      if (reply.body[9] === 1) {
        conn.close();
        if (peerRecv === session.sent) throw new SessionGone("Peer finished the session cleanly meanwhile");
        throw new SessionGone("Peer finished the session without all our bytes");
      }
      conn.setNoDelay(true);
      this.o.conns.add(conn);
      return { link: conn, peerRecv };
    } catch (e) {
      closeQuietly(conn);
      throw e;
    }
  }
}
