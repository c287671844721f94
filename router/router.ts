/**
 * The UVPN subnet router (uvpn_proxy's engine): accepts authenticated frames, leases virtual
 * addresses of its subnet, records listeners, and builds relay paths client → home router →
 * peer router → server as in the paper's section 3.2.
 */
import { dialRouter } from "./client.ts";
import { readFrame, TimeoutError, withTimeout, writeAll } from "./frame_io.ts";
import { contains, formatIp, formatSubnet, type Subnet } from "./ipv4.ts";
import { LeaseTable } from "./leases.ts";
import { relay } from "./relay.ts";
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
  sameBytes,
  statusName,
  u16,
  u32,
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
}

/** Counters a router keeps, for status and logs. */
export interface RouterStats {
  relaysOpen: number;
  relaysTotal: number;
  bytesUp: number;
  bytesDown: number;
  refused: number;
}

/** One running subnet router. */
export class Router {
  readonly stats: RouterStats = { relaysOpen: 0, relaysTotal: 0, bytesUp: 0, bytesDown: 0, refused: 0 };
  readonly subnet: Subnet;
  #listener?: Deno.TcpListener;
  #table!: LeaseTable;
  #replay = new ReplayCache();
  #timeoutMs: number;
  #log: (line: string) => void;
  #conns = new Set<Deno.Conn>();

  constructor(private readonly opts: RouterOptions) {
    this.subnet = opts.self.subnet;
    this.#timeoutMs = opts.timeoutMs ?? 10_000;
    this.#log = opts.log ?? ((line) => console.error(`uvpn_proxy: ${line}`));
  }

  /** Loads state, binds the port and starts serving in the background. */
  async start(): Promise<void> {
    this.#table = await LeaseTable.open(this.subnet, this.opts.stateFile);
    this.#listener = Deno.listen({ ...this.opts.listen, transport: "tcp" });
    this.#log(
      `serving subnet ${formatSubnet(this.subnet)} (route file line ${this.opts.self.line}) on ` +
        `${this.opts.listen.hostname}:${this.opts.listen.port}; ${this.#table.leases.size} lease(s) restored`,
    );
    this.#serve(this.#listener);
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
      this.stats.refused++;
      const why = e instanceof FrameError || e instanceof TimeoutError ? e.message : String(e);
      this.#log(`refused ${peer}: ${why}`);
      this.#untrack(conn);
      return;
    }
    if (frame.type === FrameType.CONNECT) {
      await this.#connect(conn, frame, peer);
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
      default:
        throw new FrameError(`Unexpected frame type: ${frame.type}`);
    }
  }

  /** Handles CONNECT: opens the next hop, replies, then relays. */
  async #connect(up: Deno.TcpConn, frame: Frame, peer: string): Promise<void> {
    let c: ConnectBody;
    try {
      c = decodeConnect(frame.body);
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
    this.stats.relaysOpen++;
    this.stats.relaysTotal++;
    this.#log(`relay ${what} open via ${hop.via}`);
    try {
      const r = await relay(up, down);
      this.stats.bytesUp += r.aToB;
      this.stats.bytesDown += r.bToA;
      this.#log(`relay ${what} closed: ${r.aToB} bytes up, ${r.bToA} bytes down`);
    } catch (e) {
      this.#log(`relay ${what} reset: ${(e as Error).message}`);
    } finally {
      this.stats.relaysOpen--;
      this.#untrack(up, down);
    }
  }

  async #reply(conn: Deno.TcpConn, frame: Frame, status: number): Promise<void> {
    await writeAll(conn, encodeFrame(this.opts.key, FrameType.REPLY, frame.nonce, encodeReply(status)));
  }

  /**
   * The next hop of a virtual connection: the real listener when the destination is in our
   * subnet, else the peer router responsible for it (which must answer OK first).
   */
  async #nextHop(c: ConnectBody): Promise<{ conn: Deno.TcpConn; via: string } | { status: number; why: string }> {
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
    try {
      await writeAll(conn, encodeFrame(this.opts.key, FrameType.CONNECT, nonce, encodeConnect(c)));
      const reply = await readFrame(conn, this.opts.key, this.#timeoutMs);
      const status = reply.body[0] ?? Status.EINVAL;
      if (reply.type !== FrameType.REPLY || !sameBytes(reply.nonce, nonce)) {
        throw new FrameError("Peer router sent a bad reply");
      }
      if (status !== Status.OK) {
        conn.close();
        return { status, why: `peer router ${via} answered ${statusName(status)}` };
      }
      return { conn, via: `peer router ${via}` };
    } catch (e) {
      try {
        conn.close();
      } catch { /* closed by the deadline */ }
      const status = e instanceof TimeoutError ? Status.ETIMEDOUT : Status.ENETUNREACH;
      return { status, why: `peer router ${via}: ${(e as Error).message}` };
    }
  }

  async #dialListener(c: ConnectBody): Promise<{ conn: Deno.TcpConn; via: string } | { status: number; why: string }> {
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
