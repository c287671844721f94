/** The TypeScript wire codec (version 2) against the shared vectors (tests/vectors/wire.txt) and its checks. */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  ConnectFlag,
  decodeConnect,
  decodeConnectAnswer,
  decodeFrame,
  decodeHello,
  decodeNameAnswer,
  decodeNameQuery,
  decodePaths,
  decodeTicket,
  encodeConnect,
  encodeConnectAnswer,
  encodeFrame,
  encodeNameAnswer,
  encodeNameQuery,
  encodePaths,
  encodeTicket,
  FrameError,
  FrameType,
  hkdf,
  linkKeys,
  openDgram,
  parseHead,
  ListenFlag,
  sealDgram,
  TicketKind,
} from "../../router/wire.ts";
import { formatIp } from "../../router/ipv4.ts";
import { hex, unhex } from "../../common/bytes.ts";
import { ROOT } from "../helpers.ts";

const lines = Deno.readTextFileSync(join(ROOT, "tests/vectors/wire.txt")).split("\n")
  .filter((l) => l && !l.startsWith("#")).map((l) => l.split(" "));
const of = (kind: string) => lines.filter((l) => l[0] === kind);
const key = unhex(of("key")[0][1]);
const [, nc, nr, up, down] = of("link")[0];
const keys: Record<string, Uint8Array> = { key, up: unhex(up), down: unhex(down) };
const ep = (s: string) => {
  const [ip, port] = s.split(":");
  return { ip: ip.split(".").reduce((a, b) => a * 256 + Number(b), 0), port: Number(port) };
};
const frames = of("frame").map(([, name, mk, type, seq, reqId, body, frame]) => ({
  name,
  mk: keys[mk],
  authenticated: mk !== "key",
  type: Number(type),
  seq: Number(seq),
  reqId: Number(reqId),
  body: unhex(body === "-" ? "" : body),
  frame,
}));
const byName = (n: string) => frames.find((f) => f.name === n)!;

Deno.test("wire: HKDF and the link keys match the vectors (RFC 5869 case 1 included)", () => {
  for (const [, ikm, salt, info, n, okm] of of("hkdf")) {
    assert.equal(hex(hkdf(unhex(ikm), unhex(salt), unhex(info), Number(n))), okm);
  }
  const k = linkKeys(key, unhex(nc), unhex(nr));
  assert.equal(hex(k.up), up);
  assert.equal(hex(k.down), down);
});

Deno.test("wire: frame vectors encode byte for byte and decode to their fields", () => {
  assert.ok(frames.length >= 20);
  for (const v of frames) {
    assert.equal(hex(encodeFrame(v.mk, v.type, v.seq, v.reqId, v.body)), v.frame, v.name);
    const f = decodeFrame(v.mk, unhex(v.frame), v.authenticated);
    assert.deepEqual([f.type, f.seq, f.reqId, hex(f.body)], [v.type, v.seq, v.reqId, hex(v.body)], v.name);
  }
});

Deno.test("wire: HELLO, CONNECT and its answer round trip and match the vectors", () => {
  const h = decodeHello(byName("hello").body);
  assert.deepEqual([h.role, hex(h.nc), hex(h.holder)], [1, nc, "48".repeat(16)]);
  const c = decodeConnect(byName("connect_tcp").body);
  assert.deepEqual(c, { proto: 6, flags: 0, srcIp: 0x64400001, srcPort: 0, dstIp: 0x64410007, dstPort: 8080 });
  assert.equal(hex(encodeConnect(c)), hex(byName("connect_tcp").body));
  const a = decodeConnectAnswer(byName("reply_connect").body.subarray(1));
  assert.deepEqual([a.kind, a.realIp, a.realPort, a.srcPort, a.issued], [1, 0x7f000002, 7001, 40000, 1700000000123]);
  assert.equal(hex(encodeConnectAnswer(a)), hex(byName("reply_connect").body.subarray(1)));
  assert.throws(() => decodeHello(new Uint8Array(33)), /34 bytes/);
  assert.throws(() => decodeHello(new Uint8Array(34)), /Unknown HELLO role/);
});

Deno.test("wire: the direct path's CONNECT flags, brokered answer, LISTEN flag and PATHS match the vectors", () => {
  assert.equal(decodeConnect(byName("connect_direct").body).flags, ConnectFlag.DIRECT);
  assert.equal(decodeConnect(byName("connect_direct_failed").body).flags, ConnectFlag.DIRECT_FAILED);
  const a = decodeConnectAnswer(byName("reply_connect_direct").body.subarray(1));
  assert.deepEqual([a.kind, formatIp(a.realIp), a.realPort, a.srcPort, a.issued], [TicketKind.DIRECT, "198.18.1.12", 41234, 40001, 1700000000789]);
  assert.equal(hex(encodeConnectAnswer(a)), hex(byName("reply_connect_direct").body.subarray(1)));
  const l = byName("listen_direct").body;
  assert.deepEqual([l.length, l[16]], [17, ListenFlag.DIRECT]);
  const u = byName("udpbind_direct").body;
  assert.deepEqual([u.length, u[8]], [9, ListenFlag.DIRECT]);
  const cu = decodeConnect(byName("connect_udp_direct").body);
  assert.deepEqual([cu.proto, cu.flags], [17, ConnectFlag.DIRECT]);
  const p = decodePaths(byName("paths").body);
  assert.deepEqual(p, { conns: 3, sent: 123456789, received: 9876543210 });
  assert.equal(hex(encodePaths(p)), hex(byName("paths").body));
  assert.throws(() => decodePaths(new Uint8Array(19)), /PATHS body must be 20 bytes: 19/);
  const big = byName("paths").body.slice();
  big.set([0, 0x20, 0, 0, 0, 0, 0, 0], 4);
  assert.throws(() => decodePaths(big), /2\^53 or more/);
});

Deno.test("wire: NAME bodies round trip and match the vectors", () => {
  const body = (name: string) => byName(name).body;
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

Deno.test("wire: tampered, truncated, foreign and oversized frames are rejected", () => {
  const v = byName("lease_named");
  const good = unhex(v.frame);
  for (let i = 0; i < good.length; i += 3) {
    const bad = good.slice();
    bad[i] ^= 0x01;
    assert.throws(() => decodeFrame(v.mk, bad), FrameError, `flip at ${i}`);
  }
  assert.throws(() => decodeFrame(v.mk, good.subarray(0, good.length - 1)), FrameError);
  assert.throws(() => decodeFrame(key, good), /Bad MAC/, "a link frame under the network key");
  assert.throws(() => decodeFrame(keys.down, good), /Bad MAC/, "the other direction's key");
  assert.throws(() => decodeFrame(key, new TextEncoder().encode("GET / HTTP/1.1\r\nHost: x\r\n\r\n......")), /magic/);
  const old = good.slice();
  old[4] = 1;
  assert.throws(() => parseHead(old), /Unsupported version: 1/);
  const reserved = good.slice();
  reserved[25] = 1;
  assert.throws(() => parseHead(reserved), /Reserved bytes/);
  assert.throws(() => decodeFrame(v.mk, encodeFrame(v.mk, FrameType.LEASE, 1, 1, new Uint8Array(2000))), /too long/);
  // Before authentication a frame carries at most 64 bytes, a REPLY included.
  assert.throws(() => parseHead(encodeFrame(key, FrameType.REPLY, 0, 0, new Uint8Array(65)), false), /too long/);
  assert.equal(parseHead(encodeFrame(key, FrameType.REPLY, 0, 0, new Uint8Array(65535)), true).bodyLen, 65535);
});

Deno.test("wire: ticket vectors encode byte for byte, decode, and refuse tampering", () => {
  const ts = of("ticket");
  assert.equal(ts.length, 3); // DATA, RELAYED, DIRECT
  for (const [, name, kind, src, dst, lid, bound, issued, tid, want] of ts) {
    const s = ep(src), d = ep(dst);
    const t = {
      kind: Number(kind),
      srcIp: s.ip,
      srcPort: s.port,
      dstIp: d.ip,
      dstPort: d.port,
      listenerId: unhex(lid),
      boundPort: Number(bound),
      issued: Number(issued),
      ticketId: unhex(tid),
    };
    assert.equal(hex(encodeTicket(key, t)), want, name);
    const back = decodeTicket(key, unhex(want));
    assert.deepEqual({ ...back, listenerId: hex(back.listenerId), ticketId: hex(back.ticketId) }, { ...t, listenerId: lid, ticketId: tid });
    const raw = unhex(want);
    for (let i = 0; i < raw.length; i += 5) {
      const bad = raw.slice();
      bad[i] ^= 0x04;
      assert.throws(() => decodeTicket(key, bad), FrameError, `${name} flip at ${i}`);
    }
    assert.throws(() => decodeTicket(new Uint8Array(32), raw), /Bad ticket MAC/);
  }
});

Deno.test("wire: datagram vectors seal byte for byte and open to their addresses", () => {
  const ds = of("dgram");
  assert.ok(ds.length >= 3);
  for (const [, name, src, dst, payload, dgram] of ds) {
    const s = ep(src), d = ep(dst);
    const addrs = { srcIp: s.ip, srcPort: s.port, dstIp: d.ip, dstPort: d.port };
    assert.equal(hex(sealDgram(key, addrs, unhex(payload === "-" ? "" : payload))), dgram, name);
    assert.deepEqual(openDgram(key, unhex(dgram)), addrs, name);
  }
  const good = unhex(ds[0][5]);
  for (let i = 0; i < good.length; i++) {
    const bad = good.slice();
    bad[i] ^= 0x20;
    assert.throws(() => openDgram(key, bad), FrameError, `flip at ${i}`);
  }
  assert.throws(() => openDgram(key, good.subarray(0, 33)), /Short datagram/);
  assert.throws(() => openDgram(new Uint8Array(32), good), /Bad datagram MAC/);
  assert.throws(() => openDgram(key, unhex(frames[0].frame)), /Bad magic/);
});
