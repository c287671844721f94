/**
 * B's connection to A's file server: sealed after the handshake, pipelined requests matched by
 * id and written most urgent first (xufs/schedule.ts: a stat is not sent behind a range being
 * uploaded), streamed replies (parts before the final answer), and a watchdog on progress rather than
 * on whole requests: the link is declared lost only when requests are waiting and nothing at all
 * has arrived for `timeoutMs` (A sends `busy` notices during long requests), so a transfer of any
 * size goes on while bytes flow, and a dead link turns into EIO within seconds instead of a hang.
 */
import { closeQuietly } from "../common/io.ts";
import { FsError } from "./fserror.ts";
import { clientHandshake, encodeMessage, type Message, priorityOf, readMessage } from "./messages.ts";
import { Outbox } from "./schedule.ts";
import type { RawConn, SealedConn } from "./seal.ts";

/** Default seconds without progress before a link counts as lost (XUFS_TIMEOUT). */
export const DEFAULT_TIMEOUT_MS = 10_000;

interface Pending {
  resolve: (m: Message) => void;
  reject: (e: Error) => void;
  onPart?: (head: Record<string, unknown>) => void;
}

/** Options of one request. */
export interface RequestOptions {
  /** Called with each part of a streamed reply, in order, before the final answer. */
  onPart?: (head: Record<string, unknown>) => void;
}

/** One authenticated connection to the file server. */
export class Remote {
  #next = 1;
  #pending = new Map<number, Pending>();
  #closed = false;
  #out: Outbox;
  #watchdog: ReturnType<typeof setInterval>;
  /** Why the link went down (once it did). */
  reason = "";
  /** Called with each message the server pushes unasked (change callbacks). */
  onNotice: (head: Record<string, unknown>) => void = () => {};
  /** Called once when the link goes down, with the reason. */
  onClose: (reason: string) => void = () => {};

  private constructor(private readonly conn: SealedConn, private readonly clock: { last: number }, readonly timeoutMs: number) {
    this.#out = new Outbox(conn);
    this.#watchdog = setInterval(() => {
      if (this.#pending.size > 0 && Date.now() - clock.last > timeoutMs) {
        this.close(`no answer from host A for ${Math.round(timeoutMs / 1000)} s`);
      }
    }, Math.max(50, Math.min(1000, timeoutMs / 4)));
    this.#readLoop();
  }

  /** Authenticates over `conn` and starts reading replies. */
  static async open(conn: RawConn, secret: string, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<Remote> {
    // Every byte moved, either way, is progress.
    const clock = { last: Date.now() };
    const counted: RawConn = {
      read: async (p) => {
        const n = await conn.read(p);
        if (n) clock.last = Date.now();
        return n;
      },
      write: async (p) => {
        const n = await conn.write(p);
        clock.last = Date.now();
        return n;
      },
      close: () => conn.close(),
    };
    try {
      return new Remote(await clientHandshake(counted, secret), clock, timeoutMs);
    } catch (e) {
      closeQuietly(conn);
      throw e;
    }
  }

  /** Whether the link is still up. */
  get up(): boolean {
    return !this.#closed;
  }

  /** Requests waiting for their answer. */
  get busy(): number {
    return this.#pending.size;
  }

  async #readLoop(): Promise<void> {
    let reason = "the file server closed the link";
    try {
      while (true) {
        const m = await readMessage(this.conn);
        if (!m) break;
        if (m.head.op === "busy") continue; // progress on a long request
        if (m.head.id === undefined) {
          this.onNotice(m.head);
          continue;
        }
        const p = this.#pending.get(m.head.id);
        if (!p) continue;
        if (m.head.part === true) {
          p.onPart?.(m.head);
          continue;
        }
        this.#pending.delete(m.head.id);
        if (m.head.error) p.reject(new FsError(String(m.head.error), String(m.head.message ?? m.head.error)));
        else p.resolve(m);
      }
    } catch (e) {
      reason = `the link broke: ${(e as Error).message}`;
    }
    this.close(reason);
  }

  /** Closes the link; pending requests fail with EIO. */
  close(reason = "closed"): void {
    if (this.#closed) return;
    this.#closed = true;
    this.reason = reason;
    clearInterval(this.#watchdog);
    closeQuietly(this.conn);
    for (const [, p] of this.#pending) p.reject(new FsError("EIO", `Link to the file server is down: ${reason}`));
    this.#pending.clear();
    this.onClose(reason);
  }

  /** Sends a request; resolves with the final reply, or rejects with FsError (its `error` code). */
  request(head: Record<string, unknown>, payload?: Uint8Array, opts: RequestOptions = {}): Promise<Message> {
    if (this.#closed) return Promise.reject(new FsError("EIO", `Link to the file server is down: ${this.reason}`));
    const id = this.#next++;
    if (this.#pending.size === 0) this.clock.last = Date.now(); // idle until now: the clock starts here
    return new Promise<Message>((resolve, reject) => {
      this.#pending.set(id, { resolve, reject, onPart: opts.onPart });
      this.#out.send(encodeMessage({ ...head, id }, payload), priorityOf(head)).catch((e) => this.close(`cannot send to the file server: ${(e as Error).message}`));
    });
  }
}
