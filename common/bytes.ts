/**
 * Byte helpers shared by the router, XUFS and the commands: big-endian integers read from and
 * packed into byte arrays, concatenation, comparison, hex and SHA-256. Readers are named by
 * width (`u16`, `u32`, `u64`), packers by byte order and width (`be16`, `be32`, `be64`).
 */
import { createHash } from "node:crypto";

/** Reads a big-endian u16 at `off`. */
export function u16(b: Uint8Array, off: number): number {
  return (b[off] << 8) | b[off + 1];
}

/** Reads a big-endian u32 at `off`. */
export function u32(b: Uint8Array, off: number): number {
  return new DataView(b.buffer, b.byteOffset, b.byteLength).getUint32(off);
}

/** Reads a big-endian u64 at `off` (as a number: exact up to 2^53). */
export function u64(b: Uint8Array, off: number): number {
  return Number(new DataView(b.buffer, b.byteOffset, b.byteLength).getBigUint64(off));
}

/** Packs a u16 big-endian. */
export function be16(n: number): Uint8Array {
  return new Uint8Array([(n >> 8) & 0xff, n & 0xff]);
}

/** Packs a u32 big-endian. */
export function be32(n: number): Uint8Array {
  const out = new Uint8Array(4);
  new DataView(out.buffer).setUint32(0, n);
  return out;
}

/** Packs a u64 big-endian (from a number: exact up to 2^53). */
export function be64(n: number): Uint8Array {
  const out = new Uint8Array(8);
  new DataView(out.buffer).setBigUint64(0, BigInt(n));
  return out;
}

/** Concatenates byte arrays. */
export function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

/** Whether two byte arrays are equal (not constant-time: for nonces, not MACs). */
export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** Lower-case hex of bytes. */
export function hex(b: Uint8Array): string {
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

/** Bytes of a hex string; throws on odd length or a non-hex character. */
export function unhex(s: string): Uint8Array {
  if (s.length % 2 !== 0 || /[^0-9a-fA-F]/.test(s)) throw new Error(`Not hex: ${s}`);
  const out = new Uint8Array(s.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(s.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/** SHA-256 of bytes (or of a string's UTF-8), as lower-case hex. */
export function sha256(data: Uint8Array | string): string {
  return createHash("sha256").update(data).digest("hex");
}
