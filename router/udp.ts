/**
 * A router's UDP side (docs/PROTOCOL.md, "Datagrams"): the UDP socket on the router's port,
 * the registrations of programs' UDP endpoints (UDPBIND), delivery to them, forwarding to peer
 * routers as UDP or inside a TCP carrier link (route option `udp=tcp`), and the receiving end of
 * carrier links. Every datagram's MAC is verified; a bad one is dropped and logged (rate-limited),
 * never thrown.
 */
import dgram from "node:dgram";
import { be16, concat, sameBytes, u16 } from "../common/bytes.ts";
import { writeAll } from "../common/io.ts";
import { dialRouter } from "./client.ts";
import type { UdpStats } from "./counters.ts";
import { readFrame } from "./frame_io.ts";
import { contains, formatIp, type Subnet } from "./ipv4.ts";
import { type Route, routeFor } from "./routes.ts";
import {
  type DgramAddrs,
  DGRAM_MAX,
  encodeConnect,
  encodeFrame,
  FrameError,
  FrameType,
  newNonce,
  openDgram,
  Status,
  statusName,
} from "./wire.ts";

const CARRIER_QUEUE_MAX = 4 << 20; // bytes waiting for a carrier link; more are dropped
const CARRIER_RETRY_MS = 1000; // after a failed carrier link, datagrams are dropped this long
const LOG_WINDOW_MS = 10_000;
const LOG_PER_WINDOW = 10;

/** The UDP side of one router. */
export class UdpRelay {
  #sock?: dgram.Socket;
  #binds = new Map<string, { host: string; port: number }>();
  #carriers = new Map<Route, Carrier>();
  #logged = { at: 0, n: 0, quiet: 0 };

  constructor(
    private readonly key: Uint8Array,
    private readonly subnet: Subnet,
    private readonly routes: Route[],
    private readonly timeoutMs: number,
    private readonly log: (line: string) => void,
    /** The router's UDP counters, updated here. */
    private readonly stats: UdpStats,
  ) {}

  /** Binds the UDP socket at the router's address and port. */
  start(hostname: string, port: number): Promise<void> {
    const sock = dgram.createSocket(hostname.includes(":") ? "udp6" : "udp4");
    this.#sock = sock;
    sock.on("message", (msg: Uint8Array, r: { address: string; port: number }) => this.#onDatagram(msg, `${r.address}:${r.port}`));
    return new Promise((resolve, reject) => {
      sock.once("error", reject);
      sock.bind(port, hostname, () => {
        sock.removeListener("error", reject);
        sock.on("error", (e: Error) => this.log(`UDP socket: ${e.message}`));
        for (const set of [sock.setRecvBufferSize, sock.setSendBufferSize]) {
          try {
            set.call(sock, 4 << 20);
          } catch { /* capped by the kernel's limit: fine */ }
        }
        resolve();
      });
    });
  }

  /** UDPBIND: datagrams for ip:vport go to host:realPort (realPort 0 removes it). */
  bind(ip: number, vport: number, host: string, realPort: number): boolean {
    const k = `${ip}:${vport}`;
    if (realPort === 0) {
      const had = this.#binds.delete(k);
      if (had) this.log(`UDP endpoint ${formatIp(ip)}:${vport} unregistered`);
      return had;
    }
    this.#binds.set(k, { host, port: realPort });
    this.log(`UDP endpoint ${formatIp(ip)}:${vport} is at ${host}:${realPort}`);
    return true;
  }

  /** Registered UDP endpoints. */
  get bindings(): number {
    return this.#binds.size;
  }

  /** Serves an inbound carrier link (its CONNECT already answered OK) until it closes. */
  async serveCarrier(conn: Deno.TcpConn, peer: string): Promise<void> {
    const buf = new Uint8Array(256 * 1024);
    let have = 0;
    try {
      for (;;) {
        const n = await conn.read(buf.subarray(have));
        if (n === null) break;
        have += n;
        let off = 0;
        while (have - off >= 2) {
          const len = u16(buf, off);
          if (have - off - 2 < len) break;
          this.#onDatagram(buf.slice(off + 2, off + 2 + len), `carrier from ${peer}`, true);
          off += 2 + len;
        }
        buf.copyWithin(0, off, have);
        have -= off;
      }
    } catch (e) {
      this.log(`UDP carrier link from ${peer} ended: ${(e as Error).message}`);
    }
  }

  /** Closes the socket and the carrier links. */
  close(): void {
    try {
      this.#sock?.close();
    } catch { /* closed */ }
    for (const c of this.#carriers.values()) c.close();
  }

  #onDatagram(d: Uint8Array, from: string, viaCarrier = false): void {
    this.stats.received++;
    let a: DgramAddrs;
    try {
      a = openDgram(this.key, d);
    } catch (e) {
      this.#drop(`from ${from}: ${(e as Error).message}`);
      return;
    }
    if (contains(this.subnet, a.dstIp)) {
      const b = this.#binds.get(`${a.dstIp}:${a.dstPort}`);
      if (!b) {
        this.#drop(`for ${formatIp(a.dstIp)}:${a.dstPort}: no UDP endpoint registered there`);
        return;
      }
      this.stats.delivered++;
      this.#sock!.send(d, b.port, b.host);
      return;
    }
    // Only our own programs' datagrams are forwarded, so none can loop between routers.
    if (viaCarrier || !contains(this.subnet, a.srcIp)) {
      this.#drop(`from ${from}: neither from nor to subnet of this router: ${formatIp(a.srcIp)} -> ${formatIp(a.dstIp)}`);
      return;
    }
    const route = routeFor(this.routes, a.dstIp);
    if (!route) {
      this.#drop(`for ${formatIp(a.dstIp)}: no route to its subnet`);
      return;
    }
    if (route.udp === "tcp") {
      let c = this.#carriers.get(route);
      if (!c) this.#carriers.set(route, c = new Carrier(route, this.key, this.timeoutMs, this.log));
      if (!c.send(d)) {
        this.#drop(`for ${formatIp(a.dstIp)}: carrier link to ${route.host}:${route.port} is down or full`);
        return;
      }
    } else {
      this.#sock!.send(d, route.port, route.host);
    }
    this.stats.forwarded++;
  }

  /** Counts a dropped datagram; logs at most LOG_PER_WINDOW lines per LOG_WINDOW_MS. */
  #drop(why: string): void {
    this.stats.dropped++;
    const now = Date.now(), l = this.#logged;
    if (now - l.at > LOG_WINDOW_MS) {
      if (l.quiet) this.log(`dropped ${l.quiet} more datagram(s) without logging`);
      l.at = now;
      l.n = 0;
      l.quiet = 0;
    }
    if (l.n++ < LOG_PER_WINDOW) this.log(`dropped datagram ${why}`);
    else l.quiet++;
  }
}

/** An outbound carrier link to one peer router: `length u16, datagram` records over TCP. */
class Carrier {
  #queue: Uint8Array[] = [];
  #queued = 0;
  #conn?: Deno.TcpConn;
  #pumping = false;
  #downUntil = 0;

  constructor(
    private readonly route: Route,
    private readonly key: Uint8Array,
    private readonly timeoutMs: number,
    private readonly log: (line: string) => void,
  ) {}

  /** Queues a datagram; false when it must be dropped (link down recently, queue full). */
  send(d: Uint8Array): boolean {
    if (Date.now() < this.#downUntil || this.#queued + d.length > CARRIER_QUEUE_MAX || d.length > DGRAM_MAX) return false;
    const rec = concat(be16(d.length), d);
    this.#queue.push(rec);
    this.#queued += rec.length;
    this.#pump();
    return true;
  }

  close(): void {
    try {
      this.#conn?.close();
    } catch { /* closed */ }
    this.#conn = undefined;
  }

  async #pump(): Promise<void> {
    if (this.#pumping) return;
    this.#pumping = true;
    try {
      while (this.#queue.length) {
        const conn = this.#conn ?? (this.#conn = await this.#open());
        const batch = this.#queue.splice(0, 64);
        const out = concat(...batch);
        this.#queued -= out.length;
        await writeAll(conn, out);
      }
    } catch (e) {
      this.log(`UDP carrier link to ${this.route.host}:${this.route.port} failed: ${(e as Error).message}; ` +
        `dropping ${this.#queue.length} queued datagram(s)`);
      this.close();
      this.#queue = [];
      this.#queued = 0;
      this.#downUntil = Date.now() + CARRIER_RETRY_MS;
    } finally {
      this.#pumping = false;
    }
  }

  async #open(): Promise<Deno.TcpConn> {
    const conn = await dialRouter(this.route, this.timeoutMs);
    try {
      const nonce = newNonce();
      const body = encodeConnect({ proto: 17, srcIp: 0, srcPort: 0, dstIp: 0, dstPort: 0 });
      await writeAll(conn, encodeFrame(this.key, FrameType.CONNECT, nonce, body));
      const reply = await readFrame(conn, this.key, this.timeoutMs);
      if (reply.type !== FrameType.REPLY || !sameBytes(reply.nonce, nonce)) throw new FrameError("Bad carrier reply");
      if (reply.body[0] !== Status.OK) throw new FrameError(`Carrier refused: ${statusName(reply.body[0])}`);
      this.log(`UDP carrier link to ${this.route.host}:${this.route.port} open`);
      // The peer sends nothing on this link; reading notices when it closes.
      conn.read(new Uint8Array(1)).then(() => this.close(), () => this.close());
      return conn;
    } catch (e) {
      conn.close();
      throw e;
    }
  }
}
