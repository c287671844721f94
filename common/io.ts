/**
 * Byte-stream I/O over Deno connections and files: exact reads (never past what was asked, since
 * other bytes may follow), full writes, quiet closes and deadlines. Knows no wire format.
 */

/** Anything with a Deno-style `read`. */
export interface ByteReader {
  read(p: Uint8Array): Promise<number | null>;
}
/** Anything with a Deno-style `write`. */
export interface ByteWriter {
  write(p: Uint8Array): Promise<number>;
}

/** A stream that ended before the bytes asked for had come. */
export class StreamEndError extends Error {
  override readonly name = "StreamEndError";
}

/** Lengths up to this are allocated at once; a larger one grows as its bytes arrive. */
const ALLOCATE_AT_ONCE = 8 << 20;

/**
 * Reads exactly `n` bytes; throws StreamEndError on a premature end of stream. Memory follows what
 * arrived, not what a peer announced: past 8 MiB the buffer doubles as it fills (a peer that
 * announces 2 GiB and sends a kilobyte holds 8 MiB, not 2 GiB).
 */
export async function readExact(conn: ByteReader, n: number): Promise<Uint8Array> {
  let buf = new Uint8Array(Math.min(n, ALLOCATE_AT_ONCE));
  let off = 0;
  while (off < n) {
    if (off === buf.length) {
      const bigger = new Uint8Array(Math.min(n, buf.length * 2));
      bigger.set(buf);
      buf = bigger;
    }
    const got = await conn.read(buf.subarray(off));
    if (got === null) throw new StreamEndError(off === 0 ? "Connection closed" : `Connection closed after ${off} of ${n} bytes`);
    off += got;
  }
  return buf;
}

/** Writes all of `data`. */
export async function writeAll(conn: ByteWriter, data: Uint8Array): Promise<void> {
  let off = 0;
  while (off < data.length) off += await conn.write(data.subarray(off));
}

/** Closes each of `things`, ignoring those already closed (and any other failure to close). */
export function closeQuietly(...things: ({ close(): void } | undefined | null)[]): void {
  for (const t of things) {
    try {
      t?.close();
    } catch { /* already closed */ }
  }
}

/** A deadline passed (see `withTimeout`). */
export class TimeoutError extends Error {
  override readonly name = "TimeoutError";
}

/** Rejects with `TimeoutError` if `p` has not settled within `ms`; runs `onTimeout` first. */
export function withTimeout<T>(p: Promise<T>, ms: number, what: string, onTimeout?: () => void): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      onTimeout?.();
      reject(new TimeoutError(`Timed out after ${ms} ms: ${what}`));
    }, ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

/** Open connections that are closed together at shutdown: each is added when opened and closed through here. */
export class ConnSet {
  #conns = new Set<{ close(): void }>();

  /** Adds a connection (adding one twice is harmless). */
  add(conn: { close(): void }): void {
    this.#conns.add(conn);
  }

  /** Closes `conns` (quietly, see `closeQuietly`) and forgets them. */
  close(...conns: { close(): void }[]): void {
    for (const c of conns) {
      this.#conns.delete(c);
      closeQuietly(c);
    }
  }

  /** Forgets a connection without closing it (it was closed, or handed over, elsewhere). */
  forget(conn: { close(): void }): void {
    this.#conns.delete(conn);
  }

  /** Closes every connection still open. */
  closeAll(): void {
    this.close(...this.#conns);
  }
}
