/**
 * B's connection to A's file server: pipelined requests matched by id, each with a deadline, so
 * a dead link turns into EIO within seconds instead of a hang.
 */
import { closeQuietly } from "../common/io.ts";
import { FsError } from "./confine.ts";
import { clientHandshake, type Message, readMessage, writeMessage } from "./messages.ts";

/** Deadline for a request without a large payload. */
export const REQUEST_TIMEOUT_MS = 10_000;

interface Pending {
  resolve: (m: Message) => void;
  reject: (e: Error) => void;
  timer: ReturnType<typeof setTimeout>;
}

/** One authenticated connection to the file server. */
export class Remote {
  #next = 1;
  #pending = new Map<number, Pending>();
  #closed = false;
  #writing: Promise<void> = Promise.resolve();
  /** Called with each message the server pushes unasked (change callbacks). */
  onNotice: (head: Record<string, unknown>) => void = () => {};

  private constructor(private readonly conn: Deno.Conn) {
    this.#readLoop();
  }

  /** Authenticates over `conn` and starts reading replies. */
  static async open(conn: Deno.Conn, secret: string): Promise<Remote> {
    await clientHandshake(conn, secret);
    return new Remote(conn);
  }

  /** Whether the link is still up. */
  get up(): boolean {
    return !this.#closed;
  }

  async #readLoop(): Promise<void> {
    try {
      while (true) {
        const m = await readMessage(this.conn);
        if (!m) break;
        if (m.head.id === undefined) {
          this.onNotice(m.head);
          continue;
        }
        const p = this.#pending.get(m.head.id);
        if (!p) continue;
        this.#pending.delete(m.head.id);
        clearTimeout(p.timer);
        p.resolve(m);
      }
    } catch { /* link broken */ }
    this.close();
  }

  /** Closes the link; pending requests fail with EIO. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    closeQuietly(this.conn);
    for (const [, p] of this.#pending) {
      clearTimeout(p.timer);
      p.reject(new FsError("EIO", "Link to the file server is down"));
    }
    this.#pending.clear();
  }

  /** Sends a request; resolves with the reply, or rejects with FsError (its `error` code). */
  request(head: Record<string, unknown>, payload?: Uint8Array, timeoutMs?: number): Promise<Message> {
    if (this.#closed) return Promise.reject(new FsError("EIO", "Link to the file server is down"));
    const id = this.#next++;
    const size = payload?.length ?? 0;
    const ms = timeoutMs ?? REQUEST_TIMEOUT_MS + Math.ceil(size / 1_000_000) * 1000;
    return new Promise<Message>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new FsError("EIO", `File server did not answer ${String(head.op)} within ${ms} ms`));
        this.close();
      }, ms);
      this.#pending.set(id, {
        resolve: (m) => (m.head.error ? reject(new FsError(String(m.head.error), String(m.head.message ?? m.head.error))) : resolve(m)),
        reject,
        timer,
      });
      this.#writing = this.#writing.then(() => writeMessage(this.conn, { ...head, id }, payload)).catch((e) => {
        reject(new FsError("EIO", `Cannot send to the file server: ${(e as Error).message}`));
        this.close();
      });
    });
  }
}
