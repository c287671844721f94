/**
 * The sealed byte stream every XUFS link uses after its handshake (docs/XUFS.md, "File
 * protocol"): the stream is cut into records, each `u32 length` (big-endian; ciphertext and tag)
 * then AES-256-GCM of at most 64 KiB, under the direction's key derived from the handshake
 * (HKDF-SHA256 of the session secret and both nonces), with a 96-bit nonce counting records from
 * zero and the length as additional data. A record altered, injected, dropped, replayed or
 * reordered fails authentication, and the stream ends with SealError.
 */
import { createCipheriv, createDecipheriv, hkdfSync } from "node:crypto";
import { be32, concat, u32 } from "../common/bytes.ts";
import { type RouterLib, routerLib } from "../ffi/librouter.ts";
import { type ByteReader, type ByteWriter, closeQuietly, readExact, writeAll } from "../common/io.ts";

/** Largest plaintext of one record. */
export const RECORD_MAX = 64 * 1024;
const TAG = 16;

/** A record failed authentication: the stream was tampered with. */
export class SealError extends Error {
  override readonly name = "SealError";
}

/** The two directions' keys of a link. */
export interface SessionKeys {
  /** Client (B, the cache manager) to server (A, the file server). */
  c2s: Uint8Array;
  s2c: Uint8Array;
}

/** Derives a link's keys from the session secret and the nonces of its handshake. */
export function deriveKeys(secret: string, serverNonce: string, clientNonce: string): SessionKeys {
  const key = (info: string) => new Uint8Array(hkdfSync("sha256", secret, `${serverNonce}:${clientNonce}`, info, 32));
  return { c2s: key("xufs c2s"), s2c: key("xufs s2c") };
}

/** A connection, as the sealed stream needs it. */
export interface RawConn extends ByteReader, ByteWriter {
  close(): void;
}

/** The 96-bit nonce of record number `n`. */
function nonceOf(n: bigint): Uint8Array {
  const iv = new Uint8Array(12);
  new DataView(iv.buffer).setBigUint64(4, n);
  return iv;
}

/** One direction's key: seals or opens records by number (the format above). */
export interface RecordKey {
  /** Record number `n` of `chunk` (at most RECORD_MAX bytes), sealed into `out`: head, ciphertext, tag. */
  seal(n: bigint, chunk: Uint8Array, out: Uint8Array): void;
  /** The plaintext of record number `n` (head: its 4 bytes; body: ciphertext and tag, opened in place), or null when it does not authenticate. */
  open(n: bigint, head: Uint8Array, body: Uint8Array): Uint8Array | null;
}

/** Records through Deno's node:crypto (the reference; used where libuvpnrouter.so is missing). */
export class NodeRecordKey implements RecordKey {
  constructor(private readonly key: Uint8Array) {}

  seal(n: bigint, chunk: Uint8Array, out: Uint8Array): void {
    const head = be32(chunk.length + TAG);
    const c = createCipheriv("aes-256-gcm", this.key, nonceOf(n));
    c.setAAD(head);
    out.set(head);
    out.set(c.update(chunk), 4);
    c.final();
    out.set(c.getAuthTag(), 4 + chunk.length);
  }

  open(n: bigint, head: Uint8Array, body: Uint8Array): Uint8Array | null {
    const d = createDecipheriv("aes-256-gcm", this.key, nonceOf(n));
    d.setAAD(head);
    d.setAuthTag(body.subarray(body.length - TAG));
    try {
      const out = d.update(body.subarray(0, body.length - TAG));
      d.final();
      return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
    } catch {
      return null;
    }
  }
}

/** Records through the routers' AES-GCM in libuvpnrouter.so (native/router/seal.c): the same bytes, some 40 times faster here. */
export class NativeRecordKey implements RecordKey {
  /** The key schedule; garbage-collected with this object, so a late record never reads freed memory. */
  readonly #ctx: Uint8Array;
  readonly #lib: RouterLib;

  constructor(key: Uint8Array, lib: RouterLib = routerLib()) {
    this.#lib = lib;
    this.#ctx = new Uint8Array(lib.uvpn_seal_ctx_size());
    lib.uvpn_seal_init(this.#ctx, key);
  }

  seal(n: bigint, chunk: Uint8Array, out: Uint8Array): void {
    if (this.#lib.uvpn_seal_record(this.#ctx, n, chunk, chunk.length, out) < 0) throw new RangeError(`A record cannot hold ${chunk.length} bytes`);
  }

  open(n: bigint, head: Uint8Array, body: Uint8Array): Uint8Array | null {
    const len = this.#lib.uvpn_open_record(this.#ctx, n, head, body, body.length);
    return len < 0 ? null : body.subarray(0, len);
  }
}

let native: boolean | undefined;

/** A direction's RecordKey: native when libuvpnrouter.so opens, node:crypto otherwise. */
export function recordKey(key: Uint8Array): RecordKey {
  if (native === undefined) {
    try {
      routerLib();
      native = true;
    } catch {
      native = false;
    }
  }
  return native ? new NativeRecordKey(key) : new NodeRecordKey(key);
}

/** A sealed stream over `conn`: what is written is sealed with `sendKey`, what is read opened with `recvKey`. */
export class SealedConn implements RawConn {
  #sent = 0n;
  #received = 0n;
  #buf: Uint8Array = new Uint8Array(0);
  #off = 0;

  readonly #send: RecordKey;
  readonly #recv: RecordKey;

  constructor(readonly conn: RawConn, sendKey: Uint8Array, recvKey: Uint8Array) {
    this.#send = recordKey(sendKey);
    this.#recv = recordKey(recvKey);
  }

  async read(p: Uint8Array): Promise<number | null> {
    if (this.#off >= this.#buf.length) {
      const plain = await this.#record();
      if (plain === null) return null;
      this.#buf = plain;
      this.#off = 0;
    }
    const n = Math.min(p.length, this.#buf.length - this.#off);
    p.set(this.#buf.subarray(this.#off, this.#off + n));
    this.#off += n;
    return n;
  }

  /** Reads and opens the next record; null at a clean end of stream between records. */
  async #record(): Promise<Uint8Array | null> {
    const first = new Uint8Array(4);
    const n = await this.conn.read(first);
    if (n === null) return null;
    const head = n < 4 ? concat(first.subarray(0, n), await readExact(this.conn, 4 - n)) : first;
    const len = u32(head, 0);
    if (len < TAG || len > RECORD_MAX + TAG) throw new SealError(`a record of ${len} bytes cannot be`);
    const body = await readExact(this.conn, len);
    const plain = this.#recv.open(this.#received++, head, body);
    if (plain === null) throw new SealError("altered, injected, replayed or out of order");
    return plain;
  }

  /** Seals all of `p` (in records of at most RECORD_MAX bytes) and writes it. */
  async write(p: Uint8Array): Promise<number> {
    const records = Math.max(1, Math.ceil(p.length / RECORD_MAX));
    const out = new Uint8Array(p.length + records * (4 + TAG));
    for (let i = 0, at = 0; i < records; i++) {
      const chunk = p.subarray(i * RECORD_MAX, Math.min(p.length, (i + 1) * RECORD_MAX));
      this.#send.seal(this.#sent++, chunk, out.subarray(at, at + chunk.length + 4 + TAG));
      at += chunk.length + 4 + TAG;
    }
    await writeAll(this.conn, out);
    return p.length;
  }

  close(): void {
    closeQuietly(this.conn);
  }
}
