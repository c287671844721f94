/**
 * UVPN links (docs/PROTOCOL.md, "Links and the handshake") over Deno connections: the
 * client-first HELLO / CHALLENGE handshake on both sides, per-link direction keys, frames read
 * and written with their sequence numbers checked, and the client's pipelined request/answer
 * exchange (answers matched by request id, in any order). Knows no request semantics: the router
 * (router/router.ts) and the commands build on it.
 */
import { closeQuietly, readExact, StreamEndError, TimeoutError, withTimeout, writeAll } from "../common/io.ts";
import { concat } from "../common/bytes.ts";
import {
  decodeFrame,
  decodeHello,
  encodeFrame,
  encodeHello,
  type Frame,
  FrameError,
  FrameType,
  HEAD_LEN,
  type Hello,
  linkKeys,
  MAC_LEN,
  MAGIC,
  parseHead,
  randomId,
} from "./wire.ts";

/** `readExact`, an early end of stream reported as a FrameError (how callers tell a refusal). */
export async function readPart(conn: Deno.Conn, n: number): Promise<Uint8Array> {
  try {
    return await readExact(conn, n);
  } catch (e) {
    if (e instanceof StreamEndError) throw new FrameError(e.message);
    throw e;
  }
}

/**
 * The first bytes of a connection, as many as one read gives (at least 4, at most `max`): a
 * router takes the head of a HELLO in one read where it has come.
 */
export async function readStart(conn: Deno.Conn, max: number): Promise<Uint8Array> {
  const buf = new Uint8Array(max);
  let off = 0;
  while (off < 4) {
    const got = await conn.read(buf.subarray(off));
    if (got === null) throw new FrameError(off === 0 ? "Connection closed" : `Connection closed after ${off} of 4 bytes`);
    off += got;
  }
  return buf.subarray(0, off);
}

/**
 * Reads the rest of a frame whose head is `head` (and whose next bytes `have` were read with
 * it) and verifies it under `mk`.
 */
async function readRest(conn: Deno.Conn, head: Uint8Array, mk: Uint8Array, authenticated: boolean, have?: Uint8Array): Promise<Frame> {
  const { bodyLen } = parseHead(head, authenticated);
  const need = bodyLen + MAC_LEN;
  if (have && have.length > need) throw new FrameError(`Bytes after the first frame before its answer: ${have.length - need}`);
  const rest = have?.length ? concat(have, await readPart(conn, need - have.length)) : await readPart(conn, need);
  const whole = new Uint8Array(HEAD_LEN + bodyLen + MAC_LEN);
  whole.set(head);
  whole.set(rest, HEAD_LEN);
  return decodeFrame(mk, whole, authenticated);
}

/** One authenticated link: frames in both directions, each MACed with its direction's key. */
export class Link {
  #sendSeq = 1;
  #recvSeq = 1;
  #writing: Promise<void> = Promise.resolve();
  #closed = false;

  constructor(
    readonly conn: Deno.TcpConn,
    /** This side's direction key for what it sends, and the other's. */
    readonly sendKey: Uint8Array,
    readonly recvKey: Uint8Array,
    /** The HELLO of the client side (the router's view) or the one we sent (the client's). */
    readonly hello: Hello,
  ) {}

  /** The seq of the next frame sent, and of the next one expected (a data-plane handover). */
  get sendSeq(): number {
    return this.#sendSeq;
  }

  get recvSeq(): number {
    return this.#recvSeq;
  }

  /** The peer's address, `host:port`. */
  get peer(): string {
    const a = this.conn.remoteAddr as Deno.NetAddr;
    return `${a.hostname}:${a.port}`;
  }

  /** The peer's host address. */
  get peerHost(): string {
    return (this.conn.remoteAddr as Deno.NetAddr).hostname;
  }

  /** Sends one frame (writes are serialized, so frames never interleave). */
  send(type: number, reqId: number, body?: Uint8Array): Promise<void> {
    const frame = encodeFrame(this.sendKey, type, this.#sendSeq++, reqId, body);
    const p = this.#writing.then(() => writeAll(this.conn, frame));
    this.#writing = p.catch(() => {});
    return p;
  }

  /** Answers request `reqId` with a REPLY of `status` and `data`. */
  reply(reqId: number, status: number, data: Uint8Array = new Uint8Array(0)): Promise<void> {
    const body = new Uint8Array(1 + data.length);
    body[0] = status;
    body.set(data, 1);
    return this.send(FrameType.REPLY, reqId, body);
  }

  /** Reads the next frame; throws FrameError on any check that fails (the link must end). */
  async read(): Promise<Frame> {
    const f = await readRest(this.conn, await readPart(this.conn, HEAD_LEN), this.recvKey, true);
    if (f.seq !== this.#recvSeq) throw new FrameError(`Out-of-order frame: seq ${f.seq}, expected ${this.#recvSeq}`);
    this.#recvSeq++;
    return f;
  }

  /** Waits until every frame sent so far is written. */
  flushed(): Promise<void> {
    return this.#writing;
  }

  /** Closes the connection. */
  close(): void {
    this.#closed = true;
    closeQuietly(this.conn);
  }

  /** Whether close() was called. */
  get closed(): boolean {
    return this.#closed;
  }
}

/**
 * The router's side of the handshake on a connection whose first bytes (`start`, already read:
 * `readStart`) begin with "UVPN": reads and verifies HELLO, answers CHALLENGE and returns the link.
 */
export async function acceptLink(conn: Deno.TcpConn, key: Uint8Array, start: Uint8Array): Promise<Link> {
  const head = start.length >= HEAD_LEN ? start.subarray(0, HEAD_LEN) : concat(start, await readPart(conn, HEAD_LEN - start.length));
  const f = await readRest(conn, head, key, false, start.subarray(Math.min(start.length, HEAD_LEN)));
  if (f.type !== FrameType.HELLO || f.seq !== 0 || f.reqId !== 0) throw new FrameError(`Expected HELLO, got type ${f.type}`);
  const hello = decodeHello(f.body);
  const nr = randomId();
  const challenge = new Uint8Array(32);
  challenge.set(nr);
  challenge.set(hello.nc, 16);
  await writeAll(conn, encodeFrame(key, FrameType.CHALLENGE, 0, 0, challenge));
  const keys = linkKeys(key, hello.nc, nr);
  return new Link(conn, keys.down, keys.up, hello);
}

/** Where a router listens. */
export interface RouterAddr {
  host: string;
  port: number;
}

/** A failure of a link's client side: how it ended, for the caller's error class. */
export class LinkError extends Error {
  constructor(message: string, readonly kind: "unreachable" | "refused" | "timeout" | "closed") {
    super(message);
    this.name = "LinkError";
  }
}

/** An answer to a request. */
export interface Answer {
  status: number;
  data: Uint8Array;
}

/** How a link is opened: the role and holder token sent in HELLO, and the deadline. */
export interface LinkOptions {
  role?: number;
  holder?: Uint8Array;
  timeoutMs?: number;
}

/**
 * Connects to a router and runs the client side of the handshake within `timeoutMs`; returns the
 * bare link (no reader running). A router that closes during the handshake refused our key.
 */
export async function openLink(addr: RouterAddr, key: Uint8Array, opts: LinkOptions = {}): Promise<Link> {
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const where = `${addr.host}:${addr.port}`;
  let conn: Deno.TcpConn;
  try {
    conn = await withTimeout(Deno.connect({ hostname: addr.host, port: addr.port }), timeoutMs, `connecting to ${where}`);
  } catch (e) {
    const why = e instanceof TimeoutError ? "timed out" : (e as Error).message;
    throw new LinkError(`Cannot reach router: ${where} (${why})`, e instanceof TimeoutError ? "timeout" : "unreachable");
  }
  conn.setNoDelay(true);
  conn.setKeepAlive(true);
  const hello: Hello = { role: opts.role ?? 1, flags: 0, nc: randomId(), holder: opts.holder ?? new Uint8Array(16) };
  try {
    const handshake = async () => {
      await writeAll(conn, encodeFrame(key, FrameType.HELLO, 0, 0, encodeHello(hello)));
      const f = await readRest(conn, await readPart(conn, HEAD_LEN), key, false);
      if (f.type !== FrameType.CHALLENGE || f.body.length !== 32 || f.seq !== 0) throw new FrameError("Bad CHALLENGE");
      for (let i = 0; i < 16; i++) if (f.body[16 + i] !== hello.nc[i]) throw new FrameError("CHALLENGE does not echo our nonce");
      const keys = linkKeys(key, hello.nc, f.body.subarray(0, 16));
      return new Link(conn, keys.up, keys.down, hello);
    };
    return await withTimeout(handshake(), timeoutMs, `handshake with ${where}`, () => closeQuietly(conn));
  } catch (e) {
    closeQuietly(conn);
    if (e instanceof TimeoutError) throw new LinkError(`No answer from router: ${where} (${e.message})`, "timeout");
    throw new LinkError(`Router refused the link (wrong network key?): ${where} (${(e as Error).message})`, "refused");
  }
}

/**
 * One request on a bare link whose reader is ours: sends it and reads the next frame, which must
 * be its REPLY (router to router: SESSION, RESUME, a carrier's CONNECT, after which the stream
 * changes hands).
 */
export async function exchange(link: Link, type: number, body: Uint8Array, timeoutMs: number): Promise<Answer> {
  await link.send(type, 1, body);
  const f = await withTimeout(link.read(), timeoutMs, "waiting for the peer router's answer", () => link.close());
  if (f.type !== FrameType.REPLY || f.reqId !== 1 || f.body.length < 1) throw new FrameError(`Expected a REPLY, got type ${f.type}`);
  return { status: f.body[0], data: f.body.subarray(1) };
}

/**
 * The client side of a link: connect, handshake, then requests with pipelined answers. A
 * router that closes during the handshake refused our key (kind "refused").
 */
export class ClientLink {
  #next = 1;
  #waiting = new Map<number, { resolve: (a: Answer) => void; reject: (e: Error) => void }>();
  #ended?: Error;
  /** Resolves when the link has ended (closed by either side). */
  readonly ended: Promise<Error>;
  #end!: (e: Error) => void;

  private constructor(readonly link: Link, readonly addr: RouterAddr) {
    this.ended = new Promise((r) => (this.#end = r));
    this.#readLoop();
  }

  /** Connects to a router and runs the handshake, all within `timeoutMs`. */
  static async open(addr: RouterAddr, key: Uint8Array, opts: LinkOptions = {}): Promise<ClientLink> {
    return new ClientLink(await openLink(addr, key, opts), addr);
  }

  async #readLoop(): Promise<void> {
    let why: Error;
    try {
      for (;;) {
        const f = await this.link.read();
        if (f.type !== FrameType.REPLY || f.body.length < 1) continue; // PING/PONG or future frames
        const w = this.#waiting.get(f.reqId);
        if (!w) continue;
        this.#waiting.delete(f.reqId);
        w.resolve({ status: f.body[0], data: f.body.subarray(1) });
      }
    } catch (e) {
      why = e instanceof FrameError && /closed/i.test(e.message)
        ? new LinkError(`Router closed the link: ${this.addr.host}:${this.addr.port}`, "closed")
        : e as Error;
    }
    this.#ended = why;
    for (const w of this.#waiting.values()) w.reject(why);
    this.#waiting.clear();
    this.#end(why);
  }

  /** Sends one request and waits (at most `timeoutMs`) for its answer. */
  async request(type: number, body: Uint8Array = new Uint8Array(0), timeoutMs = 10_000): Promise<Answer> {
    if (this.#ended) throw this.#ended;
    const id = this.#next++;
    const answer = new Promise<Answer>((resolve, reject) => this.#waiting.set(id, { resolve, reject }));
    await this.link.send(type, id, body);
    try {
      return await withTimeout(answer, timeoutMs, `waiting for the router's answer`);
    } finally {
      this.#waiting.delete(id);
    }
  }

  /** Closes the link. */
  close(): void {
    this.link.close();
  }
}

/** True when `b` starts with the frame magic. */
export function isFrameMagic(b: Uint8Array): boolean {
  return b.length >= 4 && b[0] === MAGIC[0] && b[1] === MAGIC[1] && b[2] === MAGIC[2] && b[3] === MAGIC[3];
}
