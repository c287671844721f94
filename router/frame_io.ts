/**
 * UVPN frames over Deno connections: reading one whole frame with a deadline (exact reads, never
 * past the frame, since stream bytes may follow it), writing a REPLY, and one request/reply
 * exchange between routers on a connection already open.
 */
import { sameBytes } from "../common/bytes.ts";
import { closeQuietly, readExact, StreamEndError, withTimeout, writeAll } from "../common/io.ts";
import {
  decodeFrame,
  encodeFrame,
  encodeReply,
  type Frame,
  FrameError,
  FrameType,
  HEAD_LEN,
  MAC_LEN,
  newNonce,
  parseHead,
} from "./wire.ts";

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

/** Answers the request `frame` with a REPLY of `status` (and `data`). */
export async function writeReply(
  conn: Deno.Conn,
  key: Uint8Array,
  frame: Frame,
  status: number,
  data?: Uint8Array,
): Promise<void> {
  await writeAll(conn, encodeFrame(key, FrameType.REPLY, frame.nonce, encodeReply(status, data)));
}

/**
 * One request/reply exchange with a peer router on an open connection: sends a `type` frame with
 * `body`, reads the reply and throws FrameError(`badReply`) unless it is the REPLY to it.
 */
export async function exchange(
  conn: Deno.Conn,
  key: Uint8Array,
  type: number,
  body: Uint8Array,
  timeoutMs: number,
  badReply: string,
): Promise<Frame> {
  const nonce = newNonce();
  await writeAll(conn, encodeFrame(key, type, nonce, body));
  const reply = await readFrame(conn, key, timeoutMs);
  if (reply.type !== FrameType.REPLY || !sameBytes(reply.nonce, nonce)) throw new FrameError(badReply);
  return reply;
}
