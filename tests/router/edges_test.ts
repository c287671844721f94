/**
 * A real router at its network edge, as a hostile or broken peer would find it: frames that are
 * malformed, truncated, oversized or arrive one byte a second, before and after authentication.
 * Each is refused (the connection closed, nothing about the overlay answered), logged on one
 * line per kind and source, the router's memory stays bounded, and legitimate clients are not
 * delayed meanwhile.
 */
import assert from "node:assert/strict";
import { readKey } from "../../router/key.ts";
import {
  decodeFrame,
  encodeFrame,
  encodeHello,
  FrameType,
  HEAD_LEN,
  linkKeys,
  MAC_LEN,
  randomId,
} from "../../router/wire.ts";
import { cli, Overlay, tempDir } from "../helpers.ts";


/** Reads until the peer closes or `ms` pass: the bytes that came and whether it closed. */
async function drain(c: Deno.Conn, ms: number): Promise<{ bytes: number; closed: boolean }> {
  const buf = new Uint8Array(4096);
  let bytes = 0;
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    const n = await Promise.race([c.read(buf).catch(() => null), new Promise<"wait">((r) => setTimeout(() => r("wait"), Math.max(1, deadline - Date.now())))]);
    if (n === "wait") return { bytes, closed: false };
    if (n === null) return { bytes, closed: true };
    bytes += n;
  }
  return { bytes, closed: false };
}

async function readN(c: Deno.Conn, n: number): Promise<Uint8Array> {
  const b = new Uint8Array(n);
  let got = 0;
  while (got < n) {
    const r = await c.read(b.subarray(got));
    if (r === null) throw new Error(`Closed after ${got} of ${n} bytes`);
    got += r;
  }
  return b;
}

/** An authenticated link done by hand: the connection and its up key, next seq 1. */
async function rawLink(o: Overlay, key: Uint8Array): Promise<{ c: Deno.TcpConn; up: Uint8Array; down: Uint8Array }> {
  const c = await Deno.connect({ hostname: o.a.host, port: o.a.port });
  const nc = randomId();
  await c.write(encodeFrame(key, FrameType.HELLO, 0, 0, encodeHello({ role: 1, flags: 0, nc, holder: new Uint8Array(16) })));
  const challenge = decodeFrame(key, await readN(c, HEAD_LEN + 32 + MAC_LEN), false);
  const k = linkKeys(key, nc, challenge.body.subarray(0, 16));
  return { c, up: k.up, down: k.down };
}

/** Milliseconds a legitimate `uvpn_register --list` takes now. */
async function legitMs(o: Overlay): Promise<number> {
  const t = performance.now();
  const r = await cli("uvpn_register", ["--list"], { env: o.homeEnv(o.a), timeoutMs: 30_000 });
  assert.equal(r.code, 0, r.stderr);
  return performance.now() - t;
}

function rssKiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(Deno.readTextFileSync(`/proc/${pid}/status`));
  return Number(m?.[1] ?? 0);
}

Deno.test("edges: slow, truncated and garbage connections before authentication cost the router bounded memory and delay no one", async () => {
  using dir = tempDir();
  const o = new Overlay(dir.path, { routerArgs: ["--handshake-timeout", "3"] });
  await o.startRouter(o.a);
  try {
    const key = await readKey(o.keyFile);
    const before = rssKiB(o.a.router!.child.pid);
    const calm = await legitMs(o);
    const strangers: Deno.TcpConn[] = [];
    // 120 slow-loris peers sending one byte of a HELLO a second, 40 that stop mid-frame, 40 that
    // send garbage, and 40 that announce a 65,535-byte body.
    const hello = encodeFrame(key, FrameType.HELLO, 0, 0, encodeHello({ role: 1, flags: 0, nc: randomId(), holder: new Uint8Array(16) }));
    const big = encodeFrame(key, FrameType.HELLO, 0, 0, new Uint8Array(0));
    big[6] = 0xff, big[7] = 0xff;
    for (let i = 0; i < 240; i++) {
      const c = await Deno.connect({ hostname: o.a.host, port: o.a.port });
      strangers.push(c);
      if (i < 120) continue;
      else if (i < 160) await c.write(hello.subarray(0, 40));
      else if (i < 200) await c.write(new TextEncoder().encode("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
      else await c.write(big.subarray(0, HEAD_LEN));
    }
    const loris = (async () => {
      for (let t = 0; t < 4; t++) {
        await Promise.all(strangers.slice(0, 120).map((c) => c.write(hello.subarray(t, t + 1)).catch(() => 0)));
        await new Promise((r) => setTimeout(r, 1000));
      }
    })();
    // Meanwhile a legitimate client is served as fast as on a calm router (a generous bound:
    // the machine is shared), and every stranger is closed by the deadline, unanswered.
    const busy = await legitMs(o);
    assert.ok(busy < calm + 1500, `legitimate request took ${busy.toFixed(0)} ms under attack, ${calm.toFixed(0)} ms calm`);
    const results = await Promise.all(strangers.map((c) => drain(c, 8000)));
    await loris;
    for (const c of strangers) c.close();
    assert.ok(results.every((r) => r.bytes === 0 && r.closed), `${results.filter((r) => r.bytes || !r.closed).length} strangers got bytes or were not closed`);
    const grown = rssKiB(o.a.router!.child.pid) - before;
    assert.ok(grown < 64 * 1024, `router grew by ${grown} KiB`);
    const log = o.a.router!.stderr;
    for (const why of [/no handshake within 3000 ms/, /Bad magic/, /Body too long for type 1: 65535/]) {
      const lines = log.split("\n").filter((l) => why.test(l));
      assert.equal(lines.length, 1, `one line for ${why}:\n${lines.join("\n")}`);
    }
  } finally {
    await o.stop();
  }
});

Deno.test("edges: after authentication, a bad MAC, a skipped seq, an oversized or unknown frame and malformed bodies end that link only", async () => {
  using dir = tempDir();
  const o = new Overlay(dir.path);
  await o.startRouter(o.a);
  try {
    const key = await readKey(o.keyFile);
    const cases: [string, (l: { up: Uint8Array }) => Uint8Array, RegExp][] = [
      ["bad MAC", (l) => {
        const f = encodeFrame(l.up, FrameType.LIST, 1, 1);
        f[f.length - 1] ^= 1;
        return f;
      }, /Bad MAC/],
      ["skipped seq", (l) => encodeFrame(l.up, FrameType.LIST, 5, 1), /out of sequence|seq/i],
      ["oversized request", (l) => encodeFrame(l.up, FrameType.LEASE, 1, 1, new Uint8Array(1025)), /Body too long/],
      ["unknown type", (l) => {
        const f = encodeFrame(l.up, FrameType.LIST, 1, 1);
        f[5] = 99;
        return f;
      }, /Unknown frame type: 99/],
      ["truncated frame, then silence", (l) => encodeFrame(l.up, FrameType.LIST, 1, 1).subarray(0, 40), /./],
    ];
    for (const [what, make, why] of cases) {
      const l = await rawLink(o, key);
      await l.c.write(make(l));
      const r = await drain(l.c, what.startsWith("truncated") ? 1500 : 5000);
      l.c.close();
      assert.equal(r.bytes, 0, `${what}: answered`);
      if (!what.startsWith("truncated")) {
        assert.ok(r.closed, `${what}: link not closed`);
        await o.a.router!.waitFor(why, 5000);
      }
    }
    // Malformed bodies of well-formed frames: refused with EINVAL (answered), the link lives on.
    const l = await rawLink(o, key);
    let seq = 1;
    for (const [type, body] of [[FrameType.LEASE, new Uint8Array([0, 0, 0, 0, 0, 70, 65])], [FrameType.RELEASE, new Uint8Array(3)], [FrameType.LISTEN, new Uint8Array(2)], [FrameType.CONNECT, new Uint8Array(5)], [FrameType.NAME, new Uint8Array([0, 9])]] as [number, Uint8Array][]) {
      await l.c.write(encodeFrame(l.up, type, seq, seq, body));
      const answer = decodeFrame(l.down, await readN(l.c, HEAD_LEN + 1 + MAC_LEN));
      assert.equal(answer.reqId, seq);
      assert.equal(answer.body[0], 7 /* EINVAL */, `type ${type}: status ${answer.body[0]}`);
      seq++;
    }
    l.c.close();
    // The router is alive and serves others.
    assert.ok(await legitMs(o) < 10_000);
  } finally {
    await o.stop();
  }
});

Deno.test("edges: on a router link in the data plane (after MUX), garbage, a bad MAC, a skipped seq, an oversized, unknown or unexpected frame end that link only, counted by reason", async () => {
  using dir = tempDir();
  const o = new Overlay(dir.path);
  await o.startRouter(o.a);
  try {
    const key = await readKey(o.keyFile);
    /** A router link done by hand and handed to the data plane: MUX (seq 1) sent, next seq 2. */
    const routerLink = async () => {
      const c = await Deno.connect({ hostname: o.a.host, port: o.a.port });
      const nc = randomId();
      await c.write(encodeFrame(key, FrameType.HELLO, 0, 0, encodeHello({ role: 2, flags: 0, nc, holder: new Uint8Array(16) })));
      const challenge = decodeFrame(key, await readN(c, HEAD_LEN + 32 + MAC_LEN), false);
      const k = linkKeys(key, nc, challenge.body.subarray(0, 16));
      await c.write(encodeFrame(k.up, FrameType.MUX, 1, 0, new Uint8Array([0, 100, 65, 0, 0, 16])));
      return { c, up: k.up, down: k.down };
    };
    const ping = (up: Uint8Array, seq: number) => encodeFrame(up, FrameType.PING, seq, 0, new Uint8Array(8).fill(7));
    const status = async () => {
      const r = await cli("uvpn_proxy", ["--status", "--json", "--routes", o.routes, "--subnet", o.a.prefix, "--listen", `${o.a.host}:${o.a.port}`], { env: o.baseEnv });
      assert.equal(r.code, 0, r.stderr);
      return JSON.parse(r.stdout).frames.refused as Record<string, number>;
    };
    const before = await status();
    const cases: [string, (up: Uint8Array) => Uint8Array, string, RegExp][] = [
      ["garbage", () => new TextEncoder().encode("GET / HTTP/1.1\r\n\r\n"), "malformed", /link down \(a malformed frame/],
      ["bad MAC", (up) => {
        const f = ping(up, 2);
        f[f.length - 1] ^= 1;
        return f;
      }, "bad_mac", /link down \(a link frame failed its MAC/],
      ["skipped seq", (up) => ping(up, 5), "out_of_sequence", /link down \(a link frame out of sequence/],
      ["oversized link frame", (up) => encodeFrame(up, FrameType.PING, 2, 0, new Uint8Array(1025)), "malformed", /link down \(a malformed frame/],
      ["unknown type", (up) => {
        const f = ping(up, 2);
        f[5] = 99;
        return f;
      }, "malformed", /link down \(a malformed frame/],
      ["answer on the answerer's side", (up) => encodeFrame(up, FrameType.OPENED, 2, 1, new Uint8Array(22)), "protocol", /link down \(an unexpected link frame/],
    ];
    const expect = { ...before };
    for (const [what, make, reason, why] of cases) {
      const l = await routerLink();
      await l.c.write(make(l.up));
      const r = await drain(l.c, 5000);
      l.c.close();
      assert.equal(r.bytes, 0, `${what}: answered`);
      assert.ok(r.closed, `${what}: link not closed`);
      await o.a.router!.waitFor(why, 5000);
      expect[reason]++;
    }
    // A session frame of a session that is not (or no longer) on this link is ignored; the link
    // lives on and answers a PING.
    const l = await routerLink();
    const stray = new Uint8Array(HEAD_LEN + 1 + 16);
    stray.set(new TextEncoder().encode("UVPN"), 0);
    stray[4] = 2, stray[5] = 22, stray[7] = 1, stray[19] = 7; // DATA, 1 byte, session 7
    await l.c.write(stray);
    await l.c.write(ping(l.up, 2));
    const pong = decodeFrame(l.down, await readN(l.c, HEAD_LEN + 8 + MAC_LEN));
    assert.equal(pong.type, FrameType.PONG);
    l.c.close();
    expect.ended_session++;
    assert.deepEqual(await status(), expect);
    assert.ok(await legitMs(o) < 10_000);
  } finally {
    await o.stop();
  }
});
