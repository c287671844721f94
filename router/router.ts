/**
 * The UVPN subnet router (uvpn_proxy's engine): accepts authenticated frames, answers control
 * requests (leases of virtual addresses in its subnet, listeners, UDP endpoints, names, status)
 * and dispatches each virtual connection to the part that carries it, building relay paths
 * client → home router → peer router → server as in the paper's section 3.2: a local relay to a
 * real listener (router/relay.ts), a resumable session to or from a peer router
 * (router/sessions.ts), or, for a peer's UDP carrier link, the UDP side (router/carrier.ts).
 */
import { u16, u32 } from "../common/bytes.ts";
import { closeQuietly, ConnSet, TimeoutError, writeAll } from "../common/io.ts";
import { acceptCarrier } from "./carrier.ts";
import { RouterCounters, type RouterStats } from "./counters.ts";
import { readFrame, writeReply } from "./frame_io.ts";
import { contains, formatIp, formatSubnet, type Subnet } from "./ipv4.ts";
import { LeaseTable } from "./leases.ts";
import { NameService } from "./names.ts";
import { dialListener, type Hop, type Refusal, relayLocal } from "./relay.ts";
import type { Route } from "./routes.ts";
import { defaultSessionConfig, type SessionConfig } from "./session.ts";
import { type PeerHop, SessionTable } from "./sessions.ts";
import { UdpRelay } from "./udp.ts";
import {
  type ConnectBody,
  decodeConnect,
  encodeFrame,
  encodeReply,
  type Frame,
  FrameError,
  FrameType,
  ipBytes,
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
  readonly counters: RouterCounters = new RouterCounters();
  readonly subnet: Subnet;
  #listener?: Deno.TcpListener;
  #table!: LeaseTable;
  #replay = new ReplayCache();
  #timeoutMs: number;
  #log: (line: string) => void;
  #conns = new ConnSet();
  #sessions: SessionTable;
  #udp: UdpRelay;
  #names: NameService;

  constructor(private readonly opts: RouterOptions) {
    this.subnet = opts.self.subnet;
    this.#timeoutMs = opts.timeoutMs ?? 10_000;
    this.#log = opts.log ?? ((line) => console.error(`uvpn_proxy: ${line}`));
    this.#names = new NameService(() => this.#table, opts.routes, opts.key, this.#timeoutMs, this.#log);
    this.#udp = new UdpRelay(opts.key, this.subnet, opts.routes, this.#timeoutMs, this.#log, this.counters.udp);
    this.#sessions = new SessionTable({
      routes: opts.routes,
      key: opts.key,
      timeoutMs: this.#timeoutMs,
      cfg: { ...defaultSessionConfig(Deno.env.get("TMPDIR") ?? "/tmp"), ...opts.session },
      counters: this.counters,
      conns: this.#conns,
      log: this.#log,
    });
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
        this.#conns.add(conn);
        this.#handle(conn).catch((e) => this.#log(`connection from ${peerOf(conn)} failed: ${(e as Error).message}`));
      }
    } catch (e) {
      if (!(e instanceof Deno.errors.BadResource)) this.#log(`accept failed: ${(e as Error).message}`);
    }
  }

  /** Stops listening and closes every connection. */
  close(): void {
    closeQuietly(this.#listener);
    this.#sessions.abortAll("router shutting down");
    this.#udp.close();
    this.#conns.closeAll();
  }

  /** Reads and checks the first frame of a connection, then dispatches it. */
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
      this.#conns.close(conn);
      return;
    }
    if (frame.type === FrameType.CONNECT || frame.type === FrameType.SESSION) {
      await this.#connect(conn, frame, peer);
      return;
    }
    if (frame.type === FrameType.RESUME) {
      await this.#sessions.resume(conn, frame, peer);
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
      this.#conns.close(conn);
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

  /**
   * Handles CONNECT and SESSION: a peer's UDP carrier link goes to the UDP side; any other
   * virtual connection gets its next hop, the reply, then a local relay or a session.
   */
  async #connect(up: Deno.TcpConn, frame: Frame, peer: string): Promise<void> {
    const key = this.opts.key;
    let c: ConnectBody;
    const sessionId = frame.type === FrameType.SESSION ? frame.body.slice(16, 32) : undefined;
    try {
      if (sessionId && sessionId.length !== 16) throw new FrameError("Bad SESSION body");
      c = decodeConnect(frame.body.subarray(0, 16));
      if (c.proto === 17 && !sessionId) {
        // A peer router's UDP carrier link (docs/PROTOCOL.md, "Datagrams").
        await acceptCarrier(up, frame, key, peer, (d, from) => this.#udp.fromCarrier(d, from), this.#log);
        this.#conns.close(up);
        return;
      }
      if (c.proto !== 6) throw new FrameError(`Unsupported protocol: ${c.proto}`);
    } catch (e) {
      this.#log(`bad CONNECT from ${peer}: ${(e as Error).message}`);
      await writeReply(up, key, frame, Status.EINVAL);
      this.#conns.close(up);
      return;
    }
    const what = `${formatIp(c.srcIp)}:${c.srcPort} -> ${formatIp(c.dstIp)}:${c.dstPort}`;
    const hop = await this.#nextHop(c).catch((e): Refusal => ({ status: Status.ENETUNREACH, why: (e as Error).message }));
    if ("why" in hop) {
      this.#log(`connect ${what} from ${peer}: ${statusName(hop.status)} (${hop.why})`);
      await writeReply(up, key, frame, hop.status);
      this.#conns.close(up);
      return;
    }
    const down = hop.conn;
    this.#conns.add(down);
    try {
      await writeReply(up, key, frame, Status.OK);
    } catch (e) {
      this.#log(`connect ${what}: client went away (${(e as Error).message})`);
      this.#conns.close(up, down);
      return;
    }
    this.counters.relayOpened();
    this.#log(`relay ${what} open via ${hop.via}`);
    try {
      // Across the WAN: a resumable session. The responder's application side is `down` (the
      // server), the initiator's is `up` (the client).
      if (sessionId) await this.#sessions.respond(sessionId, up, down, what);
      else if ("session" in hop) await this.#sessions.initiate(hop, up, what);
      else await relayLocal(up, down, what, this.counters, this.#log);
    } finally {
      this.counters.relayClosed();
      this.#conns.close(up, down);
    }
  }

  /**
   * The next hop of a virtual connection: the real listener when the destination is in our
   * subnet, else a session to the peer router responsible for it (which must answer OK first).
   */
  async #nextHop(c: ConnectBody): Promise<Hop | PeerHop | Refusal> {
    if (contains(this.subnet, c.dstIp)) return await dialListener(this.#table, this.opts.key, c, this.#timeoutMs);
    return await this.#sessions.dial(c);
  }

  /** Text for `uvpn_proxy --status`: totals, then one line per live session. */
  statusText(): string {
    return this.counters.statusText(this.subnet, this.#table.leases.size, this.#udp.bindings);
  }
}

function peerOf(conn: Deno.Conn): string {
  const a = conn.remoteAddr as Deno.NetAddr;
  return `${a.hostname}:${a.port}`;
}
