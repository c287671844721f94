/**
 * The UVPN subnet router (uvpn_proxy's engine): accepts authenticated frames, leases virtual
 * addresses of its subnet, records listeners, and builds relay paths client → home router →
 * peer router → server as in the paper's section 3.2.
 */
import { be64, concat, hex, sameBytes, u16, u32, u64 } from "../common/bytes.ts";
import { TimeoutError, withTimeout, writeAll } from "../common/io.ts";
import { dialRouter } from "./client.ts";
import { RouterCounters, type RouterStats } from "./counters.ts";
import { readFrame } from "./frame_io.ts";
import { contains, formatIp, formatSubnet, type Subnet } from "./ipv4.ts";
import { LeaseTable } from "./leases.ts";
import { NameService } from "./names.ts";
import { relay } from "./relay.ts";
import { UdpRelay } from "./udp.ts";
import { defaultSessionConfig, Session, SessionConfig, SessionGone } from "./session.ts";
import { type Route, routeFor } from "./routes.ts";
import {
  type ConnectBody,
  decodeConnect,
  encodeConnect,
  encodeFrame,
  encodeReply,
  type Frame,
  FrameError,
  FrameType,
  ipBytes,
  newNonce,
  ReplayCache,
  Status,
  statusName,
} from "./wire.ts";

/** How a router is set up. */
export interface RouterOptions {
  routes: Route[];
  /** The route entry this router serves. */
  self: Route;
  key: Uint8Array;
  listen: { hostname: string; port: number };
  stateFile: string;
  /** Deadline for connects and handshakes, ms. */
  timeoutMs?: number;
  log?: (line: string) => void;
  /** Resumable-session knobs (outage limit, retries, spool); defaults from defaultSessionConfig. */
  session?: Partial<SessionConfig>;
}

/** One running subnet router. */
export class Router {
  /** Every counter of this router; `--status` and the counter log lines come from it. */
  readonly counters = new RouterCounters();
  readonly subnet: Subnet;
  #listener?: Deno.TcpListener;
  #table!: LeaseTable;
  #replay = new ReplayCache();
  #timeoutMs: number;
  #log: (line: string) => void;
  #conns = new Set<Deno.Conn>();
  #sessions = new Map<string, Session>();
  /** Sessions that ended cleanly, by id: their final r_bytes, for a RESUME that comes late. */
  #completed = new Map<string, { recv: number; at: number }>();
  #sessionCfg: SessionConfig;
  #udp: UdpRelay;
  #names: NameService;

  constructor(private readonly opts: RouterOptions) {
    this.subnet = opts.self.subnet;
    this.#timeoutMs = opts.timeoutMs ?? 10_000;
    this.#log = opts.log ?? ((line) => console.error(`uvpn_proxy: ${line}`));
    this.#names = new NameService(() => this.#table, opts.routes, opts.key, this.#timeoutMs, this.#log);
    this.#udp = new UdpRelay(opts.key, this.subnet, opts.routes, this.#timeoutMs, this.#log, this.counters.udp);
    this.#sessionCfg = { ...defaultSessionConfig(Deno.env.get("TMPDIR") ?? "/tmp"), ...opts.session };
  }

  /** Loads state, binds the port and starts serving in the background. */
  async start(): Promise<void> {
    this.#table = await LeaseTable.open(this.subnet, this.opts.stateFile);
    this.#listener = Deno.listen({ ...this.opts.listen, transport: "tcp" });
    try {
      await this.#udp.start(this.opts.listen.hostname, this.opts.listen.port);
    } catch (e) {
      this.#listener.close();
      throw e;
    }
    this.#log(
      `serving subnet ${formatSubnet(this.subnet)} (route file line ${this.opts.self.line}) on ` +
        `${this.opts.listen.hostname}:${this.opts.listen.port}; ${this.#table.leases.size} lease(s) restored`,
    );
    this.#serve(this.#listener);
  }

  /** The relay and refusal counters (the same object as `counters`). */
  get stats(): RouterStats {
    return this.counters;
  }

  /** The leases table (read-only use). */
  get table(): LeaseTable {
    return this.#table;
  }

  async #serve(listener: Deno.TcpListener): Promise<void> {
    try {
      for await (const conn of listener) {
        this.#track(conn);
        this.#handle(conn).catch((e) => this.#log(`connection from ${peerOf(conn)} failed: ${(e as Error).message}`));
      }
    } catch (e) {
      if (!(e instanceof Deno.errors.BadResource)) this.#log(`accept failed: ${(e as Error).message}`);
    }
  }

  #track(conn: Deno.Conn): void {
    this.#conns.add(conn);
  }

  #untrack(...conns: Deno.Conn[]): void {
    for (const c of conns) {
      this.#conns.delete(c);
      try {
        c.close();
      } catch { /* already closed */ }
    }
  }

  /** Stops listening and closes every connection. */
  close(): void {
    try {
      this.#listener?.close();
    } catch { /* closed */ }
    for (const s of this.#sessions.values()) s.abort("router shutting down");
    this.#udp.close();
    this.#untrack(...this.#conns);
  }

  async #handle(conn: Deno.TcpConn): Promise<void> {
    conn.setNoDelay(true);
    const peer = peerOf(conn);
    let frame: Frame;
    try {
      frame = await readFrame(conn, this.opts.key, this.#timeoutMs);
      this.#replay.check(frame);
    } catch (e) {
      this.counters.refused++;
      const why = e instanceof FrameError || e instanceof TimeoutError ? e.message : String(e);
      this.#log(`refused ${peer}: ${why}`);
      this.#untrack(conn);
      return;
    }
    if (frame.type === FrameType.CONNECT || frame.type === FrameType.SESSION) {
      await this.#connect(conn, frame, peer);
      return;
    }
    if (frame.type === FrameType.RESUME) {
      await this.#resume(conn, frame, peer);
      return;
    }
    let reply: Uint8Array;
    try {
      reply = await this.#control(frame, conn.remoteAddr.hostname);
    } catch (e) {
      this.#log(`bad request from ${peer}: ${(e as Error).message}`);
      reply = encodeReply(Status.EINVAL);
    }
    try {
      await writeAll(conn, encodeFrame(this.opts.key, FrameType.REPLY, frame.nonce, reply));
    } finally {
      this.#untrack(conn);
    }
  }

  /** Answers a control request; returns the REPLY body. */
  async #control(frame: Frame, holder: string): Promise<Uint8Array> {
    const b = frame.body;
    const table = this.#table;
    switch (frame.type) {
      case FrameType.LEASE: {
        const nameLen = b[0] ?? 0;
        const name = new TextDecoder().decode(b.subarray(1, 1 + nameLen));
        if (b.length !== 1 + nameLen || nameLen > 63 || !/^[A-Za-z0-9-]*$/.test(name)) {
          throw new FrameError(`Bad LEASE body`);
        }
        const taken = table.byName(name);
        if (taken) {
          this.#log(`refused a lease for ${holder}: name already leased to ${formatIp(taken.ip)}: ${name}`);
          return encodeReply(Status.EADDRINUSE);
        }
        const lease = await table.lease(holder, name);
        if (!lease) {
          this.#log(`no free address left in ${formatSubnet(this.subnet)} for ${holder}`);
          return encodeReply(Status.EADDRNOTAVAIL);
        }
        this.#log(`leased ${formatIp(lease.ip)} to ${holder}${name ? ` as ${name}` : ""}`);
        return encodeReply(Status.OK, ipBytes(lease.ip));
      }
      case FrameType.RELEASE: {
        if (b.length !== 4) throw new FrameError("Bad RELEASE body");
        const ip = u32(b, 0);
        const ok = await table.release(ip);
        if (ok) this.#log(`released ${formatIp(ip)}`);
        return encodeReply(ok ? Status.OK : Status.ENOENT);
      }
      case FrameType.LIST: {
        const text = [...table.leases.values()]
          .map((l) => `${formatIp(l.ip)}\t${l.holder}\t${l.name}\n`).join("");
        return encodeReply(Status.OK, new TextEncoder().encode(text).subarray(0, 0xfffe));
      }
      case FrameType.LISTEN: {
        if (b.length !== 8) throw new FrameError("Bad LISTEN body");
        const ip = u32(b, 0), vport = u16(b, 4), realPort = u16(b, 6);
        if (!contains(this.subnet, ip)) return encodeReply(Status.EINVAL);
        if (!table.leases.has(ip)) return encodeReply(Status.EADDRNOTAVAIL);
        await table.listen(ip, vport, { realHost: holder, realPort });
        this.#log(`listener ${formatIp(ip)}:${vport} is at ${holder}:${realPort}`);
        return encodeReply(Status.OK);
      }
      case FrameType.UDPBIND: {
        if (b.length !== 8) throw new FrameError("Bad UDPBIND body");
        const ip = u32(b, 0), vport = u16(b, 4), realPort = u16(b, 6);
        if (!contains(this.subnet, ip)) return encodeReply(Status.EINVAL);
        if (realPort === 0) return encodeReply(this.#udp.bind(ip, vport, holder, 0) ? Status.OK : Status.ENOENT);
        if (!table.leases.has(ip)) return encodeReply(Status.EADDRNOTAVAIL);
        this.#udp.bind(ip, vport, holder, realPort);
        return encodeReply(Status.OK);
      }
      case FrameType.UNLISTEN: {
        if (b.length !== 6) throw new FrameError("Bad UNLISTEN body");
        const ok = await table.unlisten(u32(b, 0), u16(b, 4));
        return encodeReply(ok ? Status.OK : Status.ENOENT);
      }
      case FrameType.INFO: {
        const subnets = [this.subnet, ...this.opts.routes.map((r) => r.subnet)];
        const out = new Uint8Array(subnets.length * 5);
        subnets.forEach((s, i) => {
          out.set(ipBytes(s.net), i * 5);
          out[i * 5 + 4] = s.len;
        });
        return encodeReply(Status.OK, out);
      }
      case FrameType.NAME:
        return await this.#names.reply(b);
      case FrameType.STATUS:
        return encodeReply(Status.OK, new TextEncoder().encode(this.statusText()).subarray(0, 0xfffe));
      default:
        throw new FrameError(`Unexpected frame type: ${frame.type}`);
    }
  }

  /** Handles CONNECT: opens the next hop, replies, then relays. */
  async #connect(up: Deno.TcpConn, frame: Frame, peer: string): Promise<void> {
    let c: ConnectBody;
    const sessionId = frame.type === FrameType.SESSION ? frame.body.slice(16, 32) : undefined;
    try {
      if (sessionId && sessionId.length !== 16) throw new FrameError("Bad SESSION body");
      c = decodeConnect(frame.body.subarray(0, 16));
      if (c.proto === 17 && !sessionId) {
        // A peer router's UDP carrier link (docs/PROTOCOL.md, "Datagrams").
        await this.#reply(up, frame, Status.OK);
        await this.#udp.serveCarrier(up, peer);
        this.#untrack(up);
        return;
      }
      if (c.proto !== 6) throw new FrameError(`Unsupported protocol: ${c.proto}`);
    } catch (e) {
      this.#log(`bad CONNECT from ${peer}: ${(e as Error).message}`);
      await this.#reply(up, frame, Status.EINVAL);
      this.#untrack(up);
      return;
    }
    const what = `${formatIp(c.srcIp)}:${c.srcPort} -> ${formatIp(c.dstIp)}:${c.dstPort}`;
    const hop = await this.#nextHop(c).catch((e) => ({ status: Status.ENETUNREACH, why: (e as Error).message }));
    if ("why" in hop) {
      this.#log(`connect ${what} from ${peer}: ${statusName(hop.status)} (${hop.why})`);
      await this.#reply(up, frame, hop.status);
      this.#untrack(up);
      return;
    }
    const down = hop.conn;
    this.#track(down);
    try {
      await this.#reply(up, frame, Status.OK);
    } catch (e) {
      this.#log(`connect ${what}: client went away (${(e as Error).message})`);
      this.#untrack(up, down);
      return;
    }
    this.counters.relayOpened();
    this.#log(`relay ${what} open via ${hop.via}`);
    if (sessionId || hop.session) {
      // Across the WAN: a resumable session. The responder's app side is `down` (the server),
      // the initiator's is `up` (the client).
      const id = sessionId ?? hop.session!.id;
      const session = sessionId
        ? new Session(id, "responder", down, this.#sessionCfg, this.#log)
        : new Session(id, "initiator", up, this.#sessionCfg, this.#log, hop.session!.redial);
      session.attach(sessionId ? up : down, 0);
      await this.#runSession(session, what);
      this.counters.relayClosed();
      this.#untrack(up, down);
      return;
    }
    try {
      const r = await relay(up, down);
      this.#log(this.counters.relayFinished(what, r.aToB, r.bToA));
    } catch (e) {
      this.#log(`relay ${what} reset: ${(e as Error).message}`);
    } finally {
      this.counters.relayClosed();
      this.#untrack(up, down);
    }
  }

  async #reply(conn: Deno.TcpConn, frame: Frame, status: number, data?: Uint8Array): Promise<void> {
    await writeAll(conn, encodeFrame(this.opts.key, FrameType.REPLY, frame.nonce, encodeReply(status, data)));
  }

  async #runSession(session: Session, what: string): Promise<void> {
    const key = hex(session.id);
    this.#sessions.set(key, session);
    this.counters.sessionStarted(session);
    const clean = await session.finished;
    this.#sessions.delete(key);
    if (clean) this.#completed.set(key, { recv: session.recv, at: Date.now() });
    for (const [k, v] of this.#completed) if (Date.now() - v.at > 600_000) this.#completed.delete(k);
    for (const line of this.counters.sessionEnded(session, clean, what)) this.#log(line);
  }

  /** RESUME from the initiating router: reattach the session's new link. */
  async #resume(conn: Deno.TcpConn, frame: Frame, peer: string): Promise<void> {
    if (frame.body.length !== 24) {
      this.#log(`bad RESUME from ${peer}`);
      await this.#reply(conn, frame, Status.EINVAL).catch(() => {});
      this.#untrack(conn);
      return;
    }
    const key = hex(frame.body.subarray(0, 16));
    const peerRecv = u64(frame.body, 16);
    const session = this.#sessions.get(key);
    const done = this.#completed.get(key);
    if (!session) {
      const status = done ? Status.OK : Status.ENOENT;
      this.#log(`resume of ${done ? "finished" : "unknown"} session ${key.slice(0, 12)} from ${peer}`);
      await this.#reply(conn, frame, status, done ? concat(be64(done.recv), new Uint8Array([1])) : undefined).catch(() => {});
      this.#untrack(conn);
      return;
    }
    const recv = session.detach(); // the old link delivers nothing more once we answer
    try {
      await this.#reply(conn, frame, Status.OK, concat(be64(recv), new Uint8Array([0])));
    } catch {
      this.#untrack(conn);
      return;
    }
    this.#track(conn);
    conn.setNoDelay(true);
    session.reconnects++;
    session.attach(conn, peerRecv);
  }

  /** Text for `uvpn_proxy --status`: totals, then one line per live session. */
  statusText(): string {
    return this.counters.statusText(this.subnet, this.#table.leases.size, this.#udp.bindings);
  }

  /**
   * The next hop of a virtual connection: the real listener when the destination is in our
   * subnet, else the peer router responsible for it (which must answer OK first).
   */
  async #nextHop(c: ConnectBody): Promise<Hop | { status: number; why: string }> {
    if (contains(this.subnet, c.dstIp)) return await this.#dialListener(c);
    const route = routeFor(this.opts.routes, c.dstIp);
    if (!route) return { status: Status.ENETUNREACH, why: "no route to its subnet" };
    const via = `${route.host}:${route.port}`;
    let conn: Deno.TcpConn;
    try {
      conn = await dialRouter(route, this.#timeoutMs);
    } catch (e) {
      return { status: Status.ENETUNREACH, why: (e as Error).message };
    }
    const nonce = newNonce();
    const id = newNonce(); // a fresh random session id
    try {
      await writeAll(conn, encodeFrame(this.opts.key, FrameType.SESSION, nonce, concat(encodeConnect(c), id)));
      const reply = await readFrame(conn, this.opts.key, this.#timeoutMs);
      const status = reply.body[0] ?? Status.EINVAL;
      if (reply.type !== FrameType.REPLY || !sameBytes(reply.nonce, nonce)) {
        throw new FrameError("Peer router sent a bad reply");
      }
      if (status !== Status.OK) {
        conn.close();
        return { status, why: `peer router ${via} answered ${statusName(status)}` };
      }
      return { conn, via: `peer router ${via}`, session: { id, redial: () => this.#redial(route, id) } };
    } catch (e) {
      try {
        conn.close();
      } catch { /* closed by the deadline */ }
      const status = e instanceof TimeoutError ? Status.ETIMEDOUT : Status.ENETUNREACH;
      return { status, why: `peer router ${via}: ${(e as Error).message}` };
    }
  }

  /** Reconnects to the peer router for a session and resumes it. */
  async #redial(route: Route, id: Uint8Array): Promise<{ link: Deno.TcpConn; peerRecv: number }> {
    const session = this.#sessions.get(hex(id));
    if (!session) throw new SessionGone("Session already ended");
    const conn = await dialRouter(route, this.#timeoutMs);
    const nonce = newNonce();
    try {
      await writeAll(conn, encodeFrame(this.opts.key, FrameType.RESUME, nonce, concat(id, be64(session.recv))));
      const reply = await readFrame(conn, this.opts.key, this.#timeoutMs);
      if (reply.type !== FrameType.REPLY || !sameBytes(reply.nonce, nonce)) throw new FrameError("Bad RESUME reply");
      if (reply.body[0] === Status.ENOENT) throw new SessionGone("Peer router lost the session");
      if (reply.body[0] !== Status.OK || reply.body.length !== 10) throw new FrameError(`RESUME refused: ${statusName(reply.body[0])}`);
      const peerRecv = u64(reply.body, 1);
      if (reply.body[9] === 1) {
        conn.close();
        if (peerRecv === session.sent) throw new SessionGone("Peer finished the session cleanly meanwhile");
        throw new SessionGone("Peer finished the session without all our bytes");
      }
      conn.setNoDelay(true);
      this.#track(conn);
      return { link: conn, peerRecv };
    } catch (e) {
      try {
        conn.close();
      } catch { /* closed */ }
      throw e;
    }
  }

  async #dialListener(c: ConnectBody): Promise<Hop | { status: number; why: string }> {
    const l = this.#table.listener(c.dstIp, c.dstPort);
    if (!l) {
      return this.#table.leases.has(c.dstIp)
        ? { status: Status.ECONNREFUSED, why: "no listener on that port" }
        : { status: Status.EHOSTUNREACH, why: "address not leased" };
    }
    let conn: Deno.TcpConn;
    try {
      conn = await withTimeout(
        Deno.connect({ hostname: l.realHost, port: l.realPort }),
        this.#timeoutMs,
        `connecting to ${l.realHost}:${l.realPort}`,
      );
    } catch (e) {
      if (e instanceof TimeoutError) return { status: Status.ETIMEDOUT, why: e.message };
      await this.#table.unlisten(c.dstIp, c.dstPort);
      return { status: Status.ECONNREFUSED, why: `listener gone at ${l.realHost}:${l.realPort}: ${(e as Error).message}` };
    }
    conn.setNoDelay(true);
    try {
      await writeAll(conn, encodeFrame(this.opts.key, FrameType.CONNECT, newNonce(), encodeConnect(c)));
    } catch (e) {
      conn.close();
      return { status: Status.ECONNREFUSED, why: (e as Error).message };
    }
    return { conn, via: `listener ${l.realHost}:${l.realPort}` };
  }
}

function peerOf(conn: Deno.Conn): string {
  const a = conn.remoteAddr as Deno.NetAddr;
  return `${a.hostname}:${a.port}`;
}

/** The next hop of a virtual connection; `session` when it crosses to a peer router. */
interface Hop {
  conn: Deno.TcpConn;
  via: string;
  session?: { id: Uint8Array; redial: () => Promise<{ link: Deno.TcpConn; peerRecv: number }> };
}
