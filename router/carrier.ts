/**
 * UDP carrier links between routers (docs/PROTOCOL.md, "Datagrams"; route option `udp=tcp`):
 * TCP connections that carry encapsulated datagrams as `length u16, datagram` records. Owns the
 * outbound link to one peer router (opened on demand, queue bounded, dropped datagrams when it
 * is down) and the hand-off of an inbound one: its CONNECT answered, then its records read and
 * handed to the UDP side (router/udp.ts) until it closes.
 */
import { be16, concat, u16 } from "../common/bytes.ts";
import { closeQuietly, writeAll } from "../common/io.ts";
import { exchange, type Link, openLink } from "./link.ts";
import type { Route } from "./routes.ts";
import { DGRAM_MAX, encodeConnect, type Frame, FrameError, FrameType, Role, Status, statusName } from "./wire.ts";

const CARRIER_QUEUE_MAX = 4 << 20; // bytes waiting for a carrier link; more are dropped
const CARRIER_RETRY_MS = 1000; // after a failed carrier link, datagrams are dropped this long

/**
 * Takes over an inbound carrier link (a router link) whose CONNECT is `frame`: answers OK, then hands each
 * datagram to `deliver` until the link closes. Only the answer can throw.
 */
export async function acceptCarrier(
  link: Link,
  frame: Frame,
  peer: string,
  deliver: (d: Uint8Array, from: string) => void,
  log: (line: string) => void,
): Promise<void> {
  await link.reply(frame.reqId, Status.OK);
  const conn = link.conn;
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
        deliver(buf.slice(off + 2, off + 2 + len), `carrier from ${peer}`);
        off += 2 + len;
      }
      buf.copyWithin(0, off, have);
      have -= off;
    }
  } catch (e) {
    log(`UDP carrier link from ${peer} ended: ${(e as Error).message}`);
  }
}

/** An outbound carrier link to one peer router. */
export class Carrier {
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

  /** Closes the link; the next datagram opens a new one. */
  close(): void {
    closeQuietly(this.#conn);
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
    const link = await openLink(this.route, this.key, { role: Role.ROUTER, timeoutMs: this.timeoutMs });
    try {
      const body = encodeConnect({ proto: 17, flags: 0, srcIp: 0, srcPort: 0, dstIp: 0, dstPort: 0 });
      const reply = await exchange(link, FrameType.CONNECT, body, this.timeoutMs);
      if (reply.status !== Status.OK) throw new FrameError(`Carrier refused: ${statusName(reply.status)}`);
      this.log(`UDP carrier link to ${this.route.host}:${this.route.port} open`);
      // The peer sends nothing on this link; reading notices when it closes.
      link.conn.read(new Uint8Array(1)).then(() => this.close(), () => this.close());
      return link.conn;
    } catch (e) {
      link.close();
      throw e;
    }
  }
}
