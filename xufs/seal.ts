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

/** A sealed stream over `conn`: what is written is sealed with `sendKey`, what is read opened with `recvKey`. */
export class SealedConn implements RawConn {
  #sent = 0n;
  #received = 0n;
  #buf: Uint8Array = new Uint8Array(0);
  #off = 0;

  constructor(readonly conn: RawConn, private readonly sendKey: Uint8Array, private readonly recvKey: Uint8Array) {}

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
    const d = createDecipheriv("aes-256-gcm", this.recvKey, nonceOf(this.#received++));
    d.setAAD(head);
    d.setAuthTag(body.subarray(len - TAG));
    try {
      const out = d.update(body.subarray(0, len - TAG));
      d.final();
      return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
    } catch {
      throw new SealError("altered, injected, replayed or out of order");
    }
  }

  /** Seals all of `p` (in records of at most RECORD_MAX bytes) and writes it. */
  async write(p: Uint8Array): Promise<number> {
    const parts: Uint8Array[] = [];
    for (let off = 0; off < p.length || off === 0; off += RECORD_MAX) {
      const chunk = p.subarray(off, Math.min(p.length, off + RECORD_MAX));
      const head = be32(chunk.length + TAG);
      const c = createCipheriv("aes-256-gcm", this.sendKey, nonceOf(this.#sent++));
      c.setAAD(head);
      const body = c.update(chunk);
      c.final();
      parts.push(head, body, c.getAuthTag());
      if (p.length === 0) break;
    }
    await writeAll(this.conn, concat(...parts));
    return p.length;
  }

  close(): void {
    closeQuietly(this.conn);
  }
}
