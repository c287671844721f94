/**
 * scripts/fault_relay.ts against socat echo servers: each fault fires at the exact byte or
 * frame it was armed for, and does exactly what it says (reset, drop, corrupt, inject,
 * blackhole), also when frames arrive one byte at a time.
 */
import assert from "node:assert/strict";
import { FaultRelay, parseFault } from "../../scripts/fault_relay.ts";
import { encodeFrame, FrameType } from "../../router/wire.ts";
import { concat } from "../../common/bytes.ts";
import { Proc } from "../helpers.ts";

/** A socat echo server on loopback and a relay in front of it. */
async function setup(): Promise<{ relay: FaultRelay; port: number; [Symbol.asyncDispose](): Promise<void> }> {
  // socat binds a free port itself (port 0) and reports it (-d -d: "listening on AF=2 host:port").
  const echo = new Proc("socat", ["-d", "-d", "TCP-LISTEN:0,bind=127.0.0.1,reuseaddr,fork", "EXEC:cat"]);
  const echoPort = Number((await echo.waitFor(/listening on AF=2 127\.0\.0\.1:(\d+)/))[1]);
  const relay = new FaultRelay({ listen: { hostname: "127.0.0.1", port: 0 }, target: { hostname: "127.0.0.1", port: echoPort } });
  const port = relay.start();
  return {
    relay,
    port,
    async [Symbol.asyncDispose]() {
      relay.close();
      await echo.stop();
    },
  };
}

/** Sends `data` (in pieces of `piece` bytes), half-closes, and reads the echo to its end. */
async function echoThrough(port: number, data: Uint8Array, piece = data.length): Promise<{ got: Uint8Array; error?: Error }> {
  const c = await Deno.connect({ hostname: "127.0.0.1", port });
  const chunks: Uint8Array[] = [];
  const reading = (async () => {
    const buf = new Uint8Array(65536);
    while (true) {
      const n = await c.read(buf);
      if (n === null) return;
      chunks.push(buf.slice(0, n));
    }
  })();
  let error: Error | undefined;
  try {
    for (let off = 0; off < data.length; off += piece) {
      const part = data.subarray(off, off + piece);
      let w = 0;
      while (w < part.length) w += await c.write(part.subarray(w));
    }
    await c.closeWrite();
  } catch (e) {
    error = e as Error;
  }
  await reading.catch((e) => (error ??= e));
  try {
    c.close();
  } catch { /* closed */ }
  return { got: concat(...chunks), error };
}

function pattern(n: number): Uint8Array {
  return Uint8Array.from({ length: n }, (_, i) => (i * 7 + (i >> 8)) & 0xff);
}

Deno.test("fault relay: rst after exactly N bytes resets the client, which got at most N bytes back", async () => {
  await using s = await setup();
  const fired = s.relay.arm({ dir: "up", afterBytes: 300_000, action: "rst" });
  const r = await echoThrough(s.port, pattern(1 << 20));
  const e = await fired;
  assert.equal(e.offset, 300_000);
  assert.ok(r.error instanceof Deno.errors.ConnectionReset || r.error instanceof Deno.errors.BrokenPipe, String(r.error));
  assert.ok(r.got.length <= 300_000, `${r.got.length} bytes came back`);
  assert.deepEqual(r.got, pattern(1 << 20).subarray(0, r.got.length));
});

Deno.test("fault relay: drop, inject and corrupt change the stream exactly where armed", async () => {
  await using s = await setup();
  const data = pattern(200_000);
  s.relay.arm({ dir: "up", afterBytes: 1000, action: "drop", count: 10 });
  s.relay.arm({ dir: "up", afterBytes: 50_000, action: "inject", bytes: new Uint8Array([1, 2, 3]) });
  s.relay.arm({ dir: "down", afterBytes: 150_000, action: "corrupt", count: 5 });
  const r = await echoThrough(s.port, data);
  assert.equal(r.error, undefined);
  const want = concat(data.subarray(0, 1000), data.subarray(1010, 50_000), new Uint8Array([1, 2, 3]), data.subarray(50_000)).slice();
  want[150_005] ^= 1;
  assert.equal(r.got.length, want.length);
  assert.deepEqual(r.got, want);
  assert.deepEqual(s.relay.events.map((e) => e.offset), [1000, 50_000, 150_000]);
});

Deno.test("fault relay: a frame fault fires at its frame, also when frames arrive one byte at a time", async () => {
  const key = new Uint8Array(32);
  const a = encodeFrame(key, FrameType.LIST, 1, 1);
  const b = encodeFrame(key, FrameType.LEASE, 2, 2, new Uint8Array([0, 0, 0, 0, 0, 0]));
  const c = encodeFrame(key, FrameType.STATUS, 3, 3, new Uint8Array([0]));
  const stream = concat(a, b, c, new TextEncoder().encode("raw bytes after the frames"));
  for (const piece of [stream.length, 1]) {
    await using s = await setup();
    const fired = s.relay.arm({ dir: "up", onFrameType: FrameType.STATUS, action: "corrupt", count: 32 });
    s.relay.arm({ dir: "up", onFrameType: FrameType.INFO, action: "rst" }); // no INFO frame: never fires
    const r = await echoThrough(s.port, stream, piece);
    assert.equal((await fired).offset, a.length + b.length, `pieces of ${piece}`);
    const want = stream.slice();
    want[a.length + b.length + 32] ^= 1;
    assert.deepEqual(r.got, want);
    assert.equal(s.relay.events.length, 1);
  }
});

Deno.test("fault relay: a blackhole forwards nothing more, either way, and closes nothing", async () => {
  await using s = await setup();
  const fired = s.relay.arm({ dir: "up", afterBytes: 10, action: "blackhole" });
  const c = await Deno.connect({ hostname: "127.0.0.1", port: s.port });
  await c.write(pattern(100));
  assert.equal((await fired).offset, 10);
  await c.write(pattern(100)); // still open: writing works
  const buf = new Uint8Array(100);
  const more = await Promise.race([c.read(buf), new Promise((r) => setTimeout(() => r("quiet"), 300))]);
  assert.equal(more, "quiet"); // not the echo of the first 10 bytes, not an EOF
  c.close();
});

Deno.test("fault relay: CLI fault lines parse, bad ones are refused with the line", () => {
  assert.deepEqual(parseFault("up after 1048576 rst"), { dir: "up", action: "rst", afterBytes: 1048576 });
  assert.deepEqual(parseFault("down frame 22 corrupt 40"), { dir: "down", action: "corrupt", onFrameType: 22, count: 40 });
  assert.deepEqual(parseFault("up after 0 inject 5556"), { dir: "up", action: "inject", afterBytes: 0, bytes: new Uint8Array([0x55, 0x56]) });
  assert.throws(() => parseFault("sideways after 1 rst"), /sideways after 1 rst/);
});
