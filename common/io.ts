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

/** Reads exactly `n` bytes; throws StreamEndError on a premature end of stream. */
export async function readExact(conn: ByteReader, n: number): Promise<Uint8Array> {
  const buf = new Uint8Array(n);
  let off = 0;
  while (off < n) {
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
