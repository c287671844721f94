/**
 * fast-check generators the property tests share, cheaper than fast-check's own for the same
 * values: a fixed number of bytes drawn as 32-bit words (fc.uint8Array draws them one by one,
 * about four times slower; for arrays of varying length it stays the better choice, as it keeps
 * most of them short), so that 100,000 runs of each property stay affordable in CI.
 */
import fc from "fast-check";

const u32 = fc.integer({ min: 0, max: 0xffffffff });

/** Exactly `n` random bytes (keys, nonces, ids). */
export function bytes(n: number): fc.Arbitrary<Uint8Array> {
  const words = Math.ceil(n / 4);
  return fc.array(u32, { minLength: words, maxLength: words }).map((w) => new Uint8Array(new Uint32Array(w).buffer, 0, n).slice());
}
