/**
 * Frames over Deno connections: exact reads (never past a frame, since stream bytes may follow
 * it), frame reads with a deadline, and full writes.
 */
import { decodeFrame, type Frame, FrameError, HEAD_LEN, MAC_LEN, parseHead } from "./wire.ts";

/** Anything with a Deno-style `read`. */
export interface ByteReader {
  read(p: Uint8Array): Promise<number | null>;
}
/** Anything with a Deno-style `write`. */
export interface ByteWriter {
  write(p: Uint8Array): Promise<number>;
}

/** Reads exactly `n` bytes; throws FrameError on a premature end of stream. */
export async function readExact(conn: ByteReader, n: number): Promise<Uint8Array> {
  const buf = new Uint8Array(n);
  let off = 0;
  while (off < n) {
    const got = await conn.read(buf.subarray(off));
    if (got === null) throw new FrameError(off === 0 ? "Connection closed" : `Connection closed after ${off} of ${n} bytes`);
    off += got;
  }
  return buf;
}

/** Writes all of `data`. */
export async function writeAll(conn: ByteWriter, data: Uint8Array): Promise<void> {
  let off = 0;
  while (off < data.length) off += await conn.write(data.subarray(off));
}

/** Rejects with `TimeoutError` if `p` has not settled within `ms`; runs `onTimeout` first. */
export class TimeoutError extends Error {
  override readonly name = "TimeoutError";
}
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

/** Reads and verifies one frame. A conn closed by the deadline makes the read fail. */
export async function readFrame(conn: Deno.Conn, key: Uint8Array, timeoutMs: number): Promise<Frame> {
  const read = async () => {
    const head = await readExact(conn, HEAD_LEN);
    const { bodyLen } = parseHead(head);
    const rest = await readExact(conn, bodyLen + MAC_LEN);
    const whole = new Uint8Array(HEAD_LEN + bodyLen + MAC_LEN);
    whole.set(head);
    whole.set(rest, HEAD_LEN);
    return decodeFrame(key, whole);
  };
  return await withTimeout(read(), timeoutMs, "reading a frame", () => {
    try {
      conn.close();
    } catch { /* already closed */ }
  });
}
