/**
 * XUFS file-protocol messages (docs/XUFS.md): `u32 header_len, u32 payload_len`, a JSON header
 * and payload bytes, over any byte stream; the attributes of a listed entry; and the mutual
 * secret proof of the handshake.
 */
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { be32, concat, u32 } from "../common/bytes.ts";
import { readExact, writeAll } from "../common/io.ts";

/** Largest JSON header accepted. */
export const MAX_HEADER = 1 << 20;
/** Largest payload accepted in one message (a whole file, or one stripe). */
export const MAX_PAYLOAD = 2 ** 31;

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

/** A stream that violates the protocol. */
export class ProtocolError extends Error {
  override readonly name = "ProtocolError";
}

/** Encodes one message. */
export function encodeMessage(head: Record<string, unknown>, payload: Uint8Array = new Uint8Array(0)): Uint8Array {
  const h = new TextEncoder().encode(JSON.stringify(head));
  return concat(be32(h.length), be32(payload.length), h, payload);
}

/** Reads one message; null at a clean end of stream. */
export async function readMessage(conn: Deno.Conn): Promise<Message | null> {
  const first = new Uint8Array(8);
  const n = await conn.read(first);
  if (n === null) return null;
  const rest = n < 8 ? await readExact(conn, 8 - n) : new Uint8Array(0);
  const prefix = new Uint8Array(8);
  prefix.set(first.subarray(0, n));
  prefix.set(rest, n);
  const hlen = u32(prefix, 0), plen = u32(prefix, 4);
  if (hlen === 0 || hlen > MAX_HEADER) throw new ProtocolError(`Bad header length: ${hlen}`);
  if (plen > MAX_PAYLOAD) throw new ProtocolError(`Bad payload length: ${plen}`);
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
export async function writeMessage(conn: Deno.Conn, head: Record<string, unknown>, payload?: Uint8Array): Promise<void> {
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

/** Server side of the handshake: true when the peer proved the secret. */
export async function serverHandshake(conn: Deno.Conn, secret: string): Promise<boolean> {
  const mine = nonce();
  await writeMessage(conn, { op: "hello", nonce: mine });
  const m = await readMessage(conn);
  if (!m || m.head.op !== "hello" || typeof m.head.nonce !== "string") return false;
  if (!proofOk(m.head.proof, proof(secret, "xufs-client", mine))) return false;
  await writeMessage(conn, { op: "welcome", proof: proof(secret, "xufs-server", m.head.nonce) });
  return true;
}

/** Client side of the handshake: throws unless the server proved the secret. */
export async function clientHandshake(conn: Deno.Conn, secret: string): Promise<void> {
  const hello = await readMessage(conn);
  if (!hello || hello.head.op !== "hello" || typeof hello.head.nonce !== "string") {
    throw new ProtocolError("No hello from the file server");
  }
  const mine = nonce();
  await writeMessage(conn, { op: "hello", nonce: mine, proof: proof(secret, "xufs-client", hello.head.nonce) });
  const welcome = await readMessage(conn);
  if (!welcome || welcome.head.op !== "welcome") throw new ProtocolError("File server refused the session secret");
  if (!proofOk(welcome.head.proof, proof(secret, "xufs-server", mine))) {
    throw new ProtocolError("File server did not prove the session secret");
  }
}
