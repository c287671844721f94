/**
 * XUFS's decoders of network input under fast-check (xufs/messages.ts, xufs/seal.ts): messages
 * and sealed records round-trip through streams cut at random places (decode ∘ encode = id);
 * any bytes at all either decode or fail with the decoder's own errors (ProtocolError, SealError,
 * StreamEndError) and never with anything else; a declared length past the limit is refused
 * before its bytes are read; one altered byte anywhere in a sealed stream never decodes. The seed
 * is printed by fast-check on failure, so a failing case can be replayed.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { bytes } from "../arbitraries.ts";
import { StreamEndError } from "../../common/io.ts";
import { encodeMessage, ProtocolError, readMessage } from "../../xufs/messages.ts";
import { NativeRecordKey, NodeRecordKey, type RawConn, recordKey, SealedConn, SealError } from "../../xufs/seal.ts";

const RUNS = Number(Deno.env.get("MYRT_PROPERTY_RUNS") ?? 100_000);

/** A byte stream over `bytes` that hands them out in the given chunk sizes (cycled). */
class ChunkedReader implements RawConn {
  off = 0;
  asked = 0;
  #i = 0;
  written: Uint8Array[] = [];
  constructor(readonly bytes: Uint8Array, readonly chunks: number[] = [1 << 20]) {}
  read(p: Uint8Array): Promise<number | null> {
    this.asked = Math.max(this.asked, p.length);
    if (this.off >= this.bytes.length) return Promise.resolve(null);
    const n = Math.min(p.length, this.bytes.length - this.off, Math.max(1, this.chunks[this.#i++ % this.chunks.length]));
    p.set(this.bytes.subarray(this.off, this.off + n));
    this.off += n;
    return Promise.resolve(n);
  }
  write(p: Uint8Array): Promise<number> {
    this.written.push(p.slice());
    return Promise.resolve(p.length);
  }
  close(): void {}
}

const concatAll = (parts: Uint8Array[]) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) out.set(p, (off += p.length) - p.length);
  return out;
};
const own = (e: unknown) => e instanceof ProtocolError || e instanceof StreamEndError || e instanceof SealError;
// Headers as XUFS sends them: flat objects of strings, numbers, booleans, nulls and string lists.
const value = fc.oneof(fc.string({ maxLength: 20 }), fc.integer(), fc.double({ noNaN: true, noDefaultInfinity: true }), fc.boolean(), fc.constant(null), fc.array(fc.string({ maxLength: 8 }), { maxLength: 3 }));
const head = fc.dictionary(fc.string({ maxLength: 12 }), value, { maxKeys: 4 });
const chunks = fc.array(fc.integer({ min: 1, max: 64 }), { minLength: 1, maxLength: 8 });
const key = bytes(32);

Deno.test("xufs messages property: messages round-trip through a stream cut anywhere", async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(fc.tuple(head, fc.uint8Array({ maxLength: 300 })), { minLength: 1, maxLength: 3 }), chunks, async (msgs, cuts) => {
      const r = new ChunkedReader(concatAll(msgs.map(([h, p]) => encodeMessage(h, p))), cuts);
      for (const [h, p] of msgs) {
        const m = await readMessage(r);
        assert.ok(m);
        assert.deepEqual(m.head, JSON.parse(JSON.stringify(h)));
        assert.deepEqual(m.payload, p);
      }
      assert.equal(await readMessage(r), null);
    }),
    { numRuns: RUNS },
  );
});

Deno.test("xufs messages property: any bytes decode or fail with ProtocolError or StreamEndError; limits are checked before reading", async () => {
  const limit = 256;
  await fc.assert(
    fc.asyncProperty(fc.uint8Array({ maxLength: 200 }), chunks, async (bytes, cuts) => {
      const r = new ChunkedReader(bytes, cuts);
      try {
        for (let i = 0; i < 50 && (await readMessage(r, limit, limit)) !== null; i++) { /* next */ }
      } catch (e) {
        if (!own(e)) throw e;
      }
      assert.ok(r.asked <= limit, `asked for ${r.asked} bytes at once with a limit of ${limit}`);
    }),
    { numRuns: RUNS },
  );
});

Deno.test("xufs seal property: sealed writes read back whole through a stream cut anywhere", async () => {
  await fc.assert(
    fc.asyncProperty(key, key, fc.array(fc.uint8Array({ maxLength: 200 }), { minLength: 1, maxLength: 3 }), chunks, async (k1, k2, writes, cuts) => {
      const sink = new ChunkedReader(new Uint8Array(0));
      const tx = new SealedConn(sink, k1, k2);
      for (const w of writes) await tx.write(w);
      const rx = new SealedConn(new ChunkedReader(concatAll(sink.written), cuts), k2, k1);
      const want = concatAll(writes), got = new Uint8Array(want.length);
      let off = 0;
      for (let i = 0; i < 10_000 && off < want.length; i++) {
        const n = await rx.read(got.subarray(off));
        assert.ok(n !== null, `ended after ${off} of ${want.length} bytes`);
        off += n;
      }
      assert.deepEqual(got, want);
    }),
    { numRuns: RUNS },
  );
});

Deno.test("xufs seal property: one altered byte anywhere in a sealed stream never decodes; any bytes fail with SealError or StreamEndError", async () => {
  await fc.assert(
    fc.asyncProperty(key, fc.uint8Array({ minLength: 1, maxLength: 200 }), fc.nat(), fc.integer({ min: 1, max: 255 }), async (k, plain, at, flip) => {
      const sink = new ChunkedReader(new Uint8Array(0));
      await new SealedConn(sink, k, k).write(plain);
      const bytes = concatAll(sink.written);
      bytes[at % bytes.length] ^= flip;
      const rx = new SealedConn(new ChunkedReader(bytes), k, k);
      await assert.rejects(async () => {
        for (let i = 0; i < 10 && (await rx.read(new Uint8Array(256))) !== null; i++) { /* next */ }
      }, (e) => e instanceof SealError || e instanceof StreamEndError);
    }),
    { numRuns: RUNS },
  );
  await fc.assert(
    fc.asyncProperty(key, fc.uint8Array({ maxLength: 120 }), async (k, bytes) => {
      const rx = new SealedConn(new ChunkedReader(bytes), k, k);
      try {
        for (let i = 0; i < 10 && (await rx.read(new Uint8Array(256))) !== null; i++) { /* next */ }
      } catch (e) {
        if (!own(e)) throw e;
      }
    }),
    { numRuns: RUNS },
  );
});

/** Both record keys over one chunk: the same sealed bytes; each opens the other's; a flipped byte opens with neither. */
function agree(k: Uint8Array, n: bigint, chunk: Uint8Array, at: number): void {
  const native = new NativeRecordKey(k), node = new NodeRecordKey(k);
  const a = new Uint8Array(chunk.length + 20), b = new Uint8Array(chunk.length + 20);
  native.seal(n, chunk, a);
  node.seal(n, chunk, b);
  assert.deepEqual(a, b, `record ${n} of ${chunk.length} bytes`);
  assert.deepEqual(node.open(n, a.subarray(0, 4), a.slice(4)), chunk);
  assert.deepEqual(native.open(n, b.subarray(0, 4), b.slice(4)), chunk);
  assert.equal(native.open(n + 1n, a.subarray(0, 4), a.slice(4)), null, "a record opened under the next number");
  const bad = a.slice();
  bad[at % bad.length] ^= 0x40;
  assert.equal(native.open(n, bad.subarray(0, 4), bad.slice(4)), null);
  assert.equal(node.open(n, bad.subarray(0, 4), bad.slice(4)), null);
}

Deno.test("xufs seal property: libuvpnrouter.so's records equal node:crypto's byte for byte, and links use them", async () => {
  assert.ok(recordKey(new Uint8Array(32)) instanceof NativeRecordKey, "libuvpnrouter.so is built, so links must seal through it");
  fc.assert(
    fc.property(key, fc.bigInt({ min: 0n, max: 2n ** 64n - 2n }), fc.uint8Array({ maxLength: 300 }), fc.nat(), (k, n, chunk, at) => agree(k, n, chunk, at)),
    { numRuns: RUNS },
  );
  // The SIMD paths' block boundaries (16, 128 and 256 bytes) and the largest record.
  const k = crypto.getRandomValues(new Uint8Array(32));
  for (const size of [0, 1, 15, 16, 17, 127, 128, 129, 255, 256, 257, 4095, 4096, 4097, 65535, 65536]) {
    const chunk = new Uint8Array(size);
    for (let off = 0; off < size; off += 65536) crypto.getRandomValues(chunk.subarray(off, Math.min(size, off + 65536)));
    agree(k, BigInt(size) * 7919n, chunk, size * 31);
  }
  // A stream sealed natively reads back through node:crypto, records of 64 KiB and a rest.
  const sink = new ChunkedReader(new Uint8Array(0));
  const big = new Uint8Array(200_000).map((_, i) => i * 7);
  await new SealedConn(sink, k, k).write(big);
  const sealed = concatAll(sink.written);
  assert.equal(sealed.length, big.length + 4 * 20);
  let off = 0;
  for (let n = 0n; off < sealed.length; n++) {
    const len = new DataView(sealed.buffer, off).getUint32(0);
    assert.ok(new NodeRecordKey(k).open(n, sealed.subarray(off, off + 4), sealed.slice(off + 4, off + 4 + len)) !== null, `record ${n}`);
    off += 4 + len;
  }
});
