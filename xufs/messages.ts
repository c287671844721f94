/**
 * XUFS file-protocol messages (docs/XUFS.md): `u32 header_len, u32 payload_len`, a JSON header
 * and payload bytes, over any byte stream; the attributes of a listed entry; and the handshake:
 * a mutual proof of the session secret whose nonces also derive the keys that seal the link from
 * then on (xufs/seal.ts). Before authentication a message is at most PREAUTH_MAX bytes.
 */
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { be32, concat, u32 } from "../common/bytes.ts";
import { type ByteReader, type ByteWriter, readExact, writeAll } from "../common/io.ts";
import { deriveKeys, type RawConn, SealedConn } from "./seal.ts";

/** Largest JSON header accepted after authentication. */
export const MAX_HEADER = 1 << 20;
/** Largest payload accepted in one message (a whole file, or one stripe). */
export const MAX_PAYLOAD = 2 ** 31;
/** Largest message (header and payload) accepted before the peer proved the secret. */
export const PREAUTH_MAX = 4096;
/** The protocol version spoken in the handshake. */
export const PROTOCOL_VERSION = 2;

/** A message: JSON header and optional payload. */
export interface Message {
  // deno-lint-ignore no-explicit-any
  head: Record<string, any>;
  payload: Uint8Array;
}

/** Attributes of one directory entry, as sent in a listing. */
export interface Entry {
  name: string;
  type: "f" | "d" | "l";
  size: number;
  mode: number;
  mtimeMs: number;
  version: string;
  target?: string;
}

/** Priority classes of requests, most urgent first (docs/XUFS.md, "Priorities"). */
export const PRIORITY = { foreground: 0, range: 1, background: 2 } as const;
/** One of PRIORITY's classes. */
export type Priority = typeof PRIORITY[keyof typeof PRIORITY];

/**
 * The priority class of a request: background for `bg: true` (pre-listing) and `readmany`
 * (pre-caching); range data for a `read` of a range and a `wpart`; foreground for the rest
 * (metadata, whole-file reads, B's changes).
 */
// deno-lint-ignore no-explicit-any
export function priorityOf(head: Record<string, any>): Priority {
  if (head.bg === true || head.op === "readmany") return PRIORITY.background;
  if (head.op === "wpart" || (head.op === "read" && (head.offset !== undefined || head.length !== undefined))) return PRIORITY.range;
  return PRIORITY.foreground;
}

/** A stream that violates the protocol. */
export class ProtocolError extends Error {
  override readonly name = "ProtocolError";
}

/** A peer that did not prove the session secret. */
export class AuthFailure extends Error {
  override readonly name = "AuthFailure";
}

/** Encodes one message. */
export function encodeMessage(head: Record<string, unknown>, payload: Uint8Array = new Uint8Array(0)): Uint8Array {
  const h = new TextEncoder().encode(JSON.stringify(head));
  return concat(be32(h.length), be32(payload.length), h, payload);
}

/** Reads one message; null at a clean end of stream. Headers and payloads beyond the limits are refused. */
export async function readMessage(conn: ByteReader, maxHeader = MAX_HEADER, maxPayload = MAX_PAYLOAD): Promise<Message | null> {
  const first = new Uint8Array(8);
  const n = await conn.read(first);
  if (n === null) return null;
  const prefix = n < 8 ? concat(first.subarray(0, n), await readExact(conn, 8 - n)) : first;
  const hlen = u32(prefix, 0), plen = u32(prefix, 4);
  if (hlen === 0 || hlen > maxHeader) throw new ProtocolError(`Bad header length: ${hlen}`);
  if (plen > maxPayload) throw new ProtocolError(`Bad payload length: ${plen}`);
  let head;
  try {
    head = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(await readExact(conn, hlen)));
  } catch (e) {
    throw new ProtocolError(`Bad header: ${(e as Error).message}`);
  }
  if (typeof head !== "object" || head === null || Array.isArray(head)) throw new ProtocolError("Header is not an object");
  const payload = plen ? await readExact(conn, plen) : new Uint8Array(0);
  return { head, payload };
}

/** Writes one message. */
export async function writeMessage(conn: ByteWriter, head: Record<string, unknown>, payload?: Uint8Array): Promise<void> {
  await writeAll(conn, encodeMessage(head, payload));
}

/** A fresh nonce, hex. */
export function nonce(): string {
  return randomBytes(16).toString("hex");
}

/** HMAC proof of the session secret for a role and the peer's nonce. */
export function proof(secret: string, role: "xufs-client" | "xufs-server", peerNonce: string): string {
  return createHmac("sha256", secret).update(role).update(peerNonce).digest("hex");
}

/** Constant-time comparison of two hex proofs. */
export function proofOk(got: unknown, want: string): boolean {
  if (typeof got !== "string" || got.length !== want.length) return false;
  return timingSafeEqual(new TextEncoder().encode(got), new TextEncoder().encode(want));
}

const readSmall = (conn: ByteReader) => readMessage(conn, PREAUTH_MAX, 0);

/** Server side of the handshake: the sealed link when the peer proved the secret; null when it left first; throws when it failed. */
export async function serverHandshake(conn: RawConn, secret: string): Promise<SealedConn | null> {
  const mine = nonce();
  await writeMessage(conn, { op: "hello", nonce: mine, v: PROTOCOL_VERSION });
  const m = await readSmall(conn);
  if (!m) return null;
  if (m.head.op !== "hello" || typeof m.head.nonce !== "string" || m.head.nonce.length > 64) throw new ProtocolError("Bad hello");
  if (!proofOk(m.head.proof, proof(secret, "xufs-client", mine))) throw new AuthFailure("wrong session secret");
  await writeMessage(conn, { op: "welcome", proof: proof(secret, "xufs-server", m.head.nonce) });
  const keys = deriveKeys(secret, mine, m.head.nonce);
  return new SealedConn(conn, keys.s2c, keys.c2s);
}

/** Client side of the handshake: the sealed link; throws unless the server proved the secret. */
export async function clientHandshake(conn: RawConn, secret: string): Promise<SealedConn> {
  const hello = await readSmall(conn);
  if (!hello || hello.head.op !== "hello" || typeof hello.head.nonce !== "string" || hello.head.nonce.length > 64) {
    throw new ProtocolError("No hello from the file server");
  }
  if (hello.head.v !== PROTOCOL_VERSION) throw new ProtocolError(`File server speaks protocol ${hello.head.v ?? 1}, not ${PROTOCOL_VERSION}`);
  const mine = nonce();
  await writeMessage(conn, { op: "hello", nonce: mine, proof: proof(secret, "xufs-client", hello.head.nonce) });
  const welcome = await readSmall(conn);
  if (!welcome || welcome.head.op !== "welcome") throw new ProtocolError("File server refused the session secret");
  if (!proofOk(welcome.head.proof, proof(secret, "xufs-server", mine))) {
    throw new ProtocolError("File server did not prove the session secret");
  }
  const keys = deriveKeys(secret, hello.head.nonce, mine);
  return new SealedConn(conn, keys.c2s, keys.s2c);
}
