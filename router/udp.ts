/**
 * A router's UDP side (docs/PROTOCOL.md, "Datagrams"): the UDP socket on the router's port,
 * the registrations of programs' UDP endpoints (UDPBIND), delivery to them, and forwarding to
 * peer routers as UDP or inside a TCP carrier link (route option `udp=tcp`; the links are
 * router/carrier.ts). Every datagram's MAC is verified; a bad one is dropped and logged
 * (rate-limited), never thrown.
 */
import dgram from "node:dgram";
import { closeQuietly } from "../common/io.ts";
import { Carrier } from "./carrier.ts";
import type { UdpStats } from "./counters.ts";
import { contains, formatIp, type Subnet } from "./ipv4.ts";
import { type Route, routeFor } from "./routes.ts";
import { type DgramAddrs, openDgram } from "./wire.ts";

const LOG_WINDOW_MS = 10_000;
const LOG_PER_WINDOW = 10;

/** The UDP side of one router. */
export class UdpRelay {
  #sock?: dgram.Socket;
  #binds = new Map<string, { host: string; port: number; link: number; direct: boolean }>();
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

  /**
   * UDPBIND from link `link`: datagrams for ip:vport go to host:realPort (realPort 0 removes it);
   * `direct`: the endpoint takes datagrams from any sender that holds the key (UDPBIND flag
   * DIRECT), so programs of the site may send to it directly.
   */
  bind(ip: number, vport: number, host: string, realPort: number, link: number, direct = false): boolean {
    const k = `${ip}:${vport}`;
    if (realPort === 0) {
      const had = this.#binds.delete(k);
      if (had) this.log(`UDP endpoint ${formatIp(ip)}:${vport} unregistered`);
      return had;
    }
    this.#binds.set(k, { host, port: realPort, link, direct });
    this.log(`UDP endpoint ${formatIp(ip)}:${vport} is at ${host}:${realPort}`);
    return true;
  }

  /** Where endpoint ip:vport really is, when it takes datagrams directly (null: through us). */
  endpoint(ip: number, vport: number): { host: string; port: number } | null {
    const b = this.#binds.get(`${ip}:${vport}`);
    return b && b.direct ? { host: b.host, port: b.port } : null;
  }

  /** Link `link` went away: the endpoints it registered are dropped. */
  dropLink(link: number): void {
    for (const [k, b] of this.#binds) {
      if (b.link !== link) continue;
      this.#binds.delete(k);
      this.log(`UDP endpoint ${k.replace(/^(\d+)/, (ip) => formatIp(Number(ip)))} dropped: its process went away`);
    }
  }

  /** Registered UDP endpoints. */
  get bindings(): number {
    return this.#binds.size;
  }

  /** Takes a datagram that came in on a carrier link from a peer router (router/carrier.ts). */
  fromCarrier(d: Uint8Array, from: string): void {
    this.#onDatagram(d, from, true);
  }

  /** Closes the socket and the carrier links. */
  close(): void {
    closeQuietly(this.#sock);
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
