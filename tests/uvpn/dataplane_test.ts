/**
 * UVPN's data plane between routers (issue 13), with real programs and real routers: forged
 * session frames injected on the link between the routers are refused and the transfer ends
 * intact; a captured RESUME replayed on another connection is refused; a reader that stops
 * keeps the routers' memory within the per-session bound without any spool file while the link
 * is up; `--metrics` and `--status --json` count a known transfer exactly; 1,000 short sessions
 * across the WAN emulator end cleanly, none reset; a receiving router's `--memory-limit` holds
 * across sessions to readers that do not read (writers block, every byte arrives once they read);
 * `--spool-limit-total` holds through an outage (the writer blocks, every byte arrives after it).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { readKey } from "../../router/key.ts";
import { encodeFrame, encodeHello, FrameType, HEAD_LEN, linkKeys, MAC_LEN, randomId, decodeFrame } from "../../router/wire.ts";
import { WanEmulator } from "../../scripts/wan_emulator.ts";
import { cli, Overlay, Proc, ROOT, sleep, tempDir } from "../helpers.ts";
import { assertIntact, bulkPeers, relayedOverlay, report } from "./bulk.ts";
import type { StatusReport } from "../../router/counters.ts";

const PEER = join(ROOT, "tests/fixtures/bulk_peer.py");
const MIB = 1024 * 1024;

/** Session frame types and offsets of their 32-byte head (docs/PROTOCOL.md). */
const DATA = 22, ACK = 23, RST = 25;

/** A bulk peer pair (tests/uvpn/bulk.ts), both started. */
async function bulk(o: Overlay, addrA: string, addrB: string, nbytes: number) {
  const p = bulkPeers(o, addrA, addrB, nbytes);
  return { server: p.server, client: await p.client() };
}

/** `uvpn_proxy --status --json` of one router. */
async function statusJson(o: Overlay, s: Overlay["a"]): Promise<StatusReport> {
  const r = await cli("uvpn_proxy", ["--status", "--json", "--routes", o.routes, "--subnet", s.prefix, "--listen", `${s.host}:${s.port}`], { env: o.baseEnv });
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout);
}

/** A forged session frame: the head of a real one (same session, same stream position) with another type, body and a random tag. */
function forged(head: Uint8Array, type: number, body: Uint8Array, ack?: bigint): Uint8Array {
  const f = new Uint8Array(32 + body.length + 16);
  f.set(head.subarray(0, 32));
  f[5] = type;
  new DataView(f.buffer).setUint16(6, body.length);
  if (ack !== undefined) new DataView(f.buffer).setBigUint64(20, ack);
  f.set(body, 32);
  crypto.getRandomValues(f.subarray(32 + body.length));
  return f;
}

function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([p, new Promise<T>((_, rej) => (t = setTimeout(() => rej(new Error(`${what}: not within ${ms} ms`)), ms)))]).finally(() => clearTimeout(t));
}

Deno.test("dataplane: forged DATA, ACK and RST frames on the link between routers are refused; the transfer completes intact", async () => {
  using dir = tempDir();
  const { o, relay } = await relayedOverlay(dir.path, ["--dead-after", "1", "--retry-max", "1"]);
  const N = 48 * MIB;
  let p: { server: Proc; client: Proc } | undefined;
  try {
    const addrA = await o.register(o.a), addrB = await o.register(o.b);
    p = await bulk(o, addrA, addrB, N);
    // Each forgery names the session and stream position of the real frame it precedes; each
    // ends its link, the session resumes on a new one, and the next forgery waits for that.
    const body = crypto.getRandomValues(new Uint8Array(1024));
    await within(relay.arm({ dir: "up", onFrameType: DATA, action: "inject", forge: (h) => forged(h, DATA, body) }), 30_000, "forged DATA");
    await o.b.router!.waitFor(/link down \(a session frame \(type 22\) failed its MAC\)/);
    await within(relay.arm({ dir: "down", onFrameType: DATA, action: "inject", forge: (h) => forged(h, ACK, new Uint8Array(0), 1n << 40n) }), 30_000, "forged ACK");
    await o.a.router!.waitFor(/link down \(a session frame \(type 23\) failed its MAC\)/);
    await within(relay.arm({ dir: "up", onFrameType: DATA, action: "inject", forge: (h) => forged(h, RST, new Uint8Array([1])) }), 30_000, "forged RST");
    await o.b.router!.waitFor(/link down \(a session frame \(type 25\) failed its MAC\)/);
    await assertIntact(p.server, p.client, N, 120_000);
    const [a, b] = [await statusJson(o, o.a), await statusJson(o, o.b)];
    assert.equal(a.frames.refused.bad_mac, 1, JSON.stringify(a.frames));
    assert.equal(b.frames.refused.bad_mac, 2, JSON.stringify(b.frames));
    for (const s of [a, b]) {
      assert.equal(s.sessions.resets, 0);
      assert.equal(s.sessions.reconnects, 3, JSON.stringify(s.sessions));
      assert.equal(s.spool.used, 0, "whatever went to the spool while a link was down is gone");
      assert.equal(s.memory.used, 0);
    }
  } finally {
    await p?.client.stop();
    await p?.server.stop();
    await o.stop();
    relay.close();
  }
});

/** Frames of a captured byte stream, up to and including the first of `type`. */
function upTo(stream: Uint8Array, type: number): Uint8Array | undefined {
  let i = 0;
  while (i + 8 <= stream.length) {
    const t = stream[i + 5], len = (stream[i + 6] << 8) | stream[i + 7];
    const end = i + HEAD_LEN + len + ((t >= 22 && t <= 25) || t === 29 ? 16 : MAC_LEN);
    if (t === type) return end <= stream.length ? stream.slice(0, end) : undefined;
    i = end;
  }
  return undefined;
}

async function readAll(c: Deno.Conn, ms: number): Promise<{ bytes: number; closed: boolean }> {
  const buf = new Uint8Array(4096);
  let bytes = 0;
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    const n = await Promise.race([c.read(buf).catch(() => null), sleep(Math.max(1, deadline - Date.now())).then(() => "wait" as const)]);
    if (n === "wait") return { bytes, closed: false };
    if (n === null) return { bytes, closed: true };
    bytes += n;
  }
  return { bytes, closed: false };
}

Deno.test("dataplane: a captured RESUME replayed on another connection is refused", async () => {
  using dir = tempDir();
  const captured = new Map<number, Uint8Array[]>();
  const { o, relay } = await relayedOverlay(dir.path, ["--dead-after", "1", "--retry-max", "1"], (conn, d, b) => {
    if (d === "up" && conn > 0) captured.set(conn, [...(captured.get(conn) ?? []), b]);
  });
  const N = 16 * MIB;
  let p: { server: Proc; client: Proc } | undefined;
  try {
    const addrA = await o.register(o.a), addrB = await o.register(o.b);
    p = await bulk(o, addrA, addrB, N);
    await within(relay.arm({ dir: "up", afterBytes: 2 * MIB, action: "rst", connection: 0 }), 30_000, "the cut");
    // The first link after the cut carried the RESUME: its opening bytes, verbatim.
    let replay: Uint8Array | undefined;
    for (let i = 0; i < 100 && !replay; i++) {
      for (const chunks of captured.values()) {
        const all = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
        let off = 0;
        for (const c of chunks) all.set(c, (off += c.length) - c.length);
        replay ??= upTo(all, FrameType.RESUME);
      }
      if (!replay) await sleep(100);
    }
    assert.ok(replay, "a RESUME crossed the relay");
    const before = await statusJson(o, o.b);
    // 1. The whole captured opening (HELLO, MUX, RESUME) on a new connection: the router's
    // fresh challenge makes every frame after HELLO fail its MAC.
    const c1 = await Deno.connect({ hostname: o.b.host, port: o.b.port });
    await c1.write(replay);
    const r1 = await readAll(c1, 5_000);
    c1.close();
    assert.ok(r1.closed, "the router closed the replaying connection");
    assert.ok(r1.bytes <= HEAD_LEN + 32 + MAC_LEN, `nothing but a CHALLENGE answered: ${r1.bytes} bytes`);
    // 2. The captured RESUME alone, on a link a key holder opened itself: its MAC is of another link.
    const key = await readKey(o.keyFile);
    const c2 = await Deno.connect({ hostname: o.b.host, port: o.b.port });
    const nc = randomId();
    await c2.write(encodeFrame(key, FrameType.HELLO, 0, 0, encodeHello({ role: 2, flags: 0, nc, holder: new Uint8Array(16) })));
    const ch = new Uint8Array(HEAD_LEN + 32 + MAC_LEN);
    for (let got = 0; got < ch.length;) {
      const n = await c2.read(ch.subarray(got));
      if (n === null) throw new Error("closed before CHALLENGE");
      got += n;
    }
    const k = linkKeys(key, nc, decodeFrame(key, ch, false).body.subarray(0, 16));
    // A valid MUX under this link's key (seq 1): the link goes to the data plane, which then
    // gets the captured RESUME renumbered to seq 2, so that only its MAC can refuse it.
    await c2.write(encodeFrame(k.up, FrameType.MUX, 1, 0, new Uint8Array([0, 100, 64, 0, 0, 16])));
    let start = 0;
    for (let i = 0; i < replay.length; i += HEAD_LEN + ((replay[i + 6] << 8) | replay[i + 7]) + MAC_LEN) start = i;
    const frame = replay.slice(start);
    assert.equal(frame[5], FrameType.RESUME);
    new DataView(frame.buffer).setBigUint64(8, 2n);
    await c2.write(frame);
    const r2 = await readAll(c2, 5_000);
    c2.close();
    assert.ok(r2.closed, "the router closed the link with the replayed RESUME");
    assert.equal(r2.bytes, 0, "no answer to the replayed RESUME");
    await o.b.router!.waitFor(/a link frame failed its MAC/);
    await assertIntact(p.server, p.client, N, 120_000);
    const after = await statusJson(o, o.b);
    assert.equal(after.sessions.reconnects, before.sessions.reconnects, "the replays resumed nothing");
    assert.equal(after.sessions.resets, 0);
    assert.equal(after.frames.refused.bad_mac, before.frames.refused.bad_mac + 1, "the RESUME failed its MAC");
  } finally {
    await p?.client.stop();
    await p?.server.stop();
    await o.stop();
    relay.close();
  }
});

/** A server that accepts one connection, reads nothing for `stall` seconds, then reads all and reports. */
const STALLED_READER = `
import hashlib, json, socket, sys, time
addr, port, stall = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((addr, port)); srv.listen(1)
print("listening", file=sys.stderr, flush=True)
c, _ = srv.accept()
print("accepted", file=sys.stderr, flush=True)
time.sleep(stall)
h, n = hashlib.sha256(), 0
while True:
    b = c.recv(1 << 20)
    if not b: break
    h.update(b); n += len(b)
print(json.dumps({"received": n, "sha": h.hexdigest()}), flush=True)
`;

/** A client that writes N pseudo-random bytes as fast as it may, printing its progress every 0.5 s. */
const EAGER_WRITER = `
import hashlib, json, random, socket, sys, threading, time
addr, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = socket.create_connection((addr, port))
sent = [0]
h = hashlib.sha256()
def tick():
    while True:
        print(json.dumps({"written": sent[0]}), flush=True); time.sleep(0.5)
threading.Thread(target=tick, daemon=True).start()
rng = random.Random(7)
while sent[0] < n:
    b = rng.randbytes(min(1 << 18, n - sent[0]))
    s.sendall(b); h.update(b); sent[0] += len(b)
s.shutdown(socket.SHUT_WR)
s.recv(1)
print(json.dumps({"done": sent[0], "sha": h.hexdigest()}), flush=True)
`;

/**
 * A python3 server (`server`: its code, then arguments after ADDR PORT) in subnet B on `port`
 * and, once it listens, a python3 client (the same shape) in A connecting to it; resolves once
 * the server printed "accepted".
 */
async function pythonPair(o: Overlay, port: number, server: string[], client: string[]): Promise<{ server: Proc; client: Proc }> {
  const addrA = await o.register(o.a), addrB = await o.register(o.b);
  const srv = new Proc("python3", ["-c", server[0], addrB, String(port), ...server.slice(1)], { env: o.env(o.b, addrB) });
  try {
    await srv.waitFor(/listening/);
    await o.b.router!.waitFor(new RegExp(`listener .*:${port} is at`));
    const cl = new Proc("python3", ["-c", client[0], addrB, String(port), ...client.slice(1)], { env: o.env(o.a, addrA) });
    await srv.waitFor(/accepted/).catch(async (e) => {
      await cl.stop();
      throw e;
    });
    return { server: srv, client: cl };
  } catch (e) {
    await srv.stop();
    throw e;
  }
}

/** Waits for both programs of a pythonPair to exit 0; returns the last JSON line each printed. */
async function finalReports(server: Proc, client: Proc, timeoutMs: number) {
  const [c, s] = [await client.result(timeoutMs), await server.result(timeoutMs)];
  assert.equal(c.code, 0, c.stderr);
  assert.equal(s.code, 0, s.stderr);
  return { done: JSON.parse(c.stdout.trim().split("\n").pop()!), got: JSON.parse(s.stdout.trim().split("\n").pop()!) };
}

Deno.test("dataplane: a reader that stops for 30 s slows its writer; router memory stays within the session's bound, no spool file while the link is up", async () => {
  using dir = tempDir();
  const spoolDir = join(dir.path, "spool");
  Deno.mkdirSync(spoolDir);
  const window = 4 * MIB;
  const o = new Overlay(dir.path, { routerArgs: ["--spool-dir", spoolDir, "--session-window", "4"] });
  await o.start();
  const N = 96 * MIB;
  let server: Proc | undefined, client: Proc | undefined;
  try {
    ({ server, client } = await pythonPair(o, 9200, [STALLED_READER, "30"], [EAGER_WRITER, String(N)]));
    const t0 = Date.now();
    let peak = 0, spoolSeen = 0;
    let at5 = 0;
    while (Date.now() - t0 < 28_000) {
      const [a, b] = [await statusJson(o, o.a), await statusJson(o, o.b)];
      peak = Math.max(peak, a.memory.used + b.memory.used, a.memory.peak, b.memory.peak);
      spoolSeen += [...Deno.readDirSync(spoolDir)].length + a.spool.peak + b.spool.peak;
      if (!at5 && Date.now() - t0 > 5_000) at5 = written(client!);
      await sleep(1_000);
    }
    const stalled = written(client!);
    // The writer was held back: nothing more got through after the first seconds than the
    // window and the sockets' own buffers on both ends.
    assert.ok(stalled < 48 * MIB, `the writer wrote ${stalled} bytes to a stalled reader`);
    assert.ok(stalled - at5 < 2 * MIB, `the writer kept writing while the reader stalled: ${at5} at 5 s, ${stalled} at 28 s`);
    assert.ok(peak <= 2 * window + 2 * MIB, `router memory ${peak} bytes for one session (window ${window})`);
    assert.equal(spoolSeen, 0, "no spool file while the link is up");
    const { done, got } = await finalReports(server, client, 120_000);
    assert.equal(got.received, N);
    assert.equal(got.sha, done.sha);
    const [a, b] = [await statusJson(o, o.a), await statusJson(o, o.b)];
    assert.equal(a.sessions.spooled + b.sessions.spooled, 0);
    console.log(`stalled reader: writer held at ${stalled} bytes, router memory peak ${peak} bytes`);
  } finally {
    await client?.stop();
    await server?.stop();
    await o.stop();
  }
});

/** Value of one sample of a Prometheus text exposition. */
function sample(text: string, name: string, labels = ""): number {
  const re = new RegExp(`^${name}${labels.replace(/[{}"]/g, (c) => "\\" + c)} (\\S+)$`, "m");
  const m = re.exec(text);
  if (!m) throw new Error(`no ${name}${labels} in\n${text}`);
  return Number(m[1]);
}

Deno.test("dataplane: --metrics and --status --json count a known transfer exactly", async () => {
  using dir = tempDir();
  // Only router A serves metrics, on a port it binds itself and reports.
  const o = new Overlay(dir.path, { routerArgs: ["--metrics", "127.0.0.2:0"] });
  await o.startRouter(o.a);
  const port = Number((await o.a.router!.waitFor(/serving metrics on http:\/\/127\.0\.0\.2:(\d+)\/metrics/))[1]);
  o.opts.routerArgs = [];
  await o.startRouter(o.b);
  const UP = 3 * MIB + 12345, DOWN = 1 * MIB + 777;
  let server: Proc | undefined, client: Proc | undefined;
  try {
    const addrA = await o.register(o.a), addrB = await o.register(o.b);
    // bulk_peer sends the same count each way: two transfers, one each way, of known sizes.
    for (const [n, p] of [[UP, 9301], [DOWN, 9302]] as const) {
      server = new Proc("python3", [PEER, "listen", addrB, String(p), String(n === UP ? 0 : DOWN), "1"], { env: o.env(o.b, addrB) });
      await server.waitFor(/listening/);
      await o.b.router!.waitFor(new RegExp(`listener .*:${p} is at`));
      client = new Proc("python3", [PEER, "connect", addrB, String(p), String(n === UP ? UP : 0), "2"], { env: o.env(o.a, addrA) });
      const [c, s] = [await client.result(60_000), await server.result(60_000)];
      assert.equal(c.code, 0, c.stderr);
      assert.equal(s.code, 0, s.stderr);
      assert.equal(report(c).received + report(s).received, n);
    }
    await o.a.router!.waitFor(/totals: 2 session\(s\), 0 live/, 10_000);
    const text = await (await fetch(`http://127.0.0.2:${port}/metrics`)).text();
    const js = await statusJson(o, o.a);
    const expect = {
      sent: UP,
      received: DOWN,
      total: 2,
      clean: 2,
      resets: 0,
      live: 0,
    };
    assert.deepEqual({
      sent: sample(text, "uvpn_session_bytes_total", '{direction="sent"}'),
      received: sample(text, "uvpn_session_bytes_total", '{direction="received"}'),
      total: sample(text, "uvpn_sessions_total"),
      clean: sample(text, "uvpn_sessions_ended_total", '{end="clean"}'),
      resets: sample(text, "uvpn_sessions_ended_total", '{end="reset"}'),
      live: sample(text, "uvpn_sessions_live"),
    }, expect);
    const s = js.sessions;
    assert.deepEqual({ sent: s.sent, received: s.received, total: s.total, clean: s.clean, resets: s.resets, live: s.live }, expect);
    assert.equal(sample(text, "uvpn_resumes_total"), 0);
    assert.equal(sample(text, "uvpn_spooled_bytes_total"), 0);
    assert.equal(sample(text, "uvpn_link_losses_total"), js.links.losses);
    assert.equal(sample(text, "uvpn_frames_total", '{direction="in"}'), js.frames.in);
    assert.equal(sample(text, "uvpn_connects_total", '{result="ok"}'), js.connects.ok);
    assert.equal(sample(text, "uvpn_connect_latency_seconds_count"), js.connects.ok + js.connects.failed);
    for (const [reason, n] of Object.entries(js.frames.refused)) assert.equal(sample(text, "uvpn_frames_refused_total", `{reason="${reason}"}`), n);
    assert.equal(sample(text, "uvpn_memory_bytes", '{kind="used"}'), 0);
  } finally {
    await client?.stop();
    await server?.stop();
    await o.stop();
  }
});

/** 1,000 short request/answer connections, 8 at a time; prints {"ok": n, "errors": [...]}. */
const SHORT_CLIENT = `
import json, socket, sys, threading
addr, port, total, par = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), 8
ok, errors, lock = [0], [], threading.Lock()
def worker(k):
    for i in range(k, total, par):
        try:
            s = socket.create_connection((addr, port), timeout=30)
            msg = b"%06d" % i * 20
            s.sendall(msg); s.shutdown(socket.SHUT_WR)
            got = b""
            while True:
                b = s.recv(65536)
                if not b: break
                got += b
            s.close()
            with lock:
                if got == msg[::-1]: ok[0] += 1
                else: errors.append("short answer %d" % len(got))
        except OSError as e:
            with lock: errors.append(repr(e))
ts = [threading.Thread(target=worker, args=(k,)) for k in range(par)]
[t.start() for t in ts]; [t.join() for t in ts]
print(json.dumps({"ok": ok[0], "errors": errors[:5], "nerrors": len(errors)}), flush=True)
`;

/** Answers each connection with its request reversed, after the client's FIN. */
const REVERSER = `
import socket, sys, threading
addr, port = sys.argv[1], int(sys.argv[2])
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((addr, port)); srv.listen(512)
print("listening", file=sys.stderr, flush=True)
def serve(c):
    got = b""
    while True:
        b = c.recv(65536)
        if not b: break
        got += b
    c.sendall(got[::-1]); c.close()
while True:
    c, _ = srv.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
`;

Deno.test("dataplane: 1,000 short sessions across the WAN emulator end cleanly on both sides, none reset", async () => {
  using dir = tempDir();
  const o = new Overlay(dir.path);
  const emu = new WanEmulator({ listen: { hostname: "127.0.0.4", port: 0 }, target: { hostname: o.b.host, port: o.b.port }, delayMs: 2 });
  o.routeBVia({ host: "127.0.0.4", port: emu.start() });
  await o.start();
  let server: Proc | undefined, client: Proc | undefined;
  try {
    const addrA = await o.register(o.a), addrB = await o.register(o.b);
    server = new Proc("python3", ["-c", REVERSER, addrB, "9400"], { env: { ...o.env(o.b, addrB), UVPN_DEBUG: "" } });
    await server.waitFor(/listening/);
    await o.b.router!.waitFor(/listener .*:9400 is at/);
    client = new Proc("python3", ["-c", SHORT_CLIENT, addrB, "9400", "1000"], { env: { ...o.env(o.a, addrA), UVPN_DEBUG: "" } });
    const c = await client.result(120_000);
    assert.equal(c.code, 0, c.stderr);
    const r = JSON.parse(c.stdout.trim().split("\n").pop()!);
    assert.deepEqual(r, { ok: 1000, errors: [], nerrors: 0 });
    // Both routers saw every session end cleanly (the answerer's CLOSE confirmed), none reset.
    const deadline = Date.now() + 15_000;
    let a = await statusJson(o, o.a), b = await statusJson(o, o.b);
    while ((a.sessions.live || b.sessions.live) && Date.now() < deadline) {
      await sleep(200);
      [a, b] = [await statusJson(o, o.a), await statusJson(o, o.b)];
    }
    for (const s of [a, b]) {
      assert.deepEqual({ total: s.sessions.total, clean: s.sessions.clean, resets: s.sessions.resets, live: s.sessions.live }, { total: 1000, clean: 1000, resets: 0, live: 0 });
    }
    assert.doesNotMatch(o.a.router!.stderr + o.b.router!.stderr, /session \w+ .* reset:/);
  } finally {
    await client?.stop();
    await server?.stop();
    await o.stop();
    emu.close();
  }
});

/** A server that accepts N connections (receive buffers of 64 KiB), reads nothing until the file
 * GO exists, then reads all of them at once and prints the sorted [length, sha256] of each. */
const MANY_READER = `
import hashlib, json, os, socket, sys, threading, time
addr, port, n, go = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
srv.bind((addr, port)); srv.listen(n)
print("listening", file=sys.stderr, flush=True)
conns = [srv.accept()[0] for _ in range(n)]
print("accepted", file=sys.stderr, flush=True)
for _ in range(1200):
    if os.path.exists(go): break
    time.sleep(0.1)
got = []
def read(c):
    h, k = hashlib.sha256(), 0
    while True:
        b = c.recv(1 << 20)
        if not b: break
        h.update(b); k += len(b)
    got.append([k, h.hexdigest()]); c.close()
ts = [threading.Thread(target=read, args=(c,)) for c in conns]
for t in ts: t.start()
for t in ts: t.join(120)
print(json.dumps({"got": sorted(got)}), flush=True)
`;

/** N connections at once (send buffers of 64 KiB), EACH pseudo-random bytes on each, progress
 * every 0.25 s; at the end the sorted [length, sha256] of each. */
const MANY_WRITER = `
import hashlib, json, random, socket, sys, threading, time
addr, port, n, each = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
sent, sums = [0] * n, []
def tick():
    while True:
        print(json.dumps({"written": sum(sent)}), flush=True); time.sleep(0.25)
def run(i):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
    s.connect((addr, port))
    rng, h = random.Random(i), hashlib.sha256()
    while sent[i] < each:
        b = rng.randbytes(min(1 << 16, each - sent[i]))
        s.sendall(b); h.update(b); sent[i] += len(b)
    s.shutdown(socket.SHUT_WR); s.recv(1)
    sums.append([each, h.hexdigest()])
threading.Thread(target=tick, daemon=True).start()
ts = [threading.Thread(target=run, args=(i,)) for i in range(n)]
for t in ts: t.start()
for t in ts: t.join(120)
print(json.dumps({"done": sorted(sums)}), flush=True)
`;

/** The largest "written" progress a writer printed. */
const written = (p: Proc) => Math.max(0, ...[...p.stdout.matchAll(/"written": (\d+)/g)].map((m) => Number(m[1])));

/** Waits (at most 20 s) until the writer's progress stopped moving for a second; returns it. */
async function stalled(p: Proc): Promise<number> {
  let last = -1, same = 0;
  for (let i = 0; i < 80 && same < 4; i++) {
    await sleep(250);
    const w = written(p);
    same = w === last && w > 0 ? same + 1 : 0;
    last = w;
  }
  return last;
}

Deno.test("dataplane: --memory-limit of a receiving router holds across 4 sessions to readers that do not read; writers block, then every byte arrives", async () => {
  using dir = tempDir();
  const limit = 16 * MIB, N = 4, EACH = 32 * MIB;
  // Only router B (the receiving side) has the limit: four 8 MiB windows would be 32 MiB.
  const o = new Overlay(dir.path, { routerArgs: ["--session-window", "8", "--spool-dir", join(dir.path, "spool")] });
  await o.startRouter(o.a);
  o.opts.routerArgs!.push("--memory-limit", "16");
  await o.startRouter(o.b);
  const go = join(dir.path, "go");
  let server: Proc | undefined, client: Proc | undefined;
  try {
    ({ server, client } = await pythonPair(o, 9500, [MANY_READER, String(N), go], [MANY_WRITER, String(N), String(EACH)]));
    const held = await stalled(client);
    const [a, b] = [await statusJson(o, o.a), await statusJson(o, o.b)];
    // Each session may always have 64 KiB on its way (so that no session starves); beyond that
    // the router's session memory (what it holds and what it granted) stays within the limit,
    // and the writers are held back.
    const bound = limit + N * 64 * 1024 + MIB;
    assert.ok(b.memory.peak <= bound, `router B held ${b.memory.peak} bytes (limit ${limit})`);
    assert.equal(b.memory.limit, limit);
    assert.ok(held < N * EACH, `the writers were not held back: ${held} bytes written`);
    assert.equal(a.spool.peak + b.spool.peak, 0, "no spool while the link is up");
    Deno.writeTextFileSync(go, "");
    const r = await finalReports(server, client, 60_000), done = r.done.done, got = r.got.got;
    assert.equal(done.length, N);
    assert.deepEqual(got, done);
    console.log(`memory limit: writers held at ${held} of ${N * EACH} bytes; peaks A ${a.memory.peak}, B ${b.memory.peak} (limit ${limit})`);
  } finally {
    await client?.stop();
    await server?.stop();
    await o.stop();
  }
});

Deno.test("dataplane: --spool-limit-total holds while the link is down; the writer blocks, nothing is dropped, every byte arrives once the link returns", async () => {
  using dir = tempDir();
  const spoolDir = join(dir.path, "spool");
  Deno.mkdirSync(spoolDir);
  const total = 2 * MIB, N = 48 * MIB;
  const o = new Overlay(dir.path, {
    routerArgs: ["--spool-limit-total", "2", "--session-window", "1", "--spool-dir", spoolDir, "--dead-after", "1", "--retry-max", "1"],
  });
  const emu = new WanEmulator({ listen: { hostname: "127.0.0.4", port: 0 }, target: { hostname: o.b.host, port: o.b.port }, delayMs: 2, rateBytesPerSec: 40e6 });
  o.routeBVia({ host: "127.0.0.4", port: emu.start() });
  await o.start();
  let server: Proc | undefined, client: Proc | undefined;
  try {
    ({ server, client } = await pythonPair(o, 9600, [STALLED_READER, "0"], [EAGER_WRITER, String(N)]));
    await sleep(300);
    emu.blackhole();
    await o.a.router!.waitFor(/link down \(nothing received for 1000 ms\)/);
    const held = await stalled(client);
    const a = await statusJson(o, o.a);
    const files = [...Deno.readDirSync(spoolDir)].reduce((n, e) => n + Deno.statSync(join(spoolDir, e.name)).size, 0);
    assert.ok(a.spool.used > 0 && a.spool.peak > 0, "the outage spooled");
    assert.ok(a.spool.peak <= total, `router A spooled ${a.spool.peak} bytes (total limit ${total})`);
    assert.ok(files <= total, `${files} bytes in spool files (total limit ${total})`);
    assert.equal(a.spool.limit, total);
    assert.ok(held < N, `the writer was not held back: ${held} bytes written`);
    await o.a.router!.waitFor(/spool limit reached \(--spool-limit-total\)/);
    emu.restore();
    const { done, got } = await finalReports(server, client, 60_000);
    assert.equal(got.received, N);
    assert.equal(got.sha, done.sha);
    assert.doesNotMatch(o.a.router!.stderr + o.b.router!.stderr, /session \w+: reset/);
    console.log(`spool limit: writer held at ${held} of ${N} bytes during the outage; spool peak ${a.spool.peak} (total limit ${total})`);
  } finally {
    await client?.stop();
    await server?.stop();
    await o.stop();
    emu.close();
  }
});
