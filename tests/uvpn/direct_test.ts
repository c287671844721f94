/**
 * The direct path (issue 17, docs/UVPN.md "The direct path"), root only, in the two-site
 * topology of tests/uvpn/sites.ts: inside site A the home router brokers a connection from a1 to
 * a listener on a2 (the listener's real address and a DIRECT ticket) and carries none of its
 * bytes, while a1 → b1 crosses the routers; `UVPN_DIRECT=never` and `uvpn_proxy --direct never`
 * keep everything relayed. With the direct path blackholed one way (`ip route add blackhole`
 * inside a2's namespace: a2's answers to a1 vanish), a connection falls back to the relay within
 * 300 ms and the path is not tried again for the next 60 s (no flapping). Real programs: python3
 * peers (tests/fixtures/direct_peer.py: blocking and non-blocking connects, virtual names on both
 * sides checked), curl against python3's http.server, iperf3. One topology for the whole file.
 * And on loopback (no root): two routers whose route lines say `site=lo` broker connections
 * between their subnets too.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { cli, IS_ROOT, Overlay, Proc, ROOT, run, spawnCli, tempDir, ticketAttempt } from "../helpers.ts";
import { type Node, Sites } from "./sites.ts";
import { ask, connectRouter } from "../../router/client.ts";
import { parseIp } from "../../router/ipv4.ts";
import { readKey } from "../../router/key.ts";
import { ConnectFlag, decodeConnectAnswer, encodeConnect, encodeTicket, FrameType, Status, TicketKind } from "../../router/wire.ts";

const isRoot = IS_ROOT;
const have = (cmd: string) => new Deno.Command("sh", { args: ["-c", `command -v ${cmd}`], stdout: "null", stderr: "null" }).outputSync().success;
const PEER = join(ROOT, "tests/fixtures/direct_peer.py");

/** The `paths` counters of one router. */
interface Paths {
  direct_offered: number;
  direct_failed: number;
  direct: number;
  direct_bytes: number;
  relayed: number;
  relayed_bytes: number;
}

/** The `paths` line of each router (a, then b), from `uvpn_proxy --status` of the route file. */
function paths(status: string): Paths[] {
  return [...status.matchAll(/^paths (.*)$/gm)].map((m) =>
    Object.fromEntries(m[1].split(" ").map((kv) => [kv.split("=")[0], Number(kv.split("=")[1])])) as unknown as Paths
  );
}

/**
 * Runs body on a loopback overlay (its route file rewritten by `routes`, its routers started with
 * `routerArgs`) with a client address
 * of subnet A and direct_peer.py's echo server on a fresh address of subnet `side` at `port`
 * (under UVPN_DEBUG, so that its refusals are logged).
 */
async function withLoopbackPeers(
  port: number,
  side: "a" | "b",
  routes: (text: string) => string,
  body: (o: Overlay, addrA: string, addrServer: string, server: Proc) => Promise<void>,
  routerArgs: string[] = [],
): Promise<void> {
  using dir = tempDir("myrt-direct-lo-");
  const o = new Overlay(dir.path, { routerArgs });
  Deno.writeTextFileSync(o.routes, routes(Deno.readTextFileSync(o.routes)));
  await o.start();
  let server: Proc | undefined;
  try {
    const [addrA, addrS] = [await o.register(o.a), await o.register(o[side])];
    server = new Proc("python3", [PEER, "serve", addrS, String(port)], { env: o.env(o[side], addrS) });
    await server.waitFor(/listening/);
    await o[side].router!.waitFor(new RegExp(`listener .*:${port} is at`));
    await body(o, addrA, addrS, server);
  } finally {
    await server?.stop();
    await o.stop();
  }
}

// deno-lint-ignore no-explicit-any
function attemptJson(text: string): any {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function delta(a: Paths, b: Paths): Paths {
  return Object.fromEntries(Object.entries(b).map(([k, v]) => [k, v - a[k as keyof Paths]])) as unknown as Paths;
}

Deno.test({
  name: "direct: brokered connections inside a site, relayed across, fallback without flapping",
  ignore: !isRoot || !have("python3"),
  async fn(t) {
    using dir = tempDir("myrt-direct-");
    const sites = new Sites(dir.path);
    const counters = async () => paths(await sites.status());
    try {
      await sites.start();
      const [a1, a2, b1] = ["a1", "a2", "b1"].map((n) => sites.node(n));
      const serve = async (n: Node, port: number): Promise<Proc> => {
        const p = sites.spawn(n, "python3", [PEER, "serve", n.addr, String(port)]);
        await p.waitFor(/listening/);
        return p;
      };
      const connect = async (from: Node, to: Node, port: number, args: string[], env: Record<string, string> = {}) => {
        const r = await sites.run(from, "python3", [PEER, "connect", to.addr, String(port), ...args], {
          env: { ...sites.env(from), UVPN_DEBUG: "1", ...env },
          timeoutMs: 90_000,
        });
        assert.equal(r.code, 0, r.stdout + r.stderr);
        assert.match(r.stdout, /^done$/m);
        return { lines: r.stdout.split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l)), stderr: r.stderr };
      };
      await serve(a2, 7100);
      await serve(b1, 7100);

      await t.step("a1 -> a2 goes direct: no relayed connection or byte at either router; virtual names on both sides", async () => {
        const before = await counters();
        for (const mode of ["blocking", "nonblocking"]) {
          const r = await connect(a1, a2, 7100, ["5", "0", "200000", mode]);
          assert.equal(r.lines.length, 6);
          for (const l of r.lines) assert.match(l.local, new RegExp(`^${a1.addr.replaceAll(".", "\\.")}:\\d+$`));
          assert.match(r.stderr, /connected directly to the listener/);
          assert.doesNotMatch(r.stderr, /through the home router/);
        }
        // The clients report their direct connections as they close them (PATHS): 12 of them,
        // 2 × 5 × 200,000 bytes echoed each way and more.
        let d = delta(before[0], (await counters())[0]);
        for (let i = 0; i < 40 && d.direct < 12; i++) {
          await new Promise((res) => setTimeout(res, 50));
          d = delta(before[0], (await counters())[0]);
        }
        // Brokered at least once per client process; the connects that follow within a second
        // mint their own tickets from what the router said.
        assert.ok(d.direct_offered >= 2 && d.direct_offered <= 12, JSON.stringify(d));
        assert.equal(d.direct, 12, JSON.stringify(d));
        assert.ok(d.direct_bytes >= 4 * 1_000_000, JSON.stringify(d));
        assert.equal(d.relayed, 0);
        assert.equal(d.relayed_bytes, 0);
        assert.equal(d.direct_failed, 0);
      });

      await t.step("a1 -> b1 crosses the routers: relayed, never brokered", async () => {
        const before = await counters();
        await connect(a1, b1, 7100, ["2", "0", "100000"]);
        const after = await counters();
        const da = delta(before[0], after[0]), db = delta(before[1], after[1]);
        assert.equal(da.direct_offered + db.direct_offered, 0);
        assert.equal(da.relayed, 3);
        assert.ok(da.relayed_bytes >= 2 * 3 * 1000, JSON.stringify(da));
      });

      await t.step("UVPN_DIRECT=never keeps a1 -> a2 relayed", async () => {
        const before = await counters();
        const r = await connect(a1, a2, 7100, ["2", "0", "100000"], { UVPN_DIRECT: "never" });
        assert.doesNotMatch(r.stderr, /directly/);
        const d = delta(before[0], (await counters())[0]);
        assert.equal(d.direct_offered, 0);
        assert.equal(d.relayed, 3);
        assert.ok(d.relayed_bytes >= 2 * 2 * 100_000, JSON.stringify(d));
      });

      await t.step("a listener started with UVPN_DIRECT=never is reached through the router only", async () => {
        const p = sites.spawn(a2, "python3", [PEER, "serve", a2.addr, "7102"], { env: { ...sites.env(a2), UVPN_DIRECT: "never" } });
        await p.waitFor(/listening/);
        const before = await counters();
        const r = await connect(a1, a2, 7102, ["1", "0", "1000"]);
        assert.doesNotMatch(r.stderr, /directly/);
        const d = delta(before[0], (await counters())[0]);
        assert.deepEqual([d.direct_offered, d.relayed], [0, 2]);
      });

      await t.step("curl and python3's http.server, iperf3: direct with real programs", async () => {
        Deno.writeTextFileSync(join(dir.path, "file.bin"), "x".repeat(1 << 20));
        const web = sites.spawn(a2, "python3", ["-m", "http.server", "--bind", a2.addr, "8080", "--directory", dir.path]);
        await web.waitFor(/Serving HTTP/);
        const before = await counters();
        const r = await sites.run(a1, "curl", ["-sS", "-o", "/dev/null", "-w", "%{http_code} %{size_download}", `http://${a2.addr}:8080/file.bin`]);
        assert.equal(r.stdout, `200 ${1 << 20}`, r.stderr);
        if (have("iperf3")) {
          // (listening before the first client: a connect that found no listener yet was
          // counted as relayed, 1 run in 4 from a fresh clone)
          const srv = sites.spawn(a2, "iperf3", ["-s", "-B", a2.addr, "-p", "5201", "--forceflush"]);
          await srv.waitFor(/Server listening/);
          let ok = false;
          for (let i = 0; i < 20 && !ok; i++) {
            const c = await sites.run(a1, "iperf3", ["-c", a2.addr, "-p", "5201", "-t", "1", "-J"], { timeoutMs: 20_000 });
            const received = attemptJson(c.stdout)?.end?.sum_received?.bytes ?? 0;
            ok = c.code === 0 && received > 0;
            if (!ok) await new Promise((res) => setTimeout(res, 200));
          }
          assert.ok(ok, "iperf3 through the direct path");
        }
        const d = delta(before[0], (await counters())[0]);
        assert.ok(d.direct_offered >= 1, JSON.stringify(d));
        assert.equal(d.relayed, 0);
        assert.equal(d.relayed_bytes, 0);
      });

      await t.step("UDP inside the site goes direct after the first datagrams; across sites through the routers", async () => {
        const udpReceived = async () => [...(await sites.status()).matchAll(/^udp endpoints=\d+ received=(\d+)/gm)].map((m) => Number(m[1]));
        for (const n of [a2, b1]) {
          const p = sites.spawn(n, "python3", [PEER, "udpecho", n.addr, "7400"]);
          await p.waitFor(/listening/);
        }
        const before = await udpReceived();
        const r = await sites.run(a1, "python3", [PEER, "udp", a2.addr, "7400", "40"]);
        assert.equal(r.code, 0, r.stdout + r.stderr);
        const mid = await udpReceived();
        // The router saw the first datagram each way (asked about the path meanwhile), not 80.
        assert.ok(mid[0] - before[0] <= 6, `router A received ${mid[0] - before[0]} of 80 datagrams`);
        const x = await sites.run(a1, "python3", [PEER, "udp", b1.addr, "7400", "10"]);
        assert.equal(x.code, 0, x.stdout + x.stderr);
        const after = await udpReceived();
        assert.ok(after[0] - mid[0] >= 10 && after[1] - mid[1] >= 10, JSON.stringify([mid, after]));
      });

      await t.step("blackholed one way: relayed within 300 ms, and no flapping over 60 s", async () => {
        const r1 = await run("ip", ["-n", a2.ns, "route", "add", "blackhole", `${a1.lanAddr}/32`]);
        assert.equal(r1.code, 0, r1.stderr);
        try {
          const before = await counters();
          // One connection kept open, then one every 2 s for 60 s, all checked end to end.
          const r = await connect(a1, a2, 7100, ["30", "2", "20000", "nonblocking"]);
          assert.equal(r.lines.length, 31);
          assert.ok(r.lines[0].ms < 300, `the first connect took ${r.lines[0].ms} ms`);
          // No flapping: the counters below show no second direct attempt; a later connect that
          // tried the direct path again would also wait the 250 ms before its relay starts (a
          // limit of 100 ms here failed now and then on a loaded machine, with relayed connects).
          for (const l of r.lines.slice(1)) assert.ok(l.ms < 250, `a later connect took ${l.ms} ms: ${JSON.stringify(r.lines)}`);
          assert.equal([...r.stderr.matchAll(/direct attempt failed/g)].length, 1, r.stderr);
          const d = delta(before[0], (await counters())[0]);
          assert.equal(d.direct_offered, 1, JSON.stringify(d));
          assert.equal(d.direct_failed, 1);
          assert.equal(d.relayed, 31);
          // The other way round the blackhole is a local route: a blocking connect from a2 to a
          // listener on a1 fails at once and takes the relay.
          await serve(a1, 7101);
          const back = await connect(a2, a1, 7101, ["2", "0", "1000"]);
          assert.ok(back.lines.every((l) => l.ms < 300), JSON.stringify(back.lines));
          assert.match(back.stderr, /direct attempt failed/);
          const d2 = delta(before[0], (await counters())[0]);
          assert.deepEqual([d2.direct_failed, d2.relayed], [2, 34]);
        } finally {
          await run("ip", ["-n", a2.ns, "route", "del", "blackhole", `${a1.lanAddr}/32`]);
        }
      });
    } finally {
      await sites.stop();
    }
  },
});

Deno.test({
  name: "direct: routers of one site (site= on their route lines) broker connections between their subnets",
  ignore: !have("python3"),
  async fn() {
    const siteLo = (routes: string) => routes.replace(/^(100\.\S+ \S+)$/gm, "$1 site=lo");
    await withLoopbackPeers(7300, "b", siteLo, async (o, addrA, addrB) => {
      const status = async (s: typeof o.a) => {
        const r = await cli("uvpn_proxy", ["--status", "--routes", o.routes, "--subnet", s.prefix], { env: o.baseEnv });
        return paths(r.stdout)[0];
      };
      const [a0, b0] = [await status(o.a), await status(o.b)];
      const r = await run("python3", [PEER, "connect", addrB, "7300", "3", "0", "100000", "nonblocking"], { env: o.env(o.a, addrA) });
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.match(r.stderr, /connected directly to the listener/);
      let [da, db] = [delta(a0, await status(o.a)), delta(b0, await status(o.b))];
      for (let i = 0; i < 40 && da.direct < 4; i++) {
        await new Promise((res) => setTimeout(res, 50));
        [da, db] = [delta(a0, await status(o.a)), delta(b0, await status(o.b))];
      }
      assert.ok(da.direct_offered >= 1, JSON.stringify(da));
      assert.equal(da.direct, 4, JSON.stringify(da));
      assert.equal(da.relayed + db.relayed, 0);
      assert.equal(da.relayed_bytes + db.relayed_bytes, 0);
    });
  },
});

Deno.test({
  name: "direct: the listener refuses a forged, replayed or misbound DIRECT ticket, and logs it; the brokered one works once",
  ignore: !have("python3"),
  async fn() {
    await withLoopbackPeers(7500, "a", (routes) => routes, async (o, addrA, addrB, server) => {
      // Broker a connection as a client of router A would (a link that uses addrA).
      const key = await readKey(o.keyFile);
      const link = await connectRouter({ host: o.a.host, port: o.a.port }, key);
      const src = parseIp(addrA)!, dst = parseIp(addrB)!;
      const use = await ask(link, FrameType.USE, new Uint8Array([src >>> 24, (src >> 16) & 255, (src >> 8) & 255, src & 255]));
      assert.equal(use.status, Status.OK);
      const r = await ask(link, FrameType.CONNECT, encodeConnect({ proto: 6, flags: ConnectFlag.DIRECT, srcIp: src, srcPort: 0, dstIp: dst, dstPort: 7500 }));
      link.close();
      assert.equal(r.status, Status.OK);
      const a = decodeConnectAnswer(r.data);
      assert.equal(a.kind, TicketKind.DIRECT);
      const ticket = (boundPort: number, k = key) =>
        encodeTicket(k, { kind: TicketKind.DIRECT, srcIp: src, srcPort: a.srcPort, dstIp: dst, dstPort: 7500, listenerId: a.listenerId, boundPort, issued: a.issued, ticketId: a.ticketId });
      const attempt = (bytes: (port: number) => Uint8Array) => ticketAttempt(a.realIp, a.realPort, bytes);
      assert.equal(await attempt((p) => ticket(p, new Uint8Array(32))), "", "a ticket MACed with another key");
      assert.equal(await attempt((p) => ticket(p + 1)), "", "a ticket bound to another port");
      assert.equal(await attempt(() => new TextEncoder().encode("GET / HTTP/1.0\r\n\r\n")), "", "no ticket");
      const ok = await attempt((p) => ticket(p));
      assert.match(ok, new RegExp(`^peer=${addrA.replaceAll(".", "\\.")}:${a.srcPort} local=${addrB.replaceAll(".", "\\.")}:7500\n`));
      assert.equal(await attempt((p) => ticket(p)), "", "the same ticket again");
      await server.waitFor(/bad ticket: .*MAC|ticket refused.*MAC/i);
      await server.waitFor(/bound to port \d+, not the connection's/);
      await server.waitFor(/ticket refused: ticket already used/);
    });
  },
});

Deno.test({
  name: "direct: UDP between supervised programs of one subnet goes direct after the first datagrams",
  ignore: !have("python3"),
  async fn() {
    using dir = tempDir("myrt-direct-udp-");
    const o = new Overlay(dir.path);
    await o.start();
    const echo = spawnCli("uvpn_register", ["-r", "--mode", "seccomp", "--", "python3", PEER, "udpecho", "0.0.0.0", "7600"], {
      env: { ...o.homeEnv(o.a), UVPN_DEBUG: "1" },
    });
    try {
      const addr = (await echo.waitFor(/Leased virtual address (\S+)/))[1];
      await echo.waitFor(/listening/);
      const received = async () => {
        const r = await cli("uvpn_proxy", ["--status", "--routes", o.routes, "--subnet", o.a.prefix], { env: o.baseEnv });
        return Number(/^udp endpoints=\d+ received=(\d+)/m.exec(r.stdout)?.[1]);
      };
      const before = await received();
      const r = await cli("uvpn_register", ["-r", "-s", "--mode", "seccomp", "--", "python3", PEER, "udp", addr, "7600", "40"], { env: o.homeEnv(o.a) });
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.match(r.stdout, /^done$/m);
      const n = (await received()) - before;
      assert.ok(n <= 6, `router A received ${n} of 80 datagrams`);
    } finally {
      await echo.stop();
      await o.stop();
    }
  },
});

Deno.test({
  name: "direct: uvpn_proxy --direct never relays every connection of its site",
  ignore: !have("python3"),
  async fn() {
    await withLoopbackPeers(7700, "a", (routes) => routes, async (o, addrA, addrB) => {
      const r = await run("python3", [PEER, "connect", addrB, "7700", "2", "0", "1000"], { env: o.env(o.a, addrA) });
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.doesNotMatch(r.stderr, /directly/);
      assert.match(r.stderr, /connected through the home router/);
      const st = await cli("uvpn_proxy", ["--status", "--routes", o.routes, "--subnet", o.a.prefix], { env: o.baseEnv });
      const p = paths(st.stdout)[0];
      assert.deepEqual([p.direct_offered, p.relayed], [0, 3]);
    }, ["--direct", "never"]);
  },
});

/** The supervisor's counts at its end (UVPN_DEBUG): stopped connects/accepts, and those of them handed to workers. */
function supervisorCounts(stderr: string): { connect: number; accept: number; handedConnect: number; handedAccept: number } {
  const m = /supervisor: \d+ stopped calls \(connect (\d+), accept (\d+), other \d+\), \d+ handed to worker threads \(connect (\d+), accept (\d+),/.exec(stderr);
  assert.ok(m, `no counts in the supervisor's log: ${stderr.slice(-2000)}`);
  return { connect: Number(m[1]), accept: Number(m[2]), handedConnect: Number(m[3]), handedAccept: Number(m[4]) };
}

Deno.test({
  name: "direct: under the supervisor, blocking connects to a listener brokered lately and blocking accepts of queued connections need no worker thread",
  ignore: !have("python3"),
  async fn() {
    using dir = tempDir("myrt-direct-loop-");
    const o = new Overlay(dir.path);
    await o.start();
    const flag = join(dir.path, "accept-now");
    // Accepts only once the client is done, so that each blocking accept finds its connection queued.
    const SERVER = `
import os, socket, sys, time
s = socket.socket(); s.bind(("0.0.0.0", 7800)); s.listen(16); print("ready", flush=True)
for _ in range(1000):
    if os.path.exists(sys.argv[1]): break
    time.sleep(0.01)
for _ in range(5):
    c, peer = s.accept(); print("peer", peer[0], c.getsockname()[0], flush=True); c.close()
`;
    const CLIENT = `
import socket, sys
for _ in range(5):
    c = socket.create_connection((sys.argv[1], 7800)); print("local", c.getsockname()[0], flush=True); c.close()
`;
    const server = spawnCli("uvpn_register", ["-r", "--mode", "seccomp", "--", "python3", "-c", SERVER, flag], {
      env: { ...o.homeEnv(o.a), UVPN_DEBUG: "1", UVPN_BIND_ANY: "virtual" },
    });
    try {
      const addr = (await server.waitFor(/Leased virtual address (\S+)/))[1];
      await server.waitFor(/ready/);
      await o.a.router!.waitFor(new RegExp(`listener ${addr.replaceAll(".", "\\.")}:7800 is at`));
      const c = await cli("uvpn_register", ["-r", "--mode", "seccomp", "--", "python3", "-c", CLIENT, addr], { env: { ...o.homeEnv(o.a), UVPN_DEBUG: "1" } });
      assert.equal(c.code, 0, c.stdout + c.stderr);
      const local = [...c.stdout.matchAll(/^local (\S+)$/gm)].map((m) => m[1]);
      assert.equal(local.length, 5, c.stdout);
      assert.equal((c.stderr.match(/connected directly to the listener/g) ?? []).length, 5, c.stderr);
      const cc = supervisorCounts(c.stderr);
      console.log(`client supervisor counts: ${JSON.stringify(cc)}`);
      // Five connects, each stopped once, unless the kernel restarted a stopped call (a signal or
      // a cgroup freeze while it waited: ERESTARTSYS, then a new notification for the same call).
      assert.ok(cc.connect >= 5, JSON.stringify(cc));
      // The first connect waits for the router's answer (a worker); the others mint their tickets
      // and complete on loopback within the stopped call (one more may find its handshake under
      // way). A restarted call may go to a worker once more, never more often than it restarted.
      assert.ok(cc.handedConnect <= 2 + (cc.connect - 5), JSON.stringify(cc));
      Deno.writeTextFileSync(flag, "");
      const s = await server.result(30_000);
      assert.equal(s.code, 0, s.stdout + s.stderr);
      assert.deepEqual([...s.stdout.matchAll(/^peer (\S+) (\S+)$/gm)].map((m) => [m[1], m[2]]), local.map((l) => [l, addr]));
      const sc = supervisorCounts(s.stderr);
      console.log(`server supervisor counts: ${JSON.stringify(sc)}`);
      assert.ok(sc.accept >= 5, JSON.stringify(sc));
      assert.ok(sc.handedAccept <= sc.accept - 5, JSON.stringify(sc));
    } finally {
      await server.stop();
      await o.stop();
    }
  },
});

Deno.test({
  name: "direct: one dropped SYN to a listener that just worked is relayed once and the path is kept (a full accept queue is no blackhole)",
  ignore: !have("python3"),
  async fn() {
    using dir = tempDir("myrt-direct-spare-");
    const o = new Overlay(dir.path);
    await o.start();
    // The server accepts one connection, then sleeps while the client fills its accept queue
    // (libuvpn.so raises a virtual listener's backlog to 512): the next SYN is dropped, as a busy
    // server's full queue drops it, then everything is accepted again.
    const SERVER = `
import socket, sys, time
s = socket.socket(); s.bind((sys.argv[1], 7900)); s.listen(16); print("listening", flush=True)
c, _ = s.accept(); c.close()
time.sleep(2.0)
while True:
    c, _ = s.accept(); c.close()
`;
    const CLIENT = `
import socket, sys, time
def conn():
    return socket.create_connection((sys.argv[1], 7900), timeout=20)
conn().close()             # direct, accepted
time.sleep(0.1)
held = []
for _ in range(1000):      # direct, waiting in the accept queue, until one SYN is dropped:
    t = time.monotonic()   # that direct attempt times out and the connect is relayed
    held.append(conn())
    if time.monotonic() - t > 0.2: break
print("held", len(held), round(time.monotonic() - t, 3), flush=True)
for c in held: c.close()
time.sleep(1.2)            # the brokered answer has expired: the router is asked again
conn().close()
`;
    let server: Proc | undefined;
    try {
      const [addrC, addrS] = [await o.register(o.a), await o.register(o.a)];
      server = new Proc("python3", ["-c", SERVER, addrS], { env: o.env(o.a, addrS) });
      await server.waitFor(/listening/);
      await o.a.router!.waitFor(new RegExp(`listener ${addrS.replaceAll(".", "\\.")}:7900 is at`));
      const status = async () => paths((await cli("uvpn_proxy", ["--status", "--routes", o.routes, "--subnet", o.a.prefix], { env: o.baseEnv })).stdout)[0];
      const before = await status();
      const c = await run("python3", ["-c", CLIENT, addrS], { env: o.env(o.a, addrC), timeoutMs: 60_000 });
      assert.equal(c.code, 0, c.stdout + c.stderr.slice(-3000));
      const ways = [...c.stderr.matchAll(/connected (directly to the listener|through the home router)/g)].map((m) => m[1].startsWith("directly") ? "direct" : "relayed");
      assert.equal((c.stderr.match(/direct attempt failed/g) ?? []).length, 1, c.stdout + c.stderr.slice(-3000));
      // The one that timed out was relayed; the next went direct again: the path was not held.
      const held = Number(/^held (\d+) /m.exec(c.stdout)?.[1]);
      assert.ok(held > 500 && held < 1000, c.stdout);
      assert.deepEqual(ways.slice(-3), ["direct", "relayed", "direct"], c.stderr.slice(-2000));
      assert.equal(ways.length, held + 2);
      const d = delta(before, await status());
      assert.equal(d.direct_failed, 0, JSON.stringify(d));
      assert.equal(d.relayed, 1, JSON.stringify(d));
    } finally {
      await server?.stop();
      await o.stop();
    }
  },
});
