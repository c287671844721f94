/** The TypeScript frame codec against the shared vectors (tests/vectors/wire.txt) and its checks. */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  decodeConnect,
  decodeFrame,
  decodeNameAnswer,
  decodeNameQuery,
  encodeConnect,
  encodeFrame,
  encodeNameAnswer,
  encodeNameQuery,
  FrameError,
  FrameType,
  openDgram,
  sealDgram,
  ReplayCache,
  TIME_WINDOW_MS,
} from "../../router/wire.ts";
import { hex, unhex } from "../../common/bytes.ts";
import { ROOT } from "../helpers.ts";

const lines = Deno.readTextFileSync(join(ROOT, "tests/vectors/wire.txt")).split("\n")
  .filter((l) => l && !l.startsWith("#"));
const key = unhex(lines[0].split(" ")[1]);
const dgrams = lines.filter((l) => l.startsWith("dgram ")).map((l) => {
  const [, name, src, dst, payload, dgram] = l.split(" ");
  const ep = (s: string) => {
    const [ip, port] = s.split(":");
    return { ip: ip.split(".").reduce((a, b) => a * 256 + Number(b), 0), port: Number(port) };
  };
  const s = ep(src), d = ep(dst);
  return { name, addrs: { srcIp: s.ip, srcPort: s.port, dstIp: d.ip, dstPort: d.port }, payload: unhex(payload === "-" ? "" : payload), dgram };
});
const vectors = lines.slice(1).filter((l) => !l.startsWith("dgram ")).map((l) => {
  const [name, type, nonce, time, body, frame] = l.split(" ");
  return { name, type: Number(type), nonce: unhex(nonce), time: Number(time), body: unhex(body === "-" ? "" : body), frame };
});

Deno.test("wire: vectors encode byte for byte", () => {
  assert.ok(vectors.length >= 10);
  for (const v of vectors) {
    assert.equal(hex(encodeFrame(key, v.type, v.nonce, v.body, v.time)), v.frame, v.name);
  }
});

Deno.test("wire: vectors decode to their fields", () => {
  for (const v of vectors) {
    const f = decodeFrame(key, unhex(v.frame));
    assert.equal(f.type, v.type);
    assert.equal(f.timeMs, v.time);
    assert.equal(hex(f.nonce), hex(v.nonce));
    assert.equal(hex(f.body), hex(v.body));
  }
});

Deno.test("wire: CONNECT body round trip matches the vector", () => {
  const v = vectors.find((x) => x.name === "connect_tcp")!;
  const c = decodeConnect(v.body);
  assert.deepEqual(c, { proto: 6, srcPort: 40000, srcIp: 0x64400001, dstIp: 0x64410007, dstPort: 8080 });
  assert.equal(hex(encodeConnect(c)), hex(v.body));
});

Deno.test("wire: NAME bodies round trip and match the vectors", () => {
  const body = (name: string) => vectors.find((x) => x.name === name)!.body;
  assert.deepEqual(decodeNameQuery(body("name_forward")), { flags: 0, kind: 1, name: "node1" });
  assert.equal(hex(encodeNameQuery({ flags: 0, kind: 1, name: "node1" })), hex(body("name_forward")));
  assert.deepEqual(decodeNameQuery(body("name_reverse_local")), { flags: 1, kind: 2, ip: 0x64410007 });
  assert.equal(hex(encodeNameQuery({ flags: 1, kind: 2, ip: 0x64410007 })), hex(body("name_reverse_local")));
  assert.deepEqual(decodeNameAnswer(body("reply_name").subarray(1)), { ip: 0x64410007, name: "node1" });
  assert.equal(hex(encodeNameAnswer(0x64410007, "node1")), hex(body("reply_name").subarray(1)));
  for (const bad of ["", "0001", "00010a6e6f646531", "0001036e2e31", "0003056e6f646531", "000264410007ff"]) {
    assert.throws(() => decodeNameQuery(unhex(bad)), /Bad NAME body/, bad);
  }
  assert.throws(() => encodeNameQuery({ flags: 0, kind: 1, name: "a.b" }), /Bad overlay name: a\.b/);
});

Deno.test("wire: tampered, truncated and foreign frames are rejected", () => {
  const good = unhex(vectors[0].frame);
  for (let i = 0; i < good.length; i += 7) {
    const bad = good.slice();
    bad[i] ^= 0x01;
    assert.throws(() => decodeFrame(key, bad), FrameError, `flip at ${i}`);
  }
  assert.throws(() => decodeFrame(key, good.subarray(0, good.length - 1)), FrameError);
  assert.throws(() => decodeFrame(new Uint8Array(32), good), /Bad MAC/);
  assert.throws(() => decodeFrame(key, new TextEncoder().encode("GET / HTTP/1.1\r\nHost: x\r\n\r\n......")), /magic/);
  const long = encodeFrame(key, FrameType.LEASE, new Uint8Array(16), new Uint8Array(2000));
  assert.throws(() => decodeFrame(key, long), /too long/);
});

Deno.test("wire: replay cache refuses a repeated nonce and a stale time", () => {
  const cache = new ReplayCache();
  const now = 1_800_000_000_000;
  const f = decodeFrame(key, encodeFrame(key, FrameType.INFO, new Uint8Array(16).fill(9), undefined, now));
  cache.check(f, now);
  assert.throws(() => cache.check(f, now + 1000), /Replayed/);
  const old = decodeFrame(key, encodeFrame(key, FrameType.INFO, new Uint8Array(16).fill(8), undefined, now));
  assert.throws(() => cache.check(old, now + TIME_WINDOW_MS + 1), /Stale/);
});

Deno.test("wire: datagram vectors seal byte for byte and open to their addresses", () => {
  assert.ok(dgrams.length >= 3);
  for (const v of dgrams) {
    assert.equal(hex(sealDgram(key, v.addrs, v.payload)), v.dgram, v.name);
    assert.deepEqual(openDgram(key, unhex(v.dgram)), v.addrs, v.name);
  }
});

Deno.test("wire: tampered, short and foreign datagrams are rejected", () => {
  const good = unhex(dgrams[0].dgram);
  for (let i = 0; i < good.length; i++) {
    const bad = good.slice();
    bad[i] ^= 0x20;
    assert.throws(() => openDgram(key, bad), FrameError, `flip at ${i}`);
  }
  assert.throws(() => openDgram(key, good.subarray(0, 33)), /Short datagram/);
  assert.throws(() => openDgram(new Uint8Array(32), good), /Bad datagram MAC/);
  assert.throws(() => openDgram(key, unhex(vectors[0].frame)), /Bad magic/);
});
