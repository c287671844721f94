/**
 * The UVPN subnet router (uvpn_proxy's engine). Every TCP connection to its port is a link
 * (HELLO first, router/link.ts); nothing else gets in, and unauthenticated connections are
 * bounded (router/guard.ts). Programs' data connections (a DATA ticket first) go to the data
 * port, which the data plane serves itself (native/router/core/data.c) within the same limits.
 * On client links it answers the
 * control requests (leases and their holders, listeners, UDP endpoints, names, status) and
 * CONNECT; on router links a peer's MUX (the link then carries sessions and goes to the data
 * plane), carrier CONNECT and name queries. Virtual connections are router/connects.ts and
 * router/sessions.ts, their bytes the data plane's (router/dataplane.ts); the links' state is
 * kept here.
 */
import { batchedLog } from "./logbuf.ts";
import { trace } from "./trace.ts";
import { hex, u16, u32, unhex } from "../common/bytes.ts";
import { closeQuietly, ConnSet } from "../common/io.ts";
import { acceptCarrier } from "./carrier.ts";
import { Connects, DATA_TICKET_MS } from "./connects.ts";
import { Deadlines } from "./deadlines.ts";
import { DirectPaths, type DirectPolicy } from "./direct.ts";
import { RouterCounters, type RouterStats, statusText, type StatusReport } from "./counters.ts";
import { DataPlane, type DataPlaneEvent } from "./dataplane.ts";
import { DEFAULT_LIMITS, type GuardLimits, PreAuthGuard, RefusalLog } from "./guard.ts";
import { contains, formatIp, formatSubnet, type Subnet } from "./ipv4.ts";
import { type Holder, LeaseTable } from "./leases.ts";
import { acceptLink, type Link, readStart } from "./link.ts";
import { NameService } from "./names.ts";
import type { Route } from "./routes.ts";
import { defaultSessionConfig, type SessionConfig, SessionTable } from "./sessions.ts";
import { UdpRelay } from "./udp.ts";
import {
  ConnectFlag,
  decodeConnect,
  decodePaths,
  encodeConnectAnswer,
  type Frame,
  FrameError,
  FrameType,
  HEAD_LEN,
  ipBytes,
  ListenFlag,
  MAGIC,
  Role,
  Status,
} from "./wire.ts";

/** How a router is set up. */
export interface RouterOptions {
  routes: Route[];
  /** The route entry this router serves. */
  self: Route;
  key: Uint8Array;
  listen: { hostname: string; port: number };
  /** The data port, on the listening address (0 or absent: a free port). */
  dataPort?: number;
  stateFile: string;
  /** Deadline for connects to listeners and peer routers, ms. */
  timeoutMs?: number;
  /** Limits before authentication (guard.ts). */
  limits?: Partial<GuardLimits>;
  /** Lifetime of a lease whose LEASE named none: with `-- CMD` (exclusive) and without, ms. */
  leaseTtlMs?: { exclusive: number; open: number };
  log?: (line: string) => void;
  /** Whether CONNECTs inside the site may be brokered to a direct connection (default auto). */
  direct?: DirectPolicy;
  /** Resumable-session knobs (outage limit, retries, window, budgets); defaults from defaultSessionConfig. */
  session?: Partial<SessionConfig>;
}

/** A live link as the router keeps it. */
export interface LinkCtx extends Holder {
  link: Link;
  role: number;
}

/** One running subnet router. */
export class Router {
  /** Every counter of this router; `--status` and the counter log lines come from it. */
  readonly counters: RouterCounters = new RouterCounters();
  readonly subnet: Subnet;
  #listener?: Deno.TcpListener;
  #dataPort = 0;
  #table!: LeaseTable;
  #timeoutMs: number;
  #log: (line: string) => void;
  #conns = new ConnSet();
  #sessions: SessionTable;
  #udp: UdpRelay;
  #names: NameService;
  #guard: PreAuthGuard;
  #refusals: RefusalLog;
  #links = new Map<number, LinkCtx>();
  #nextLink = 1;
  #connects: Connects;
  #ttl: { exclusive: number; open: number };
  #dp?: DataPlane;
  #cfg: SessionConfig;
  /** Each unauthenticated connection's handshake deadline. */
  #handshakes: Deadlines;

  constructor(private readonly opts: RouterOptions) {
    this.subnet = opts.self.subnet;
    this.#timeoutMs = opts.timeoutMs ?? 10_000;
    this.#log = opts.log ?? batchedLog("uvpn_proxy: ");
    this.#guard = new PreAuthGuard({ ...DEFAULT_LIMITS, ...opts.limits });
    this.#handshakes = new Deadlines(this.#guard.limits.handshakeMs);
    this.#refusals = new RefusalLog(this.#log);
    this.#ttl = opts.leaseTtlMs ?? { exclusive: 60_000, open: 43_200_000 };
    this.#names = new NameService(() => this.#table, opts.routes, opts.key, this.#timeoutMs, this.#log);
    this.#udp = new UdpRelay(opts.key, this.subnet, opts.routes, this.#timeoutMs, this.#log, this.counters.udp);
    this.#cfg = { ...defaultSessionConfig(Deno.env.get("TMPDIR") ?? "/tmp"), ...opts.session };
    const dp = () => this.#dp!;
    this.#sessions = new SessionTable({
      routes: opts.routes,
      self: this.subnet,
      key: opts.key,
      timeoutMs: this.#timeoutMs,
      cfg: this.#cfg,
      counters: this.counters,
      table: () => this.#table,
      dp,
      log: this.#log,
    });
    this.#connects = new Connects({
      subnet: this.subnet,
      routes: opts.routes,
      self: opts.self,
      key: opts.key,
      timeoutMs: this.#timeoutMs,
      table: () => this.#table,
      sessions: this.#sessions,
      dp,
      dataPort: () => this.#dataPort,
      counters: this.counters,
      direct: new DirectPaths(opts.direct ?? "auto"),
      log: this.#log,
    });
  }

  /** Loads state, starts the data plane, binds the port and starts serving in the background. */
  async start(): Promise<void> {
    this.#table = await LeaseTable.open(this.subnet, this.opts.stateFile, this.#log);
    const c = this.#cfg;
    this.#dp = DataPlane.start({
      key: this.opts.key,
      windowBytes: c.windowBytes,
      memoryLimit: c.memoryLimit,
      spoolLimit: c.spool.limitBytes,
      spoolTotal: c.spool.totalBytes,
      deadMs: c.deadMs,
      keepaliveMs: Math.max(50, Math.floor(c.deadMs / 4)),
      dialMs: this.#timeoutMs,
      outageMs: c.outageLimitMs,
      bdpMax: 64 << 20,
      encrypt: c.encrypt,
      spoolDir: c.spool.dir,
    }, (e) => this.#dataPlaneEvent(e));
    this.counters.dp = () => this.#dp!.stats();
    const dp = this.#dp;
    this.#table.onListener = (l, gone) => dp.setListener(l.ip, l.port, gone ? null : { host: l.realHost, port: l.realPort, lid: unhex(l.id) });
    this.#listener = Deno.listen({ ...this.opts.listen, transport: "tcp" });
    try {
      const { perSource, total, handshakeMs } = this.#guard.limits;
      const bound = (this.#listener.addr as Deno.NetAddr).hostname;
      this.#dataPort = dp.dataListen(bound, this.opts.dataPort ?? 0, { perSource, total, handshakeMs, ticketMs: DATA_TICKET_MS });
      await this.#udp.start(this.opts.listen.hostname, this.opts.listen.port);
    } catch (e) {
      this.#listener.close();
      throw e;
    }
    this.#log(
      `serving subnet ${formatSubnet(this.subnet)} (route file line ${this.opts.self.line}) on ` +
        `${this.opts.listen.hostname}:${this.opts.listen.port} (data port ${this.#dataPort}); ${this.#table.leases.size} lease(s) restored`,
    );
    this.#serve(this.#listener);
  }

  #dataPlaneEvent(e: DataPlaneEvent): void {
    if (e.type === "data_refused") return this.#refuse(e.peer, e.why);
    if (this.#connects.event(e)) return;
    if (this.#sessions.event(e)) return;
    if (e.type === "log") this.#log(e.text);
  }

  /** The data plane (once started). */
  get dataPlane(): DataPlane | undefined {
    return this.#dp;
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
        this.#handle(conn).catch((e) => this.#log(`connection from ${peerOf(conn)} failed: ${(e as Error).message}`));
      }
    } catch (e) {
      if (!(e instanceof Deno.errors.BadResource)) this.#log(`accept failed: ${(e as Error).message}`);
    }
  }

  /** Stops listening and closes every connection. */
  close(): void {
    closeQuietly(this.#listener);
    this.#handshakes.close();
    this.#sessions.close();
    this.#connects.close();
    this.#dp?.stop();
    this.#udp.close();
    for (const l of this.#links.values()) l.link.close();
    this.#conns.closeAll();
    this.#table?.close();
  }

  #refuse(peer: string, why: string): void {
    this.counters.refused++;
    this.#refusals.refuse(peer, why);
  }

  /**
   * A new connection: admitted within the pre-authentication limits, then a link (HELLO and a
   * first frame under the link key) before the handshake deadline.
   */
  async #handle(conn: Deno.TcpConn): Promise<void> {
    trace("accept");
    const peer = peerOf(conn);
    const source = (conn.remoteAddr as Deno.NetAddr).hostname;
    if (!this.#guard.admit(source)) {
      this.#refuse(peer, `too many unauthenticated connections (limits ${this.#guard.limits.perSource} per source, ${this.#guard.limits.total} in all)`);
      closeQuietly(conn);
      return;
    }
    this.#conns.add(conn);
    let admitted = true;
    const release = () => {
      if (admitted) this.#guard.release(source);
      admitted = false;
    };
    const ms = this.#guard.limits.handshakeMs;
    let late = false;
    const timer = this.#handshakes.add(() => {
      late = true;
      this.#conns.close(conn);
    });
    try {
      const start = await readStart(conn, HEAD_LEN); // the head of a HELLO, in one read where it has come
      if (sameMagic(start, MAGIC)) {
        conn.setNoDelay(true); // (a data connection gets them in the data plane: app_adopted)
        conn.setKeepAlive(true);
        const link = await acceptLink(conn, this.opts.key, start);
        const first = await link.read();
        this.#handshakes.cancel(timer);
        release();
        await this.#serveLink(link, first);
        return;
      }
      throw new FrameError("Bad magic: not a UVPN frame (a DATA ticket goes to the data port)");
    } catch (e) {
      this.#handshakes.cancel(timer);
      const why = late ? `no handshake within ${ms} ms` : e instanceof FrameError ? e.message : String(e);
      this.#refuse(peer, why);
      this.#conns.close(conn);
    } finally {
      this.#handshakes.cancel(timer);
      release();
    }
  }

  /** Serves an authenticated link from its first frame until it ends, then drops what it held. */
  async #serveLink(link: Link, first: Frame): Promise<void> {
    const ctx: LinkCtx = { id: this.#nextLink++, token: link.hello.holder, link, role: link.hello.role };
    this.#links.set(ctx.id, ctx);
    if (ctx.role === Role.CLIENT) this.#table.holdByToken(ctx);
    let f: Frame | undefined = first;
    let handedOver = false;
    try {
      while (f) {
        if (ctx.role === Role.ROUTER && (f.type === FrameType.MUX || (f.type === FrameType.CONNECT && !isDirectQuery(f)))) {
          handedOver = true;
          this.#links.delete(ctx.id);
          await this.#routerStream(link, f);
          return;
        }
        this.#request(ctx, f).catch((e) => this.#log(`request from ${link.peer} failed: ${(e as Error).message}`));
        f = await link.read();
      }
    } catch (e) {
      const m = (e as Error).message;
      if (!/closed|BadResource|reset|Bad resource/i.test(m)) this.#refuse(link.peer, m);
    } finally {
      if (!handedOver) this.#linkGone(ctx);
    }
  }

  /** A link ended: its leases lose a holder, its listeners and UDP endpoints a link. */
  #linkGone(ctx: LinkCtx): void {
    this.#links.delete(ctx.id);
    this.#conns.close(ctx.link.conn);
    for (const r of this.#table.drop(ctx)) {
      this.#log(`listener ${formatIp(r.ip)}:${r.port} dropped: its process went away (link ${ctx.link.peer} closed)`);
    }
    this.#udp.dropLink(ctx.id);
  }

  /** A peer router's link that carries sessions (MUX), or a UDP carrier link: handed over for good. */
  async #routerStream(link: Link, f: Frame): Promise<void> {
    const peer = link.peer;
    if (f.type === FrameType.MUX) {
      if (f.body.length !== 6 || f.body[0] !== 0) {
        this.#refuse(peer, "bad MUX frame");
        link.close();
        return;
      }
      try {
        this.#sessions.accept(link);
      } catch (e) {
        this.#log(`link from peer router ${peer}: ${(e as Error).message}`);
        link.close();
      }
      return;
    }
    // A UDP carrier link (the first frame was CONNECT).
    let c;
    try {
      c = decodeConnect(f.body);
    } catch (e) {
      this.#log(`bad CONNECT from ${peer}: ${(e as Error).message}`);
      link.close();
      return;
    }
    if (c.proto !== 17) {
      this.#log(`bad CONNECT from peer router ${peer}: protocol ${c.proto}`);
      await link.reply(f.reqId, Status.EINVAL).catch(() => {});
      link.close();
      return;
    }
    this.#conns.add(link.conn);
    await acceptCarrier(link, f, peer, (d, from) => this.#udp.fromCarrier(d, from), this.#log);
    this.#conns.close(link.conn);
  }

  /** Answers one request of a link. */
  async #request(ctx: LinkCtx, f: Frame): Promise<void> {
    let status: number = Status.OK;
    let data: Uint8Array | undefined;
    try {
      const r = await this.#control(ctx, f);
      if (r === null) return; // answered by the handler itself (CONNECT)
      [status, data] = r;
    } catch (e) {
      this.#log(`bad request from ${ctx.link.peer}: ${(e as Error).message}`);
      status = Status.EINVAL;
    }
    await ctx.link.reply(f.reqId, status, data);
  }

  /** Answers a control request: [status, data], or null when the handler answers itself. */
  async #control(ctx: LinkCtx, f: Frame): Promise<[number, Uint8Array?] | null> {
    const b = f.body;
    const table = this.#table;
    const host = ctx.link.peerHost;
    const routerOk = f.type === FrameType.NAME || f.type === FrameType.STATUS || f.type === FrameType.INFO || f.type === FrameType.PING ||
      isDirectQuery(f);
    if (ctx.role === Role.ROUTER && !routerOk) throw new FrameError(`Type ${f.type} is not for router links`);
    const held = (ip: number): number | null => {
      if (!contains(this.subnet, ip)) return Status.EINVAL;
      if (!table.leases.has(ip)) return Status.EADDRNOTAVAIL;
      if (!table.holds(ctx, ip)) {
        this.#log(`refused ${FrameName[f.type] ?? f.type} for ${formatIp(ip)} from ${ctx.link.peer}: the link does not hold the address`);
        return Status.EPERM;
      }
      return null;
    };
    switch (f.type) {
      case FrameType.LEASE: {
        const nameLen = b[5] ?? 0;
        const name = new TextDecoder().decode(b.subarray(6, 6 + nameLen));
        if (b.length !== 6 + nameLen || nameLen > 63 || !/^[A-Za-z0-9-]*$/.test(name)) {
          throw new FrameError(`Bad LEASE body`);
        }
        const exclusive = (b[0] & 1) === 1;
        const ttl = u32(b, 1);
        const taken = table.byName(name);
        if (taken) {
          this.#log(`refused a lease for ${host}: name already leased to ${formatIp(taken.ip)}: ${name}`);
          return [Status.EADDRINUSE];
        }
        const ttlMs = ttl ? ttl * 1000 : exclusive ? this.#ttl.exclusive : this.#ttl.open;
        const lease = await table.lease(host, name, ttlMs, exclusive, ctx);
        if (!lease) {
          this.#log(`no free address left in ${formatSubnet(this.subnet)} for ${host}`);
          return [Status.EADDRNOTAVAIL];
        }
        this.#log(`leased ${formatIp(lease.ip)} to ${host}${name ? ` as ${name}` : ""} (lifetime ${Math.round(ttlMs / 1000)} s)`);
        const out = new Uint8Array(20);
        out.set(ipBytes(lease.ip));
        out.set(lease.token, 4);
        return [Status.OK, out];
      }
      case FrameType.USE: {
        if (b.length !== 4) throw new FrameError("Bad USE body");
        const ip = u32(b, 0);
        const r = table.hold(ctx, ip);
        if (r === "EPERM") this.#log(`refused USE of ${formatIp(ip)} from ${ctx.link.peer}: leased to another holder`);
        return [r === null ? Status.OK : Status[r]];
      }
      case FrameType.RELEASE: {
        if (b.length !== 4) throw new FrameError("Bad RELEASE body");
        const ip = u32(b, 0);
        const r = await table.release(ctx, ip);
        if (r === null) this.#log(`released ${formatIp(ip)}`);
        else if (r === "EPERM") this.#log(`refused RELEASE of ${formatIp(ip)} from ${ctx.link.peer}: the link does not hold the address`);
        return [r === null ? Status.OK : Status[r]];
      }
      case FrameType.LIST: {
        const now = Date.now();
        const text = [...table.leases.values()]
          .map((l) => `${formatIp(l.ip)}\t${l.holder}\t${l.name}\t${Math.floor((now - l.since) / 1000)}\t${table.state(l)}\n`).join("");
        return [Status.OK, new TextEncoder().encode(text).subarray(0, 0xfffe)];
      }
      case FrameType.LISTEN: {
        if ((b.length !== 16 && b.length !== 17) || (b.length === 17 && (b[16] & ~ListenFlag.DIRECT) !== 0)) {
          throw new FrameError("Bad LISTEN body");
        }
        const ip = u32(b, 0), vport = u16(b, 4), realPort = u16(b, 6), id = hex(b.subarray(8, 16));
        const bad = held(ip);
        if (bad !== null) return [bad];
        if (table.listen(ctx, ip, vport, host, realPort, id, b.length === 17 && (b[16] & ListenFlag.DIRECT) !== 0)) {
          this.#log(`refused LISTEN of ${formatIp(ip)}:${vport} from ${ctx.link.peer}: another process listens there`);
          return [Status.EADDRINUSE];
        }
        this.#log(`listener ${formatIp(ip)}:${vport} is at ${host}:${realPort}`);
        return [Status.OK];
      }
      case FrameType.UNLISTEN: {
        if (b.length !== 14) throw new FrameError("Bad UNLISTEN body");
        const ip = u32(b, 0), vport = u16(b, 4), id = hex(b.subarray(6, 14));
        const bad = held(ip);
        if (bad !== null) return [bad];
        const r = table.unlisten(ctx, ip, vport, id);
        if (r === null) this.#log(`listener ${formatIp(ip)}:${vport} unregistered`);
        return [r === null ? Status.OK : Status[r]];
      }
      case FrameType.UDPBIND: {
        if ((b.length !== 8 && b.length !== 9) || (b.length === 9 && (b[8] & ~ListenFlag.DIRECT) !== 0)) {
          throw new FrameError("Bad UDPBIND body");
        }
        const ip = u32(b, 0), vport = u16(b, 4), realPort = u16(b, 6);
        const bad = held(ip);
        if (bad !== null) return [bad];
        if (realPort === 0) return [this.#udp.bind(ip, vport, host, 0, ctx.id) ? Status.OK : Status.ENOENT];
        this.#udp.bind(ip, vport, host, realPort, ctx.id, b.length === 9 && (b[8] & ListenFlag.DIRECT) !== 0);
        return [Status.OK];
      }
      case FrameType.INFO: {
        const subnets = [this.subnet, ...this.opts.routes.map((r) => r.subnet)];
        const out = new Uint8Array(subnets.length * 5);
        subnets.forEach((s, i) => {
          out.set(ipBytes(s.net), i * 5);
          out[i * 5 + 4] = s.len;
        });
        return [Status.OK, out];
      }
      case FrameType.NAME: {
        const r = await this.#names.reply(b);
        return [r[0], r.subarray(1)];
      }
      case FrameType.STATUS: {
        if (b.length > 1 || (b.length === 1 && (b[0] & ~1) !== 0)) throw new FrameError("Bad STATUS body");
        const r = await this.status();
        const text = b[0] === 1 ? JSON.stringify(r) : statusText(r);
        return [Status.OK, new TextEncoder().encode(text).subarray(0, 0xfffe)];
      }
      case FrameType.PATHS: {
        const p = decodePaths(b);
        this.counters.directReported(p.conns, p.sent + p.received);
        return [Status.OK];
      }
      case FrameType.PING:
        await ctx.link.send(FrameType.PONG, f.reqId);
        return null;
      case FrameType.CONNECT: {
        const c = decodeConnect(b);
        if (c.proto === 17 && ctx.role === Role.CLIENT) {
          // Where a UDP endpoint of our site really is, for a program that sends to it directly.
          const a = this.#connects.udpDirectFor(ctx.link, c, this.#udp.endpoint(c.dstIp, c.dstPort));
          return a ? [Status.OK, encodeConnectAnswer(a)] : [Status.ENOENT];
        }
        if (c.proto !== 6) throw new FrameError(`Unsupported protocol: ${c.proto}`);
        if (ctx.role === Role.ROUTER) {
          // A router of our site asks to broker a direct connection to one of our listeners.
          const a = this.#connects.directFor(c, (ctx.link.conn.localAddr as Deno.NetAddr).hostname);
          return a ? [Status.OK, encodeConnectAnswer(a)] : [Status.ENOENT];
        }
        const bad = contains(this.subnet, c.srcIp) ? held(c.srcIp) : Status.EPERM;
        if (bad !== null) {
          if (bad === Status.EPERM && !contains(this.subnet, c.srcIp)) {
            this.#log(`refused CONNECT from ${ctx.link.peer}: source ${formatIp(c.srcIp)} is not of this subnet`);
          }
          return [bad];
        }
        trace("connect");
        await this.#connects.connect(ctx.link, f.reqId, c);
        return null;
      }
      default:
        throw new FrameError(`Unexpected frame type: ${f.type}`);
    }
  }

  /** Everything `uvpn_proxy --status` (text or JSON) and `--metrics` report. */
  async status(): Promise<StatusReport> {
    let clients = 0, routers = 0;
    for (const l of this.#links.values()) l.role === Role.ROUTER ? routers++ : clients++;
    const list = this.#dp ? await this.#dp.snapshot() : "";
    return this.counters.report(this.subnet, this.#table.leases.size, this.#udp.bindings, {
      clients,
      routers: routers + this.#sessions.links,
      unauthenticated: this.#guard.pending,
      listeners: this.#table.listeners.size,
      pending: this.#connects.pending,
    }, list, this.#dp?.info() ?? "");
  }

  /** Text for `uvpn_proxy --status`: totals, then one line per live session. */
  async statusText(): Promise<string> {
    return statusText(await this.status());
  }
}

const FrameName: Record<number, string> = Object.fromEntries(Object.entries(FrameType).map(([k, v]) => [v, k]));

/** A router's CONNECT of a TCP connection with flag DIRECT: a query to broker a direct connection
 * (router/connects.ts), answered like a request (a UDP carrier's CONNECT has proto 17). */
function isDirectQuery(f: Frame): boolean {
  return f.type === FrameType.CONNECT && f.body.length === 14 && f.body[0] === 6 && (f.body[1] & ConnectFlag.DIRECT) !== 0;
}

function sameMagic(a: Uint8Array, m: Uint8Array): boolean {
  return a[0] === m[0] && a[1] === m[1] && a[2] === m[2] && a[3] === m[3];
}

function peerOf(conn: Deno.Conn): string {
  const a = conn.remoteAddr as Deno.NetAddr;
  return `${a.hostname}:${a.port}`;
}

