/**
 * --notun security through ussh against a real sshd (issue 11, case 8): a man in the middle on
 * the raw TCP path (ussh reaches B at [::1] through ssh's HostName; the test's forwarder there
 * passes everything to B's port on 127.0.0.1) injects forged frames and replays recorded ones,
 * and A applies none of them while the session goes on; idle connections from others and an
 * oversized frame before authentication cannot stop a session from starting.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { be32, concat } from "../../common/bytes.ts";
import { closeQuietly } from "../../common/io.ts";
import { sleep } from "../helpers.ts";
import { awaitMarker, conflictRe, type Hosts, namesMatching, usshTest, waitUntil, withHosts } from "./hosts.ts";

/** One forwarded connection: A's end, B's end, and what B sent towards A. */
interface Relayed {
  toA: Deno.TcpConn;
  toB: Deno.TcpConn;
  fromB: Uint8Array[];
  lastFromB: number;
  closed: boolean;
}

/** A forwarder on [::1] for every port of B's XUFS_PORT_RANGE, to B on 127.0.0.1. */
class ManInTheMiddle {
  readonly conns: Relayed[] = [];
  #listeners: Deno.TcpListener[] = [];

  constructor(lo: number, hi: number) {
    for (let port = lo; port <= hi; port++) {
      const l = Deno.listen({ hostname: "::1", port });
      this.#listeners.push(l);
      (async () => {
        for await (const c of l) this.#relay(c, port).catch(() => {});
      })().catch(() => {});
    }
  }

  async #relay(toA: Deno.TcpConn, port: number): Promise<void> {
    const toB = await Deno.connect({ hostname: "127.0.0.1", port });
    const r: Relayed = { toA, toB, fromB: [], lastFromB: Date.now(), closed: false };
    this.conns.push(r);
    const pump = async (from: Deno.TcpConn, to: Deno.TcpConn, seen?: (b: Uint8Array) => void) => {
      const buf = new Uint8Array(65536);
      try {
        for (let n = await from.read(buf); n !== null; n = await from.read(buf)) {
          seen?.(buf.slice(0, n));
          for (let off = 0; off < n;) off += await to.write(buf.subarray(off, n));
        }
      } catch { /* either end went */ }
      r.closed = true;
      closeQuietly(toA, toB);
    };
    pump(toA, toB);
    pump(toB, toA, (b) => {
      r.fromB.push(b);
      r.lastFromB = Date.now();
    });
  }

  /** Connections still open. */
  get live(): Relayed[] {
    return this.conns.filter((c) => !c.closed);
  }

  /** Writes `bytes` towards A on every open connection, as if B had sent them. */
  async inject(bytes: (c: Relayed) => Uint8Array): Promise<Relayed[]> {
    const hit = this.live;
    for (const c of hit) await c.toA.write(bytes(c)).catch(() => {});
    return hit;
  }

  /** Waits until B has sent nothing towards A for `quietMs` on any connection. */
  async quiet(quietMs = 300): Promise<void> {
    await waitUntil(() => this.conns.length > 0 && this.live.every((c) => Date.now() - c.lastFromB > quietMs), "a quiet link");
  }

  close(): void {
    closeQuietly(...this.#listeners);
    for (const c of this.conns) closeQuietly(c.toA, c.toB);
  }
}

/** A plaintext frame of the XUFS file protocol: JSON header and payload. */
function frame(head: Record<string, unknown>, payload = new Uint8Array(0)): Uint8Array {
  const h = new TextEncoder().encode(JSON.stringify(head));
  return concat(be32(h.length), be32(payload.length), h, payload);
}

/** ssh reaches sshd through socat; ussh's raw TCP goes to the HostName, [::1], where the forwarder listens. */
function mitmConfig(h: Hosts): string {
  const config = join(h.dir, "ssh_config_mitm");
  Deno.writeTextFileSync(
    config,
    Deno.readTextFileSync(h.sshd.clientConfig).replace(/HostName \S+/, `HostName ::1\n  ProxyCommand socat - TCP:127.0.0.1:%p`),
  );
  return config;
}

Deno.test({
  ...usshTest,
  name: "xufs --notun: frames forged or replayed by a man in the middle are rejected; A applies none; the session goes on",
  async fn() {
    await withHosts(async (h) => {
      const mitm = new ManInTheMiddle(h.portLo, h.portLo + 20);
      try {
        Deno.writeTextFileSync(join(h.a, ".bashrc"), "# A's own shell setup\n");
        const p = h.spawn(
          `cd ~/xufs-rhome && echo 1 > counter.txt && ${awaitMarker("m-injected")} && echo 2 > counter.txt && ` +
            `${awaitMarker("m-replayed")} && echo done > final.txt && cat counter.txt`,
          { notun: true, config: mitmConfig(h) },
        );
        const counter = () => Deno.readTextFileSync(join(h.a, "counter.txt"));
        await waitUntil(() => counter() === "1\n", "counter 1 on A", 60_000, p);
        await mitm.quiet();
        const recorded = new Map(mitm.live.map((c) => [c, concat(...c.fromB)]));
        // Forged plaintext requests, as anyone on the path could write them.
        const forged = concat(
          frame({ op: "unlink", path: ".bashrc", id: 900001 }),
          frame({ op: "write", path: "injected.txt", base: null, mode: 0o644, id: 900002 }, new TextEncoder().encode("pwned\n")),
        );
        const hit = await mitm.inject(() => forged);
        assert.ok(hit.length > 0);
        await waitUntil(() => hit.every((c) => c.closed), "A closing every connection that carried a forged frame", 15_000);
        assert.equal(Deno.readTextFileSync(join(h.a, ".bashrc")), "# A's own shell setup\n");
        assert.throws(() => Deno.statSync(join(h.a, "injected.txt")));
        // The session re-attaches and goes on.
        Deno.writeTextFileSync(h.b("m-injected"), "");
        await waitUntil(() => counter() === "2\n", "counter 2 on A", 60_000, p);
        await mitm.quiet();
        // Replayed: what B sent on the first connections, played again into the new ones.
        const before = [...recorded.values()];
        const again = await mitm.inject((c) => before[mitm.conns.indexOf(c) % before.length]);
        await waitUntil(() => again.every((c) => c.closed), "A closing every connection that carried a replay", 15_000);
        Deno.writeTextFileSync(h.b("m-replayed"), "");
        const r = await p.result(120_000);
        assert.equal(r.code, 0, r.stderr);
        assert.equal(r.stdout, "2\n");
        assert.equal(counter(), "2\n");
        assert.equal(Deno.readTextFileSync(join(h.a, "final.txt")), "done\n");
        assert.equal(Deno.readTextFileSync(join(h.a, ".bashrc")), "# A's own shell setup\n");
        assert.deepEqual(namesMatching(h.a, conflictRe(".*")), []);
        assert.throws(() => Deno.statSync(join(h.a, "injected.txt")));
        assert.match(r.stderr, /failed authentication/);
      } finally {
        mitm.close();
      }
    });
  },
});

/** The port a --notun session on B listens on (its port file under RUN/ussh-*), or 0 before it wrote it. */
function listenedPort(run: string): number {
  try {
    for (const d of Deno.readDirSync(run)) {
      if (!d.name.startsWith("ussh-")) continue;
      try {
        const port = Number(Deno.readTextFileSync(join(run, d.name, "port")).trim());
        if (port > 0) return port;
      } catch { /* not written yet */ }
    }
  } catch { /* no session yet */ }
  return 0;
}

Deno.test({
  ...usshTest,
  name: "xufs --notun: idle connections from others and an oversized frame before authentication do not stop a session",
  async fn() {
    await withHosts(async (h) => {
      Deno.writeTextFileSync(join(h.a, "f"), "served despite the strangers\n");
      // B reads the file only once the strangers are in (the marker), so the session cannot end
      // before them (it did, 1 run in some: the 40 connects then met a closed port).
      const p = h.spawn(`${awaitMarker("m-strangers")} && cat ~/xufs-rhome/f`, { notun: true });
      const strangers: Deno.TcpConn[] = [];
      try {
        // As soon as B listens, strangers connect and say nothing; one sends a 1 MiB header length.
        // The port is the one B wrote to its port file: probing the range instead once connected a
        // socket to itself (a port of the range was free and the kernel picked it as the probe's own
        // source port: TCP's simultaneous open), so the strangers then met a closed port.
        let port = 0;
        for (let i = 0; i < 3000 && !port; i++) {
          port = listenedPort(h.b(".xufs/run"));
          if (!port) await sleep(10);
        }
        strangers.push(await Deno.connect({ hostname: "127.0.0.1", port }));
        assert.ok(port, "B never listened in XUFS_PORT_RANGE");
        for (let i = 0; i < 40; i++) strangers.push(await Deno.connect({ hostname: "127.0.0.1", port }));
        const big = await Deno.connect({ hostname: "127.0.0.1", port });
        strangers.push(big);
        await big.write(concat(be32(1 << 20), be32(0), new Uint8Array(1000).fill(0x7b)));
        const t0 = Date.now();
        const giveUp = setTimeout(() => closeQuietly(big), 10_000); // bounded: B must close it first
        const got = await big.read(new Uint8Array(1 << 16)).catch(() => null);
        clearTimeout(giveUp);
        assert.equal(got, null, "B answered an oversized pre-authentication frame");
        assert.ok(Date.now() - t0 < 5000, `B kept an oversized pre-authentication frame for ${Date.now() - t0} ms`);
        Deno.writeTextFileSync(h.b("m-strangers"), "");
        const r = await p.result(120_000);
        assert.equal(r.code, 0, r.stderr);
        assert.equal(r.stdout, "served despite the strangers\n");
      } finally {
        closeQuietly(...strangers);
      }
    });
  },
});

