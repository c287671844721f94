/**
 * The UVPN wire format, version 2 (docs/PROTOCOL.md), TypeScript side: frame encoding and
 * verification (32-byte head with seq and request id, body, HMAC-SHA256 trailer), the link
 * handshake's bodies and key derivation (HKDF-SHA256), tickets, body layouts, status codes and
 * encapsulated datagrams. The C twin is native/common/wire.h + wire.c; both are checked against
 * tests/vectors/wire.txt (made independently by scripts/gen_wire_vectors.py).
 */
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { be32, concat, hex, u16, u32 } from "../common/bytes.ts";

/** Frame magic, "UVPN". */
export const MAGIC: Uint8Array = new Uint8Array([0x55, 0x56, 0x50, 0x4e]);
/** Ticket magic, "UVPT". */
export const TICKET_MAGIC: Uint8Array = new Uint8Array([0x55, 0x56, 0x50, 0x54]);
/** Protocol version carried in every frame, ticket and datagram. */
export const VERSION = 2;
/** Bytes before the body: magic, version, type, length, seq, request id, reserved. */
export const HEAD_LEN = 32;
/** Bytes of the trailing HMAC-SHA256. */
export const MAC_LEN = 32;
/** Largest body of a frame before the link is authenticated (HELLO, CHALLENGE). */
export const MAX_PREAUTH_BODY = 64;
/** Largest body a request may carry. */
export const MAX_REQUEST_BODY = 1024;
/** A ticket whose issue time is further than this from ours is refused. */
export const TIME_WINDOW_MS = 300_000;
/** Length of a ticket. */
export const TICKET_LEN = 88;

/** Frame types. */
export const FrameType = {
  HELLO: 1,
  CHALLENGE: 2,
  REPLY: 3,
  LEASE: 4,
  RELEASE: 5,
  LIST: 6,
  LISTEN: 7,
  UNLISTEN: 8,
  INFO: 9,
  STATUS: 10,
  UDPBIND: 11,
  NAME: 12,
  CONNECT: 13,
  USE: 14,
  PATHS: 15,
  PING: 16,
  PONG: 17,
  /** Router links (docs/PROTOCOL.md, "Sessions between routers"); frames after MUX are the
   * data plane's (native/router/core/frame.h). */
  OPEN: 20,
  OPENED: 21,
  RESUME: 26,
  RESUMED: 27,
  MUX: 28,
} as const;
/** A frame type code. */
export type FrameTypeCode = (typeof FrameType)[keyof typeof FrameType];
const KNOWN_TYPES = new Set<number>(Object.values(FrameType));

/** HELLO roles. */
export const Role = { CLIENT: 1, ROUTER: 2 } as const;

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
  EPERM: 10,
  EBUSY: 11,
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
  seq: number;
  reqId: number;
  body: Uint8Array;
}

/** A frame or ticket that failed a check; `reason` says which. */
export class FrameError extends Error {
  constructor(reason: string) {
    super(reason);
    this.name = "FrameError";
  }
}

/** Fresh random bytes (nonces, tokens, ids). */
export function randomId(n = 16): Uint8Array {
  return new Uint8Array(randomBytes(n));
}

function hmac(key: Uint8Array, ...data: Uint8Array[]): Uint8Array {
  const h = createHmac("sha256", key);
  for (const d of data) h.update(d);
  return new Uint8Array(h.digest());
}

/** HKDF-SHA256 (RFC 5869): extract with `salt`, expand `info` to `n` bytes (n ≤ 8160). */
export function hkdf(ikm: Uint8Array, salt: Uint8Array, info: Uint8Array, n: number): Uint8Array {
  const prk = hmac(salt, ikm);
  const out = new Uint8Array(n);
  let t: Uint8Array = new Uint8Array(0);
  for (let i = 1, off = 0; off < n; i++) {
    t = hmac(prk, t, info, new Uint8Array([i]));
    out.set(t.subarray(0, Math.min(t.length, n - off)), off);
    off += t.length;
  }
  return out;
}

/** The two direction keys of a link: client→router and router→client. */
export interface LinkKeys {
  up: Uint8Array;
  down: Uint8Array;
}

/** K = HKDF(network key, Nc ‖ Nr, "uvpn link v2", 64): K[0..32) up, K[32..64) down. */
export function linkKeys(key: Uint8Array, nc: Uint8Array, nr: Uint8Array): LinkKeys {
  const k = hkdf(key, concat(nc, nr), new TextEncoder().encode("uvpn link v2"), 64);
  return { up: k.slice(0, 32), down: k.slice(32, 64) };
}

/** Encodes and MACs one frame with `mk` (the network key for HELLO/CHALLENGE, else a link key). */
export function encodeFrame(
  mk: Uint8Array,
  type: number,
  seq: number,
  reqId: number,
  body: Uint8Array = new Uint8Array(0),
): Uint8Array {
  if (body.length > 0xffff) throw new FrameError(`Body too long: ${body.length}`);
  const out = new Uint8Array(HEAD_LEN + body.length + MAC_LEN);
  const view = new DataView(out.buffer);
  out.set(MAGIC, 0);
  out[4] = VERSION;
  out[5] = type;
  view.setUint16(6, body.length);
  view.setBigUint64(8, BigInt(seq));
  view.setUint32(16, reqId >>> 0);
  out.set(body, HEAD_LEN);
  out.set(hmac(mk, out.subarray(0, HEAD_LEN + body.length)), HEAD_LEN + body.length);
  return out;
}

/** Largest body accepted for a frame type on a link that is (or is not yet) authenticated. */
export function maxBody(type: number, authenticated: boolean): number {
  if (!authenticated) return MAX_PREAUTH_BODY;
  return type === FrameType.REPLY ? 0xffff : MAX_REQUEST_BODY;
}

/** A checked head: type, announced body length, seq and request id. */
export interface Head {
  type: number;
  bodyLen: number;
  seq: number;
  reqId: number;
}

/**
 * A 64-bit wire field that must be below 2^53 (docs/PROTOCOL.md: every count and time is, so
 * both codecs hold it exactly); throws FrameError for a larger one.
 */
function u53(v: DataView, off: number, what: string): number {
  const n = v.getBigUint64(off);
  if (n > BigInt(Number.MAX_SAFE_INTEGER)) throw new FrameError(`A ${what} of 2^53 or more: ${n}`);
  return Number(n);
}

/** Checks a 32-byte head (magic, version, type, reserved bytes, length limit). */
export function parseHead(head: Uint8Array, authenticated = true): Head {
  if (head.length < HEAD_LEN) throw new FrameError(`Short head: ${head.length} bytes`);
  for (let i = 0; i < 4; i++) {
    if (head[i] !== MAGIC[i]) throw new FrameError("Bad magic: not a UVPN frame");
  }
  if (head[4] !== VERSION) throw new FrameError(`Unsupported version: ${head[4]}`);
  const type = head[5];
  if (!KNOWN_TYPES.has(type)) throw new FrameError(`Unknown frame type: ${type}`);
  for (let i = 20; i < HEAD_LEN; i++) if (head[i] !== 0) throw new FrameError("Reserved bytes not zero");
  const bodyLen = u16(head, 6);
  if (bodyLen > maxBody(type, authenticated)) throw new FrameError(`Body too long for type ${type}: ${bodyLen}`);
  const v = new DataView(head.buffer, head.byteOffset, head.byteLength);
  return { type, bodyLen, seq: u53(v, 8, "seq"), reqId: v.getUint32(16) };
}

/** Verifies a whole frame (head, body, mac) under `mk` and decodes it. */
export function decodeFrame(mk: Uint8Array, bytes: Uint8Array, authenticated = true): Frame {
  const h = parseHead(bytes, authenticated);
  if (bytes.length !== HEAD_LEN + h.bodyLen + MAC_LEN) {
    throw new FrameError(`Frame length mismatch: ${bytes.length}`);
  }
  const signed = bytes.subarray(0, HEAD_LEN + h.bodyLen);
  if (!timingSafeEqual(hmac(mk, signed), bytes.subarray(HEAD_LEN + h.bodyLen))) {
    throw new FrameError("Bad MAC: wrong network key");
  }
  return { type: h.type, seq: h.seq, reqId: h.reqId, body: bytes.slice(HEAD_LEN, HEAD_LEN + h.bodyLen) };
}

// ---- the handshake ---------------------------------------------------------------------------

/** A HELLO body: who connects, its nonce and the holder token it presents. */
export interface Hello {
  role: number;
  flags: number;
  nc: Uint8Array;
  holder: Uint8Array;
}

/** Packs a HELLO body (34 bytes). */
export function encodeHello(h: Hello): Uint8Array {
  return concat(new Uint8Array([h.role, h.flags]), h.nc, h.holder);
}

/** Unpacks a HELLO body. */
export function decodeHello(b: Uint8Array): Hello {
  if (b.length !== 34) throw new FrameError(`HELLO body must be 34 bytes: ${b.length}`);
  if (b[0] !== Role.CLIENT && b[0] !== Role.ROUTER) throw new FrameError(`Unknown HELLO role: ${b[0]}`);
  return { role: b[0], flags: b[1], nc: b.slice(2, 18), holder: b.slice(18, 34) };
}

// ---- bodies ----------------------------------------------------------------------------------

/** A virtual TCP/UDP connection request. */
export interface ConnectBody {
  proto: number;
  flags: number;
  srcIp: number;
  srcPort: number;
  dstIp: number;
  dstPort: number;
}

/** CONNECT flags: the client may connect directly (bit 0); its direct attempt to this
 * destination failed, relay it (bit 1). docs/PROTOCOL.md, "Connections". */
export const ConnectFlag = { DIRECT: 1, DIRECT_FAILED: 2 } as const;

/** LISTEN flags (an optional 17th byte): the listener checks every connection's ticket, so it
 * may be reached directly (bit 0). docs/PROTOCOL.md, "Listeners". */
export const ListenFlag = { DIRECT: 1 } as const;

/** CONNECT body length. */
export const CONNECT_LEN = 14;

/** Packs a CONNECT body (14 bytes). */
export function encodeConnect(c: ConnectBody): Uint8Array {
  const out = new Uint8Array(CONNECT_LEN);
  const v = new DataView(out.buffer);
  v.setUint8(0, c.proto);
  v.setUint8(1, c.flags);
  v.setUint32(2, c.srcIp);
  v.setUint16(6, c.srcPort);
  v.setUint32(8, c.dstIp);
  v.setUint16(12, c.dstPort);
  return out;
}

/** Unpacks a CONNECT body. */
export function decodeConnect(body: Uint8Array): ConnectBody {
  if (body.length !== CONNECT_LEN) throw new FrameError(`CONNECT body must be ${CONNECT_LEN} bytes: ${body.length}`);
  return {
    proto: body[0],
    flags: body[1],
    srcIp: u32(body, 2),
    srcPort: u16(body, 6),
    dstIp: u32(body, 8),
    dstPort: u16(body, 12),
  };
}

/** The answer to CONNECT: where the program's socket connects and the ticket it writes there. */
export interface ConnectAnswer {
  kind: number;
  realIp: number;
  realPort: number;
  srcPort: number;
  listenerId: Uint8Array;
  issued: number;
  ticketId: Uint8Array;
}

/** Packs CONNECT answer data (41 bytes). */
export function encodeConnectAnswer(a: ConnectAnswer): Uint8Array {
  const out = new Uint8Array(41);
  const v = new DataView(out.buffer);
  out[0] = a.kind;
  v.setUint32(1, a.realIp);
  v.setUint16(5, a.realPort);
  v.setUint16(7, a.srcPort);
  out.set(a.listenerId, 9);
  v.setBigUint64(17, BigInt(a.issued));
  out.set(a.ticketId, 25);
  return out;
}

/** Unpacks CONNECT answer data. */
export function decodeConnectAnswer(d: Uint8Array): ConnectAnswer {
  if (d.length !== 41) throw new FrameError(`CONNECT answer must be 41 bytes: ${d.length}`);
  const v = new DataView(d.buffer, d.byteOffset, d.byteLength);
  return {
    kind: d[0],
    realIp: v.getUint32(1),
    realPort: v.getUint16(5),
    srcPort: v.getUint16(7),
    listenerId: d.slice(9, 17),
    issued: u53(v, 17, "issued time"),
    ticketId: d.slice(25, 41),
  };
}

/** A PATHS body: direct connections that ended, as the connecting side reports them. */
export interface PathsReport {
  conns: number;
  sent: number;
  received: number;
}

/** PATHS body length. */
export const PATHS_LEN = 20;

/** Packs a PATHS body (20 bytes). */
export function encodePaths(p: PathsReport): Uint8Array {
  const out = new Uint8Array(PATHS_LEN);
  const v = new DataView(out.buffer);
  v.setUint32(0, p.conns);
  v.setBigUint64(4, BigInt(p.sent));
  v.setBigUint64(12, BigInt(p.received));
  return out;
}

/** Unpacks a PATHS body. */
export function decodePaths(b: Uint8Array): PathsReport {
  if (b.length !== PATHS_LEN) throw new FrameError(`PATHS body must be ${PATHS_LEN} bytes: ${b.length}`);
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  return { conns: v.getUint32(0), sent: u53(v, 4, "byte count"), received: u53(v, 12, "byte count") };
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
  const name = new TextDecoder().decode(d.subarray(5));
  if (!NAME_RE.test(name)) throw new FrameError(`Bad name in a NAME answer: ${JSON.stringify(name)}`);
  return { ip: u32(d, 0), name };
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

// ---- tickets (docs/PROTOCOL.md, "Tickets") ---------------------------------------------------

/** Ticket kinds. */
export const TicketKind = { DATA: 1, RELAYED: 2, DIRECT: 3 } as const;

/** The fields of a ticket. */
export interface Ticket {
  kind: number;
  srcIp: number;
  srcPort: number;
  dstIp: number;
  dstPort: number;
  listenerId: Uint8Array;
  boundPort: number;
  issued: number;
  ticketId: Uint8Array;
}

/** Packs and MACs (with the network key) a ticket: 88 bytes. */
export function encodeTicket(key: Uint8Array, t: Ticket): Uint8Array {
  const out = new Uint8Array(TICKET_LEN);
  const v = new DataView(out.buffer);
  out.set(TICKET_MAGIC, 0);
  out[4] = VERSION;
  out[5] = t.kind;
  v.setUint32(8, t.srcIp);
  v.setUint16(12, t.srcPort);
  v.setUint32(14, t.dstIp);
  v.setUint16(18, t.dstPort);
  out.set(t.listenerId, 20);
  v.setUint16(28, t.boundPort);
  v.setBigUint64(32, BigInt(t.issued));
  out.set(t.ticketId, 40);
  out.set(hmac(key, out.subarray(0, 56)), 56);
  return out;
}

/** Verifies a ticket's magic, version, reserved bytes and MAC; returns its fields. */
export function decodeTicket(key: Uint8Array, b: Uint8Array): Ticket {
  if (b.length !== TICKET_LEN) throw new FrameError(`Ticket must be ${TICKET_LEN} bytes: ${b.length}`);
  for (let i = 0; i < 4; i++) {
    if (b[i] !== TICKET_MAGIC[i]) throw new FrameError("Bad magic: not a UVPN ticket");
  }
  if (b[4] !== VERSION) throw new FrameError(`Unsupported ticket version: ${b[4]}`);
  if (b[6] || b[7] || b[30] || b[31]) throw new FrameError("Ticket reserved bytes not zero");
  if (!timingSafeEqual(hmac(key, b.subarray(0, 56)), b.subarray(56))) throw new FrameError("Bad ticket MAC: wrong network key");
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  return {
    kind: b[5],
    srcIp: v.getUint32(8),
    srcPort: v.getUint16(12),
    dstIp: v.getUint32(14),
    dstPort: v.getUint16(18),
    listenerId: b.slice(20, 28),
    boundPort: v.getUint16(28),
    issued: u53(v, 32, "issued time"),
    ticketId: b.slice(40, 56),
  };
}

// ---- encapsulated UDP datagrams (docs/PROTOCOL.md, "Datagrams") -------------------------------

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
  return hmac(key, head.subarray(0, 18), payload).subarray(0, DGRAM_MAC_LEN);
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
