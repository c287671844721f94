/**
 * UVPN frames over Deno connections: reading one whole frame with a deadline (exact reads, never
 * past the frame, since stream bytes may follow it) and writing a REPLY frame.
 */
import { closeQuietly, readExact, StreamEndError, withTimeout } from "../common/io.ts";
import { decodeFrame, type Frame, FrameError, HEAD_LEN, MAC_LEN, parseHead } from "./wire.ts";

/** `readExact`, an early end of stream reported as a FrameError (how callers tell a refusal). */
async function readPart(conn: Deno.Conn, n: number): Promise<Uint8Array> {
  try {
    return await readExact(conn, n);
  } catch (e) {
    if (e instanceof StreamEndError) throw new FrameError(e.message);
    throw e;
  }
}

/** Reads and verifies one frame. A conn closed by the deadline makes the read fail. */
export async function readFrame(conn: Deno.Conn, key: Uint8Array, timeoutMs: number): Promise<Frame> {
  const read = async () => {
    const head = await readPart(conn, HEAD_LEN);
    const { bodyLen } = parseHead(head);
    const rest = await readPart(conn, bodyLen + MAC_LEN);
    const whole = new Uint8Array(HEAD_LEN + bodyLen + MAC_LEN);
    whole.set(head);
    whole.set(rest, HEAD_LEN);
    return decodeFrame(key, whole);
  };
  return await withTimeout(read(), timeoutMs, "reading a frame", () => closeQuietly(conn));
}
