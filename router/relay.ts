/**
 * Local relays: a virtual connection to an address of our own subnet is joined to the real
 * listener registered for it (dialed by router/connects.ts), and bytes are relayed between
 * the two connections by a read/write loop per direction with one reused buffer each (16 KiB,
 * growing to 256 KiB when reads fill it),
 * propagating half-close (EOF on one side becomes closeWrite on the other).
 */
import { closeQuietly, writeAll } from "../common/io.ts";
import type { RouterCounters } from "./counters.ts";

/** Where a virtual connection goes next: the open connection, and what it is (for logs). */
export interface Hop {
  conn: Deno.TcpConn;
  via: string;
}

/** Why a virtual connection cannot be made: the status the client gets, and why (for logs). */
export interface Refusal {
  status: number;
  why: string;
}

/** Largest size of each direction's reused buffer. */
export const RELAY_BUFFER = 256 * 1024;
/** First size of a direction's buffer: an idle connection holds only this much. */
export const RELAY_BUFFER_FIRST = 16 * 1024;

/**
 * A read buffer that starts small and doubles (up to RELAY_BUFFER) each time a read fills it, so
 * idle and short connections cost little while bulk transfers get the large buffer after a few
 * reads.
 */
export class GrowingBuffer {
  #buf = new Uint8Array(RELAY_BUFFER_FIRST);

  /** The buffer to read into next. */
  get buf(): Uint8Array {
    return this.#buf;
  }

  /** After a read of `n` bytes: grows when the read filled it. */
  filled(n: number): void {
    if (n === this.#buf.length && n < RELAY_BUFFER) this.#buf = new Uint8Array(n * 2);
  }
}

/** Byte counts of a finished relay. */
export interface RelayResult {
  aToB: number;
  bToA: number;
}

async function pump(from: Deno.TcpConn, to: Deno.TcpConn): Promise<number> {
  const b = new GrowingBuffer();
  let total = 0;
  while (true) {
    const buf = b.buf;
    const n = await from.read(buf);
    if (n === null) break;
    await writeAll(to, buf.subarray(0, n));
    total += n;
    b.filled(n);
  }
  await to.closeWrite();
  return total;
}

/**
 * Copies both ways until both directions reached EOF, then closes both. An error in either
 * direction (reset) closes both at once, so the far ends see the reset too.
 */
export async function relay(a: Deno.TcpConn, b: Deno.TcpConn): Promise<RelayResult> {
  const closeBoth = () => closeQuietly(a, b);
  const onError = (e: unknown): never => {
    closeBoth();
    throw e;
  };
  const results = await Promise.allSettled([pump(a, b).catch(onError), pump(b, a).catch(onError)]);
  closeBoth();
  const failed = results.find((r) => r.status === "rejected");
  if (failed) throw (failed as PromiseRejectedResult).reason;
  const [aToB, bToA] = results.map((r) => (r as PromiseFulfilledResult<number>).value);
  return { aToB, bToA };
}

/**
 * Relays a local virtual connection until both sides end, with the counters and log line of a
 * finished relay; a reset is logged, not thrown.
 */
export async function relayLocal(
  up: Deno.TcpConn,
  down: Deno.TcpConn,
  what: string,
  counters: RouterCounters,
  log: (line: string) => void,
): Promise<void> {
  try {
    const r = await relay(up, down);
    log(counters.relayFinished(what, r.aToB, r.bToA));
  } catch (e) {
    log(`relay ${what} reset: ${(e as Error).message}`);
  }
}
