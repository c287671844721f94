/**
 * Resumable sessions between subnet routers (the paper's section 3.4, made exact): the relay of
 * one virtual connection across the WAN, isolating the applications from link failures. Each
 * side counts bytes sent (s_bytes) and received (r_bytes), acknowledges periodically, and keeps
 * exactly the unacknowledged bytes in a spool (memory, then disk, then backpressure). When the
 * link breaks (reset, timeout, silent blackhole) the initiating router reconnects with backoff and
 * both replay what the other lacks; if the outage outlasts the limit, or the peer lost the
 * session, both applications get a reset.
 *
 * Link framing after the SESSION/RESUME handshake: type u8, length u32, payload.
 * DATA (bytes), ACK (u64 r_bytes), FIN (u64 final s_bytes), RST, PING.
 */
import { be32, be64, concat, hex, u32, u64 } from "../common/bytes.ts";
import { closeQuietly, readExact, StreamEndError, writeAll } from "../common/io.ts";
import type { SessionCounters } from "./counters.ts";
import { GrowingBuffer } from "./relay.ts";
import { resetConn } from "./reset.ts";
import { Spool, type SpoolLimits } from "./spool.ts";

const DATA = 1, ACK = 2, FIN = 3, RST = 4;
const MAX_DATA = 64 * 1024;

/** Knobs of resumable sessions. */
export interface SessionConfig {
  /** A link with nothing received for this long is declared dead. */
  deadMs: number;
  /** Acknowledgement / keepalive period. */
  keepaliveMs: number;
  /** First reconnect delay, doubled up to `retryMaxMs`. */
  retryFirstMs: number;
  retryMaxMs: number;
  /** An outage longer than this resets both applications. */
  outageLimitMs: number;
  spool: SpoolLimits;
}

/** Defaults: first retry within a second, capped at 10 s; outages up to 5 minutes survive. */
export function defaultSessionConfig(dir: string): SessionConfig {
  return {
    deadMs: 4000,
    keepaliveMs: 500,
    retryFirstMs: 500,
    retryMaxMs: 10_000,
    outageLimitMs: 300_000,
    spool: { memoryBytes: 8 * 1024 * 1024, totalBytes: 256 * 1024 * 1024, dir },
  };
}

/** Reconnects the link of an initiating session; resolves with the new link and the peer's r_bytes. */
export type Redial = () => Promise<{ link: Deno.TcpConn; peerRecv: number }>;

/** One resumable session; it is its own entry in the router's counters (router/counters.ts). */
export class Session implements SessionCounters {
  readonly idHex: string;
  recv = 0;
  reconnects = 0;
  replayed = 0;
  state: "up" | "down" | "closed" = "up";
  /** Resolves when the session ended; true for a clean end, false for a reset. */
  readonly finished: Promise<boolean>;
  #finish!: (clean: boolean) => void;
  #spool: Spool;
  #sendNext = 0;
  #appEof = false;
  #finSent = false;
  #peerFin: number | null = null;
  #appWriteClosed = false;
  #link: Deno.TcpConn | null = null;
  #gen = 0;
  #lastRx = 0;
  #readerBusy = false;
  #wake: (() => void)[] = [];
  #writeLock: Promise<void> = Promise.resolve();
  #timer?: ReturnType<typeof setInterval>;
  #outageTimer?: ReturnType<typeof setTimeout>;
  #sinceAck = 0;
  #ackedRecv = -1;
  #ackedAt = 0;
  #appWrite: Promise<void> = Promise.resolve();

  constructor(
    readonly id: Uint8Array,
    readonly role: "initiator" | "responder",
    readonly app: Deno.TcpConn,
    readonly cfg: SessionConfig,
    readonly log: (line: string) => void,
    private readonly redial?: Redial,
  ) {
    this.idHex = hex(id).slice(0, 12);
    this.#spool = new Spool(cfg.spool);
    this.finished = new Promise((r) => (this.#finish = r));
    this.#readApp();
    this.#sender();
    this.#timer = setInterval(() => this.#tick(), cfg.keepaliveMs);
  }

  /** Bytes sent by our application so far (s_bytes). */
  get sent(): number {
    return this.#spool.end;
  }

  /** Bytes received for our application so far (r_bytes). */
  get received(): number {
    return this.recv;
  }

  /** Bytes of ours that ever went to the spool file. */
  get spooled(): number {
    return this.#spool.spooled;
  }

  /** Attaches a (new) link; the peer has received `peerRecv` bytes of ours. */
  attach(link: Deno.TcpConn, peerRecv: number): void {
    if (this.state === "closed") {
      link.close();
      return;
    }
    if (peerRecv < this.#spool.base || peerRecv > this.#spool.end) {
      this.#fail(`peer reported ${peerRecv} bytes received, outside ${this.#spool.base}..${this.#spool.end}`);
      link.close();
      return;
    }
    this.#closeLink();
    const gen = ++this.#gen;
    if (this.#sendNext > peerRecv) this.replayed += this.#sendNext - peerRecv;
    this.#spool.trim(peerRecv);
    this.#sendNext = peerRecv;
    this.#finSent = false;
    this.#link = link;
    this.#lastRx = Date.now();
    if (this.state === "down") {
      clearTimeout(this.#outageTimer);
      this.log(`session ${this.idHex}: link restored; replaying ${this.#spool.end - peerRecv} byte(s)`);
    }
    this.state = "up";
    this.#readLink(link, gen);
    this.#send(ACK, be64(this.recv)).catch(() => {});
    this.#kick();
  }

  /**
   * Drops the current link before a RESUME is answered, so nothing more is delivered from it:
   * returns r_bytes, final for this link.
   */
  detach(): number {
    this.#gen++;
    this.#closeLink();
    return this.recv;
  }

  #kick(): void {
    for (const w of this.#wake.splice(0)) w();
  }

  #waitWork(): Promise<void> {
    return new Promise((r) => this.#wake.push(r));
  }

  /** Writes one link frame; link errors take the link down. */
  #send(type: number, payload: Uint8Array = new Uint8Array(0)): Promise<void> {
    const link = this.#link, gen = this.#gen;
    if (!link) return Promise.reject(new Error("Link down"));
    const head = concat(new Uint8Array([type]), be32(payload.length));
    const p = this.#writeLock.then(async () => {
      if (gen !== this.#gen) throw new Error("Link replaced");
      await writeAll(link, head);
      if (payload.length) await writeAll(link, payload);
    });
    this.#writeLock = p.catch((e) => this.#linkDown(gen, `write failed: ${(e as Error).message}`));
    return p;
  }

  async #readApp(): Promise<void> {
    const b = new GrowingBuffer();
    try {
      while (this.state !== "closed") {
        const buf = b.buf;
        const n = await this.app.read(buf);
        if (n === null) break;
        await this.#spool.append(buf.subarray(0, n));
        b.filled(n);
        this.#kick();
      }
      this.#appEof = true;
      this.#kick();
    } catch (e) {
      if (this.state !== "closed") {
        this.#send(RST).catch(() => {});
        this.#fail(`application connection failed: ${(e as Error).message}`);
      }
    }
  }

  async #sender(): Promise<void> {
    while (this.state !== "closed") {
      const link = this.#link;
      if (link && this.#sendNext < this.#spool.end) {
        const gen = this.#gen;
        try {
          const chunk = await this.#spool.read(this.#sendNext, MAX_DATA);
          // A link attached while we read restarts from the peer's r_bytes: this chunk belongs
          // to the old offset and must not go out on the new link.
          if (gen !== this.#gen) continue;
          await this.#send(DATA, chunk);
          if (gen === this.#gen) this.#sendNext += chunk.length;
        } catch { /* link went down: wait for the next one */ }
        continue;
      }
      if (link && this.#appEof && !this.#finSent && this.#sendNext === this.#spool.end) {
        this.#finSent = true;
        await this.#send(FIN, be64(this.#spool.end)).catch(() => {});
        this.#checkDone();
        continue;
      }
      await this.#waitWork();
    }
  }

  async #readLink(link: Deno.TcpConn, gen: number): Promise<void> {
    try {
      while (gen === this.#gen && this.state !== "closed") {
        const head = await readExact(link, 5);
        const len = u32(head, 1);
        if (len > MAX_DATA + 1024) throw new Error(`Oversized link frame: ${len}`);
        const payload = len ? await readExact(link, len) : new Uint8Array(0);
        this.#lastRx = Date.now();
        if (gen !== this.#gen) return;
        switch (head[0]) {
          case DATA: {
            // Counted as received before it is written: a RESUME sent meanwhile (the link may be
            // declared down while we write) must not ask for these bytes again. Deliveries are
            // chained, so a new link's data always lands after this.
            this.recv += len;
            const delivery = this.#appWrite.then(() => writeAll(this.app, payload));
            this.#appWrite = delivery.catch(() => {});
            this.#readerBusy = true;
            try {
              await delivery;
            } catch (e) {
              this.#send(RST).catch(() => {});
              this.#fail(`application connection failed: ${(e as Error).message}`);
              return;
            } finally {
              this.#readerBusy = false;
            }
            this.#sinceAck += len;
            if (this.#sinceAck >= 256 * 1024) {
              this.#sinceAck = 0;
              this.#send(ACK, be64(this.recv)).catch(() => {});
            }
            break;
          }
          case ACK: {
            const acked = u64(payload, 0);
            if (acked > this.#spool.base && acked <= this.#spool.end) this.#spool.trim(acked);
            this.#checkDone();
            break;
          }
          case FIN:
            this.#peerFin = u64(payload, 0);
            this.#send(ACK, be64(this.recv)).catch(() => {});
            this.#checkDone();
            break;
          case RST:
            this.#fail("peer application reset the connection");
            return;
          default:
            break; // PING or future frames: a sign of life only
        }
      }
    } catch (e) {
      if (this.state === "closed" || gen !== this.#gen) return;
      // The peer closes the link only once its side is done, and it is done only when it has
      // every byte up to our FIN: a clean end of the link after both FINs is a clean end, even
      // if its last ACK did not reach us first.
      if (e instanceof StreamEndError && this.#finSent && this.#appEof && this.#peerFin !== null && this.recv === this.#peerFin) {
        this.#spool.trim(this.#spool.end);
        this.#checkDone();
        if ((this.state as string) === "closed") return;
      }
      this.#linkDown(gen, (e as Error).message);
    }
  }

  #checkDone(): void {
    if (this.#peerFin !== null && this.recv === this.#peerFin && !this.#appWriteClosed) {
      this.#appWriteClosed = true;
      this.#appWrite = this.#appWrite.then(() => this.app.closeWrite()).catch(() => {});
    }
    const allAcked = this.#spool.base === this.#spool.end;
    if (this.#appEof && this.#finSent && allAcked && this.#appWriteClosed) this.#close(true);
  }

  #tick(): void {
    if (this.state !== "up") return;
    // An ACK when there is something new to acknowledge; on an idle session only often enough
    // (a third of --dead-after) for the peer to see the link alive.
    const now = Date.now();
    if (this.recv !== this.#ackedRecv || now - this.#ackedAt >= this.cfg.deadMs / 3) {
      this.#ackedRecv = this.recv;
      this.#ackedAt = now;
      this.#send(ACK, be64(this.recv)).catch(() => {});
    }
    if (!this.#readerBusy && Date.now() - this.#lastRx > this.cfg.deadMs) {
      this.#linkDown(this.#gen, `nothing received for ${this.cfg.deadMs} ms`);
    }
  }

  #closeLink(): void {
    closeQuietly(this.#link);
    this.#link = null;
  }

  /** The current link failed: keep the applications, reconnect (initiator) or wait (responder). */
  #linkDown(gen: number, why: string): void {
    if (gen !== this.#gen || this.state !== "up") return;
    this.#gen++;
    this.#closeLink();
    this.state = "down";
    this.log(`session ${this.idHex}: link down (${why}); ${this.#spool.size} unacknowledged byte(s) kept`);
    this.#outageTimer = setTimeout(
      () => this.#fail(`outage longer than ${this.cfg.outageLimitMs / 1000} s`),
      this.cfg.outageLimitMs,
    );
    if (this.role === "initiator") this.#reconnect();
  }

  async #reconnect(): Promise<void> {
    let delay = this.cfg.retryFirstMs;
    while (this.state === "down") {
      await new Promise((r) => setTimeout(r, delay));
      if (this.state !== "down") return;
      try {
        const { link, peerRecv } = await this.redial!();
        this.reconnects++;
        this.attach(link, peerRecv);
        return;
      } catch (e) {
        if ((e as Error).name === "SessionGone") {
          this.#fail((e as Error).message);
          return;
        }
        delay = Math.min(delay * 2, this.cfg.retryMaxMs);
      }
    }
  }

  /** Ends with a reset of the application: never a silent truncation. */
  #fail(why: string): void {
    if (this.state === "closed") return;
    this.log(`session ${this.idHex}: reset (${why}) after ${this.#spool.end} bytes sent, ${this.recv} received`);
    if (this.#link) this.#send(RST).catch(() => {});
    resetConn(this.app);
    this.#close(false);
  }

  #close(clean: boolean): void {
    if (this.state === "closed") return;
    this.state = "closed";
    clearInterval(this.#timer);
    clearTimeout(this.#outageTimer);
    if (clean) {
      // Only after every byte for the application was written (and its write side closed).
      this.#appWrite.finally(() => closeQuietly(this.app));
    }
    // Let a final ACK/FIN drain before closing the link.
    this.#writeLock.finally(() => this.#closeLink());
    this.#spool.close();
    this.#kick();
    this.#finish(clean);
  }

  /** Resets the session from outside (router shutdown). */
  abort(why: string): void {
    this.#fail(why);
  }
}

/** A session the peer no longer knows: the applications must be reset. */
export class SessionGone extends Error {
  override readonly name = "SessionGone";
}
