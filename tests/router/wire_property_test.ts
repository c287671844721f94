/**
 * The TypeScript wire codec under fast-check: every encoder's output decodes back to what was
 * encoded (frames before and after authentication, HELLO, CONNECT and its answer, NAME queries
 * and answers, tickets, datagrams), and every decoder, given any bytes at all, returns or throws
 * FrameError — never another exception, and never reads a body past the limit its head declares.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { bytes } from "../arbitraries.ts";
import {
  decodeConnect,
  decodeConnectAnswer,
  decodeFrame,
  decodeHello,
  decodeNameAnswer,
  decodeNameQuery,
  decodeTicket,
  encodeConnect,
  encodeConnectAnswer,
  encodeFrame,
  encodeHello,
  encodeNameAnswer,
  encodeNameQuery,
  encodeTicket,
  FrameError,
  FrameType,
  HEAD_LEN,
  MAC_LEN,
  maxBody,
  NameKind,
  openDgram,
  parseHead,
  Role,
  sealDgram,
} from "../../router/wire.ts";

const RUNS = Number(Deno.env.get("MYRT_PROPERTY_RUNS") ?? 100_000);
const u16 = fc.integer({ min: 0, max: 0xffff });
const u32 = fc.integer({ min: 0, max: 0xffffffff });
const u53 = fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER });
const key = bytes(32);
const types = Object.values(FrameType);
const NAME_CHARS = [..."ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-"];

/** Runs f on junk; only FrameError may come out. */
function onlyFrameError(f: () => unknown): void {
  try {
    f();
  } catch (e) {
    assert.ok(e instanceof FrameError, `${(e as Error)?.constructor?.name}: ${e}`);
  }
}

Deno.test("wire property: frames decode to what was encoded, under the limits of their link state", () => {
  fc.assert(
    fc.property(key, fc.constantFrom(...types), u53, u32, fc.boolean(), fc.uint8Array({ maxLength: 1100 }), (k, type, seq, reqId, authed, body) => {
      const b = body.subarray(0, maxBody(type, authed));
      const f = decodeFrame(k, encodeFrame(k, type, seq, reqId, b), authed);
      assert.deepEqual([f.type, f.seq, f.reqId, f.body], [type, seq, reqId, b]);
    }),
    { numRuns: RUNS },
  );
});

Deno.test("wire property: bodies and tickets decode to what was encoded", () => {
  fc.assert(
    fc.property(
      fc.record({ role: fc.constantFrom(Role.CLIENT, Role.ROUTER), flags: fc.integer({ min: 0, max: 255 }), nc: bytes(16), holder: bytes(16) }),
      fc.record({ proto: fc.integer({ min: 0, max: 255 }), flags: fc.integer({ min: 0, max: 255 }), srcIp: u32, srcPort: u16, dstIp: u32, dstPort: u16 }),
      fc.record({ kind: fc.integer({ min: 0, max: 255 }), realIp: u32, realPort: u16, srcPort: u16, listenerId: bytes(8), issued: u53, ticketId: bytes(16) }),
      fc.record({ kind: fc.integer({ min: 0, max: 255 }), srcIp: u32, srcPort: u16, dstIp: u32, dstPort: u16, listenerId: bytes(8), boundPort: u16, issued: u53, ticketId: bytes(16) }),
      fc.string({ unit: fc.constantFrom(...NAME_CHARS), minLength: 1, maxLength: 63 }), // (not fc.stringMatching: 10 × slower)
      u32,
      key,
      (hello, c, answer, ticket, name, ip, k) => {
        assert.deepEqual(decodeHello(encodeHello(hello)), { ...hello });
        assert.deepEqual(decodeConnect(encodeConnect(c)), { ...c });
        assert.deepEqual(decodeConnectAnswer(encodeConnectAnswer(answer)), { ...answer });
        assert.deepEqual(decodeTicket(k, encodeTicket(k, ticket)), { ...ticket });
        assert.deepEqual(decodeNameAnswer(encodeNameAnswer(ip, name)), { ip, name });
        assert.deepEqual(decodeNameQuery(encodeNameQuery({ flags: 1, kind: NameKind.FORWARD, name })), { flags: 1, kind: NameKind.FORWARD, name });
        assert.deepEqual(decodeNameQuery(encodeNameQuery({ flags: 0, kind: NameKind.REVERSE, ip })), { flags: 0, kind: NameKind.REVERSE, ip });
      },
    ),
    { numRuns: RUNS },
  );
});

Deno.test("wire property: datagrams open to the addresses they were sealed with", () => {
  fc.assert(
    fc.property(key, u32, u16, u32, u16, fc.uint8Array({ maxLength: 2000 }), (k, srcIp, srcPort, dstIp, dstPort, payload) => {
      const a = { srcIp, srcPort, dstIp, dstPort };
      assert.deepEqual(openDgram(k, sealDgram(k, a, payload)), { ...a });
    }),
    { numRuns: RUNS },
  );
});

Deno.test("wire property: any bytes decode or fail with FrameError, and a head's length is checked before a body is read", () => {
  const junk = fc.oneof(
    fc.uint8Array({ maxLength: 200 }),
    // a plausible head with random fields, then random bytes
    fc.tuple(fc.constantFrom(...types, 0, 99, 255), u16, fc.uint8Array({ maxLength: 120 })).map(([t, len, rest]) => {
      const h = new Uint8Array(HEAD_LEN);
      h.set([0x55, 0x56, 0x50, 0x4e, 2, t, len >> 8, len & 255]);
      const out = new Uint8Array(HEAD_LEN + rest.length);
      out.set(h);
      out.set(rest, HEAD_LEN);
      return out;
    }),
  );
  fc.assert(
    fc.property(key, junk, fc.boolean(), (k, b, authed) => {
      onlyFrameError(() => decodeFrame(k, b, authed));
      onlyFrameError(() => {
        const h = parseHead(b, authed);
        // Whatever the head announces, a reader would be asked for at most the limit plus the MAC.
        assert.ok(h.bodyLen <= maxBody(h.type, authed));
        assert.ok(HEAD_LEN + h.bodyLen + MAC_LEN <= HEAD_LEN + 0xffff + MAC_LEN);
      });
      onlyFrameError(() => decodeHello(b));
      onlyFrameError(() => decodeConnect(b));
      onlyFrameError(() => decodeConnectAnswer(b));
      onlyFrameError(() => decodeNameAnswer(b));
      onlyFrameError(() => decodeNameQuery(b));
      onlyFrameError(() => decodeTicket(k, b));
      onlyFrameError(() => openDgram(k, b));
    }),
    { numRuns: RUNS },
  );
});
