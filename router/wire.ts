/**
 * The UVPN wire format (docs/PROTOCOL.md), TypeScript side: frame encoding and verification,
 * body layouts, status codes and the replay cache. The C twin is native/wire.h + native/wire.c;
 * both are checked against tests/vectors/wire.txt.
 */
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { be32, concat, hex, u32 } from "../common/bytes.ts";

/** Frame magic, "UVPN". */
export const MAGIC: Uint8Array = new Uint8Array([0x55, 0x56, 0x50, 0x4e]);
/** Protocol version carried in every frame. */
export const VERSION = 1;
/** Bytes before the body: magic, version, type, length, nonce, time. */
export const HEAD_LEN = 32;
/** Bytes of the trailing HMAC-SHA256. */
export const MAC_LEN = 32;
/** Largest body a request may carry. */
export const MAX_REQUEST_BODY = 1024;
/** A request whose time is further than this from ours is refused. */
export const TIME_WINDOW_MS = 300_000;

/** Frame types. */
export const FrameType = {
  CONNECT: 1,
  REPLY: 2,
  LEASE: 3,
  RELEASE: 4,
  LIST: 5,
  LISTEN: 6,
  UNLISTEN: 7,
  INFO: 8,
  SESSION: 9,
  RESUME: 10,
  STATUS: 11,
  UDPBIND: 12,
  NAME: 13,
} as const;
/** A frame type code. */
export type FrameTypeCode = (typeof FrameType)[keyof typeof FrameType];

/** Reply status codes, each standing for the errno a client reports. */
export const Status = {
  OK: 0,
  ECONNREFUSED: 1,
  ENETUNREACH: 2,
  ETIMEDOUT: 3,
  EHOSTUNREACH: 4,
  EACCES: 5,
  EADDRINUSE: 6,
  EINVAL: 7,
  EADDRNOTAVAIL: 8,
  ENOENT: 9,
} as const;
/** A reply status code. */
export type StatusCode = (typeof Status)[keyof typeof Status];

/** The name of a status code, e.g. "ECONNREFUSED". */
export function statusName(code: number): string {
  for (const [name, value] of Object.entries(Status)) if (value === code) return name;
  return `status ${code}`;
}

/** A decoded, verified frame. */
export interface Frame {
  type: number;
  nonce: Uint8Array;
  timeMs: number;
  body: Uint8Array;
}

/** A frame that failed a check; `reason` says which. */
export class FrameError extends Error {
  constructor(reason: string) {
    super(reason);
    this.name = "FrameError";
  }
}

/** Fresh random nonce for a request. */
export function newNonce(): Uint8Array {
  return new Uint8Array(randomBytes(16));
}

function hmac(key: Uint8Array, data: Uint8Array): Uint8Array {
  return new Uint8Array(createHmac("sha256", key).update(data).digest());
}

/** Encodes and signs one frame. */
export function encodeFrame(
  key: Uint8Array,
  type: number,
  nonce: Uint8Array,
  body: Uint8Array = new Uint8Array(0),
  timeMs: number = Date.now(),
): Uint8Array {
  if (nonce.length !== 16) throw new FrameError(`Nonce must be 16 bytes: ${nonce.length}`);
  if (body.length > 0xffff) throw new FrameError(`Body too long: ${body.length}`);
  const out = new Uint8Array(HEAD_LEN + body.length + MAC_LEN);
  const view = new DataView(out.buffer);
  out.set(MAGIC, 0);
  out[4] = VERSION;
  out[5] = type;
  view.setUint16(6, body.length);
  out.set(nonce, 8);
  view.setBigUint64(24, BigInt(timeMs));
  out.set(body, HEAD_LEN);
  out.set(hmac(key, out.subarray(0, HEAD_LEN + body.length)), HEAD_LEN + body.length);
  return out;
}

/** Largest body accepted for a frame type (replies may be long, requests may not). */
export function maxBody(type: number): number {
  return type === FrameType.REPLY ? 0xffff : MAX_REQUEST_BODY;
}

/** Checks a 32-byte head and returns the body length it announces. */
export function parseHead(head: Uint8Array): { type: number; bodyLen: number } {
  if (head.length < HEAD_LEN) throw new FrameError(`Short head: ${head.length} bytes`);
  for (let i = 0; i < 4; i++) {
    if (head[i] !== MAGIC[i]) throw new FrameError("Bad magic: not a UVPN frame");
  }
  if (head[4] !== VERSION) throw new FrameError(`Unsupported version: ${head[4]}`);
  const type = head[5];
  if (type < FrameType.CONNECT || type > FrameType.NAME) {
    throw new FrameError(`Unknown frame type: ${type}`);
  }
  const bodyLen = (head[6] << 8) | head[7];
  if (bodyLen > maxBody(type)) throw new FrameError(`Body too long for type ${type}: ${bodyLen}`);
  return { type, bodyLen };
}

/** Verifies a whole frame (head, body, mac) and decodes it. */
export function decodeFrame(key: Uint8Array, bytes: Uint8Array): Frame {
  const { type, bodyLen } = parseHead(bytes);
  if (bytes.length !== HEAD_LEN + bodyLen + MAC_LEN) {
    throw new FrameError(`Frame length mismatch: ${bytes.length}`);
  }
  const signed = bytes.subarray(0, HEAD_LEN + bodyLen);
  const mac = bytes.subarray(HEAD_LEN + bodyLen);
  if (!timingSafeEqual(hmac(key, signed), mac)) throw new FrameError("Bad MAC: wrong network key");
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return {
    type,
    nonce: bytes.slice(8, 24),
    timeMs: Number(view.getBigUint64(24)),
    body: bytes.slice(HEAD_LEN, HEAD_LEN + bodyLen),
  };
}

/** Remembers recent request nonces so a captured frame cannot be replayed. */
export class ReplayCache {
  #seen = new Map<string, number>();
  constructor(private readonly maxEntries = 100_000) {}

  /** Throws unless the frame is fresh (time within the window) and its nonce unseen. */
  check(frame: Frame, now: number = Date.now()): void {
    if (Math.abs(now - frame.timeMs) > TIME_WINDOW_MS) {
      throw new FrameError(`Stale frame: clock differs by ${Math.round((now - frame.timeMs) / 1000)} s`);
    }
    const id = hex(frame.nonce);
    if (this.#seen.has(id)) throw new FrameError("Replayed nonce");
    if (this.#seen.size >= this.maxEntries) this.#expire(now);
    if (this.#seen.size >= this.maxEntries) throw new FrameError("Replay cache full");
    this.#seen.set(id, now);
  }

  #expire(now: number): void {
    for (const [id, at] of this.#seen) {
      if (now - at > 2 * TIME_WINDOW_MS) this.#seen.delete(id);
      else break; // insertion order is time order
    }
  }
}

/** A virtual TCP/UDP connection request. */
export interface ConnectBody {
  proto: number;
  srcIp: number;
  srcPort: number;
  dstIp: number;
  dstPort: number;
}

/** Packs a CONNECT body (16 bytes). */
export function encodeConnect(c: ConnectBody): Uint8Array {
  const out = new Uint8Array(16);
  const v = new DataView(out.buffer);
  v.setUint8(0, c.proto);
  v.setUint8(1, 0);
  v.setUint16(2, c.srcPort);
  v.setUint32(4, c.srcIp);
  v.setUint32(8, c.dstIp);
  v.setUint16(12, c.dstPort);
  v.setUint16(14, 0);
  return out;
}

/** Unpacks a CONNECT body. */
export function decodeConnect(body: Uint8Array): ConnectBody {
  if (body.length !== 16) throw new FrameError(`CONNECT body must be 16 bytes: ${body.length}`);
  const v = new DataView(body.buffer, body.byteOffset, body.byteLength);
  return {
    proto: v.getUint8(0),
    srcPort: v.getUint16(2),
    srcIp: v.getUint32(4),
    dstIp: v.getUint32(8),
    dstPort: v.getUint16(12),
  };
}

/** An overlay host name: 1 to 63 letters, digits or '-'. */
export const NAME_RE = /^[A-Za-z0-9-]{1,63}$/;
/** NAME query kinds and flags. */
export const NameKind = { FORWARD: 1, REVERSE: 2 } as const;
/** NAME flag: answer from the router's own leases only (a router asking its peers). */
export const NAME_F_LOCAL = 1;

/** A NAME query: name -> address (forward) or address -> name (reverse). */
export type NameQuery =
  | { flags: number; kind: typeof NameKind.FORWARD; name: string }
  | { flags: number; kind: typeof NameKind.REVERSE; ip: number };

/** Packs a NAME body. */
export function encodeNameQuery(q: NameQuery): Uint8Array {
  if (q.kind === NameKind.REVERSE) return concat(new Uint8Array([q.flags, q.kind]), ipBytes(q.ip));
  if (!NAME_RE.test(q.name)) throw new FrameError(`Bad overlay name: ${q.name}`);
  const name = new TextEncoder().encode(q.name);
  return concat(new Uint8Array([q.flags, q.kind, name.length]), name);
}

/** Unpacks a NAME body; throws FrameError when malformed. */
export function decodeNameQuery(b: Uint8Array): NameQuery {
  const [flags, kind] = b;
  if (b.length === 6 && kind === NameKind.REVERSE) return { flags, kind, ip: u32(b, 2) };
  if (b.length >= 4 && kind === NameKind.FORWARD && b.length === 3 + b[2]) {
    const name = new TextDecoder().decode(b.subarray(3));
    if (NAME_RE.test(name)) return { flags, kind, name };
  }
  throw new FrameError(`Bad NAME body: ${hex(b.subarray(0, 8))}`);
}

/** NAME reply data: ip[4], name_len u8, name. */
export function encodeNameAnswer(ip: number, name: string): Uint8Array {
  const n = new TextEncoder().encode(name);
  return concat(ipBytes(ip), new Uint8Array([n.length]), n);
}

/** Unpacks NAME reply data. */
export function decodeNameAnswer(d: Uint8Array): { ip: number; name: string } {
  if (d.length < 5 || d.length !== 5 + d[4]) throw new FrameError(`Bad NAME answer: ${d.length} bytes`);
  return { ip: u32(d, 0), name: new TextDecoder().decode(d.subarray(5)) };
}

/** A REPLY body: status byte then data. */
export function encodeReply(status: number, data: Uint8Array = new Uint8Array(0)): Uint8Array {
  const out = new Uint8Array(1 + data.length);
  out[0] = status;
  out.set(data, 1);
  return out;
}

/** Four bytes of an IPv4 address held as a number (big-endian, as on the wire). */
export function ipBytes(ip: number): Uint8Array {
  return be32(ip);
}

// Encapsulated UDP datagrams (docs/PROTOCOL.md, "Datagrams"): magic, 34-byte head, payload.

/** Datagram magic, "UVPD". */
export const DGRAM_MAGIC: Uint8Array = new Uint8Array([0x55, 0x56, 0x50, 0x44]);
/** Bytes before an encapsulated datagram's payload: magic, version, addresses, MAC. */
export const DGRAM_HEAD_LEN = 34;
const DGRAM_MAC_LEN = 16;
/** Largest encapsulated datagram (the largest UDP payload over IPv4). */
export const DGRAM_MAX = 65507;

/** The addresses of an encapsulated datagram. */
export interface DgramAddrs {
  srcIp: number;
  srcPort: number;
  dstIp: number;
  dstPort: number;
}

function dgramMac(key: Uint8Array, head: Uint8Array, payload: Uint8Array): Uint8Array {
  return new Uint8Array(createHmac("sha256", key).update(head.subarray(0, 18)).update(payload).digest())
    .subarray(0, DGRAM_MAC_LEN);
}

/** Encapsulates a payload: head (with the truncated MAC) then payload. */
export function sealDgram(key: Uint8Array, a: DgramAddrs, payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(DGRAM_HEAD_LEN + payload.length);
  const v = new DataView(out.buffer);
  out.set(DGRAM_MAGIC, 0);
  out[4] = VERSION;
  v.setUint32(6, a.srcIp);
  v.setUint16(10, a.srcPort);
  v.setUint32(12, a.dstIp);
  v.setUint16(16, a.dstPort);
  out.set(dgramMac(key, out, payload), 18);
  out.set(payload, DGRAM_HEAD_LEN);
  return out;
}

/** Verifies an encapsulated datagram and returns its addresses; throws FrameError. */
export function openDgram(key: Uint8Array, d: Uint8Array): DgramAddrs {
  if (d.length < DGRAM_HEAD_LEN) throw new FrameError(`Short datagram: ${d.length} bytes`);
  for (let i = 0; i < 4; i++) {
    if (d[i] !== DGRAM_MAGIC[i]) throw new FrameError("Bad magic: not a UVPN datagram");
  }
  if (d[4] !== VERSION) throw new FrameError(`Unsupported datagram version: ${d[4]}`);
  const mac = dgramMac(key, d, d.subarray(DGRAM_HEAD_LEN));
  if (!timingSafeEqual(mac, d.subarray(18, DGRAM_HEAD_LEN))) throw new FrameError("Bad datagram MAC: wrong network key");
  const v = new DataView(d.buffer, d.byteOffset, d.byteLength);
  return { srcIp: v.getUint32(6), srcPort: v.getUint16(10), dstIp: v.getUint32(12), dstPort: v.getUint16(16) };
}
