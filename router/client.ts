/**
 * The client side of one request/reply exchange with a router: used by uvpn_register for
 * control requests and by a router to forward CONNECT to its peer.
 */
import { sameBytes } from "../common/bytes.ts";
import { AuthError, NetworkError } from "../common/errors.ts";
import { closeQuietly, TimeoutError, withTimeout, writeAll } from "../common/io.ts";
import { readFrame } from "./frame_io.ts";
import { encodeFrame, type Frame, FrameError, FrameType, newNonce, Status, statusName } from "./wire.ts";

/** Where a router listens. */
export interface RouterAddr {
  host: string;
  port: number;
}

/** Options of a request. */
export interface RequestOptions {
  timeoutMs?: number;
  /** Keep the connection open after the reply (CONNECT: the stream follows). */
  keepOpen?: boolean;
}

/** A reply and, when kept open, the connection it came on. */
export interface Reply {
  status: number;
  data: Uint8Array;
  conn?: Deno.TcpConn;
}

/** Connects to a router, mapping failures to NetworkError. */
export async function dialRouter(addr: RouterAddr, timeoutMs: number): Promise<Deno.TcpConn> {
  try {
    const conn = await withTimeout(
      Deno.connect({ hostname: addr.host, port: addr.port }),
      timeoutMs,
      `connecting to ${addr.host}:${addr.port}`,
    );
    conn.setNoDelay(true);
    return conn;
  } catch (e) {
    const why = e instanceof TimeoutError ? "timed out" : (e as Error).message;
    throw new NetworkError(`Cannot reach router: ${addr.host}:${addr.port} (${why})`);
  }
}

/**
 * Sends one request frame and reads its reply. A router that closes without replying
 * refused our key (AuthError).
 */
export async function request(
  addr: RouterAddr,
  key: Uint8Array,
  type: number,
  body: Uint8Array,
  opts: RequestOptions = {},
): Promise<Reply> {
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const conn = await dialRouter(addr, timeoutMs);
  const nonce = newNonce();
  let reply: Frame;
  try {
    await writeAll(conn, encodeFrame(key, type, nonce, body));
    reply = await readFrame(conn, key, timeoutMs);
  } catch (e) {
    closeQuietly(conn); // may be closed by the deadline already
    if (e instanceof FrameError && /closed|MAC/.test(e.message)) {
      throw new AuthError(
        `Router refused the request (wrong network key?): ${addr.host}:${addr.port} (${e.message})`,
      );
    }
    throw new NetworkError(`No reply from router: ${addr.host}:${addr.port} (${(e as Error).message})`);
  }
  if (reply.type !== FrameType.REPLY || reply.body.length < 1 || !sameBytes(reply.nonce, nonce)) {
    conn.close();
    throw new NetworkError(`Bad reply from router: ${addr.host}:${addr.port}`);
  }
  const status = reply.body[0];
  if (opts.keepOpen && status === Status.OK) return { status, data: reply.body.subarray(1), conn };
  conn.close();
  return { status, data: reply.body.subarray(1) };
}

/** Like `request`, but a non-OK status becomes a NetworkError naming it. */
export async function requestOk(
  addr: RouterAddr,
  key: Uint8Array,
  type: number,
  body: Uint8Array,
  what: string,
): Promise<Uint8Array> {
  const reply = await request(addr, key, type, body);
  if (reply.status !== Status.OK) {
    throw new NetworkError(`Router refused ${what}: ${statusName(reply.status)}`);
  }
  return reply.data;
}
