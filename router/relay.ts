/**
 * The byte relay between two connections: a read/write loop per direction with one reused
 * buffer each, propagating half-close (EOF on one side becomes closeWrite on the other).
 */

/** Size of each direction's reused buffer. */
export const RELAY_BUFFER = 256 * 1024;

/** Byte counts of a finished relay. */
export interface RelayResult {
  aToB: number;
  bToA: number;
}

async function pump(from: Deno.TcpConn, to: Deno.TcpConn): Promise<number> {
  const buf = new Uint8Array(RELAY_BUFFER);
  let total = 0;
  while (true) {
    const n = await from.read(buf);
    if (n === null) break;
    let off = 0;
    while (off < n) off += await to.write(buf.subarray(off, n));
    total += n;
  }
  await to.closeWrite();
  return total;
}

/**
 * Copies both ways until both directions reached EOF, then closes both. An error in either
 * direction (reset) closes both at once, so the far ends see the reset too.
 */
export async function relay(a: Deno.TcpConn, b: Deno.TcpConn): Promise<RelayResult> {
  const closeBoth = () => {
    for (const c of [a, b]) {
      try {
        c.close();
      } catch { /* already closed */ }
    }
  };
  const onError = (e: unknown): never => {
    closeBoth();
    throw e;
  };
  const results = await Promise.allSettled([pump(a, b).catch(onError), pump(b, a).catch(onError)]);
  closeBoth();
  const failed = results.find((r) => r.status === "rejected");
  if (failed) throw (failed as PromiseRejectedResult).reason;
  const [aToB, bToA] = results.map((r) => (r as PromiseFulfilledResult<number>).value);
  return { aToB, bToA };
}
