/**
 * Test fixture: A's file server on a real Unix socket, and authenticated links to it for B's
 * cache managers (each link its own connection).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import type { CacheManager } from "../../xufs/cache/mod.ts";
import { Remote } from "../../xufs/remote.ts";
import { FileServer } from "../../xufs/server.ts";

/** The session secret of the fixture. */
export const SECRET = "s3cret";

/** Bytes a link received: proof that a transfer really used it. */
export interface Counter {
  bytes: number;
}

/** `conn`, counting the bytes read from it into `counter`. */
function counting(conn: Deno.Conn, counter: Counter): Deno.Conn {
  return new Proxy(conn, {
    get(target, key) {
      if (key === "read") {
        return async (buf: Uint8Array) => {
          const n = await target.read(buf);
          if (n) counter.bytes += n;
          return n;
        };
      }
      const v = Reflect.get(target, key);
      return typeof v === "function" ? v.bind(target) : v;
    },
  });
}

/**
 * `conn`, delivering what it reads at `bytesPerSec` at most (a slow link): each read takes at most
 * a tenth of a second's worth, and waits until the bytes before it would have been delivered.
 */
export function throttled(conn: Deno.Conn, bytesPerSec: number): Deno.Conn {
  const per = Math.max(1, Math.floor(bytesPerSec / 10));
  let free = performance.now(); // when the link has delivered everything read so far
  return new Proxy(conn, {
    get(target, key) {
      if (key === "read") {
        return async (buf: Uint8Array) => {
          const wait = free - performance.now();
          if (wait > 0) await new Promise((r) => setTimeout(r, wait));
          const n = await target.read(buf.subarray(0, Math.min(buf.length, per)));
          if (n) free = Math.max(free, performance.now()) + (n / bytesPerSec) * 1000;
          return n;
        };
      }
      const v = Reflect.get(target, key);
      return typeof v === "function" ? v.bind(target) : v;
    },
  });
}

/**
 * A file server for `root` on a Unix socket; `connect()` opens a new authenticated Remote
 * (counting what it receives into `counter`, when given; reading at most `bytesPerSec`).
 */
export function serve(root: string, dir: string) {
  const path = join(dir, `srv-${crypto.randomUUID().slice(0, 6)}.sock`);
  const logs: string[] = [];
  const server = new FileServer(root, SECRET, (l) => logs.push(l));
  const listener = Deno.listen({ transport: "unix", path });
  const conns: Deno.Conn[] = [];
  (async () => {
    for await (const c of listener) {
      conns.push(c);
      server.serve(c);
    }
  })().catch(() => {});
  return {
    path,
    logs,
    server,
    connect: async (secret = SECRET, counter?: Counter, bytesPerSec?: number, timeoutMs?: number) => {
      let conn: Deno.Conn = await Deno.connect({ transport: "unix", path });
      if (counter) conn = counting(conn, counter);
      if (bytesPerSec) conn = throttled(conn, bytesPerSec);
      return await Remote.open(conn, secret, timeoutMs);
    },
    close() {
      try {
        listener.close();
      } catch { /* closed already */ }
      for (const c of conns) {
        try {
          c.close();
        } catch { /* closed */ }
      }
    },
  };
}

/**
 * After a conflicting write-back of `name` from `host`: A kept `onA`, exactly one conflict copy
 * holds `fromB`, the cache logged it, and the cache's next open gets A's version.
 */
export async function assertConflictKept(
  a: string,
  cache: CacheManager,
  logs: string[],
  name: string,
  host: string,
  onA: string,
  fromB: string,
): Promise<void> {
  assert.equal(Deno.readTextFileSync(join(a, name)), onA);
  const copies = [...Deno.readDirSync(a)].filter((e) => e.name.startsWith(`${name}.conflict-${host}-`));
  assert.equal(copies.length, 1, [...Deno.readDirSync(a)].map((e) => e.name).join(" "));
  assert.equal(Deno.readTextFileSync(join(a, copies[0].name)), fromB);
  assert.ok(logs.some((l) => l.startsWith(`conflict: ${name} changed on host A`)), logs.join("\n"));
  assert.equal(await cache.answer(`LOOKUP\t${name}`), "OK\n");
  assert.equal(await cache.answer(`FETCH\t${name}`), "OK\n");
  assert.equal(Deno.readTextFileSync(join(cache.tree, name)), onA);
}
