/**
 * UDP across two subnets by virtual address, with real programs: socat echo servers (connected
 * UDP-LISTEN and unconnected UDP-RECVFROM), a python3 client that checks the sources recvfrom
 * reports, datagram boundaries, truncation and EMSGSIZE, iperf3 -u, the TCP carrier between
 * routers (udp=tcp), a forged datagram, and a static Go program under the seccomp supervisor.
 * Runs inside the loopback-only namespace of scripts/test.sh; every process is stopped by pid.
 */
import assert from "node:assert/strict";
import dgram from "node:dgram";
import { join } from "node:path";
import { sealDgram } from "../../router/wire.ts";
import { cli, Overlay, Proc, ROOT, run, spawnCli, tempDir } from "../helpers.ts";

const CLIENT = join(ROOT, "tests/fixtures/udp_client.py");
const esc = (s: string) => s.replaceAll(".", "\\.");

/** An overlay whose route lines carry `udp=MODE` (how routers carry UDP to each other). */
async function overlay(dir: string, mode: "udp" | "tcp" = "udp"): Promise<Overlay> {
  const o = new Overlay(dir);
  if (mode === "tcp") {
    const text = Deno.readTextFileSync(o.routes).replace(/^(100\.\S+ \S+)$/gm, "$1 udp=tcp");
    Deno.writeTextFileSync(o.routes, text);
  }
  await o.start();
  return o;
}

/** One datagram through `socat - UDP:dst` from subnet A; returns what came back. */
async function socatOnce(o: Overlay, addrA: string, dst: string, text: string) {
  return await run("socat", ["-t", "1", "-T", "5", "-", `UDP:${dst}`], { env: o.env(o.a, addrA), stdin: text, timeoutMs: 15_000 });
}

/** Runs body on a fresh overlay with the python3 echo server on addrB:port in subnet B. */
async function withEcho(port: number, body: (o: Overlay, addrA: string, addrB: string, echo: Proc) => Promise<void>) {
  using dir = tempDir();
  const o = await overlay(dir.path);
  let echo: Proc | undefined;
  try {
    const addrB = await o.register(o.b);
    const addrA = await o.register(o.a);
    echo = new Proc("python3", ["-u", CLIENT, "echo", addrB, String(port)], { env: o.env(o.b, addrB) });
    await echo.waitFor(/ready/);
    await body(o, addrA, addrB, echo);
  } finally {
    await echo?.stop();
    await o.stop();
  }
}

for (const mode of ["udp", "tcp"] as const) {
  Deno.test(`udp: socat echo across two subnets (routers carry UDP as ${mode})`, async () => {
    using dir = tempDir();
    const o = await overlay(dir.path, mode);
    const servers: Proc[] = [];
    try {
      const addrB = await o.register(o.b);
      const addrA = await o.register(o.a);
      // Connected server: UDP-LISTEN receives the first datagram, connects to its sender, then
      // uses read/write. Unconnected: UDP-RECVFROM answers each datagram with sendto from a child.
      servers.push(new Proc("socat", ["-T", "10", `UDP-LISTEN:7000,bind=${addrB}`, "EXEC:cat"], { env: o.env(o.b, addrB) }));
      servers.push(new Proc("socat", [`UDP-RECVFROM:7001,bind=${addrB},fork`, "EXEC:cat"], { env: o.env(o.b, addrB) }));
      await o.b.router!.waitFor(new RegExp(`UDP endpoint ${esc(addrB)}:7000 is at`));
      await o.b.router!.waitFor(new RegExp(`UDP endpoint ${esc(addrB)}:7001 is at`));
      for (const port of [7000, 7001]) {
        const r = await socatOnce(o, addrA, `${addrB}:${port}`, `hello ${port} over ${mode}\n`);
        assert.equal(r.code, 0, r.stderr);
        assert.equal(r.stdout, `hello ${port} over ${mode}\n`, `echo on ${port}: ${r.stderr}`);
      }
      // The server saw the client's virtual address (socat logs the peer it connects to).
      await servers[0].waitFor(new RegExp(`connect ${esc(addrA)}:\\d+ \\(UDP\\): through the home router`));
      if (mode === "tcp") await o.a.router!.waitFor(/UDP carrier link to 127\.0\.0\.3:\d+ open/);
      const st = await cli("uvpn_proxy", ["--status", "--routes", o.routes, "--subnet", o.a.prefix], { env: o.baseEnv });
      assert.match(st.stdout, /udp endpoints=\d+ received=[1-9]\d* delivered=[1-9]\d* forwarded=[1-9]\d* dropped=0/, st.stdout);
    } finally {
      for (const s of servers) await s.stop();
      await o.stop();
    }
  });
}

Deno.test("udp: python3 sees virtual sources, whole datagrams, truncation, EMSGSIZE, connected sockets", async () => {
  await withEcho(7002, async (o, addrA, addrB, echo) => {
    const r = await run("python3", ["-u", CLIENT, "client", addrB, "7002", addrA], { env: o.env(o.a, addrA), timeoutMs: 30_000 });
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, new RegExp(`^ok ${esc(addrA)}:\\d+\\n$`));
    // The echo server's recvfrom reported the client's virtual address for every datagram.
    const froms = [...echo.stdout.matchAll(/^from (\S+):\d+ (\d+)$/gm)];
    assert.equal(froms.length, 8, echo.stdout);
    assert.ok(froms.every((m) => m[1] === addrA), echo.stdout);
    assert.ok(froms.some((m) => m[2] === "65473"), "the largest datagram crossed whole");
    assert.match(r.stderr, /do not fit the tunnel \(at most 65473\) \(EMSGSIZE\)/);
  });
});

Deno.test("udp: a datagram forged without the key is dropped and logged by the router", async () => {
  const sock = dgram.createSocket("udp4");
  const send = (o: Overlay, d: Uint8Array) =>
    new Promise<void>((res, rej) => sock.send(d, o.b.port, o.b.host, (e: Error | null) => (e ? rej(e) : res())));
  try {
    await withEcho(7003, async (o, addrA, addrB, echo) => {
      const ip = addrB.split(".").reduce((a, b) => a * 256 + Number(b), 0);
      await send(o, sealDgram(new Uint8Array(32).fill(7), { srcIp: 0x64400063, srcPort: 1, dstIp: ip, dstPort: 7003 }, new Uint8Array(8)));
      await send(o, new Uint8Array([1, 2, 3]));
      await o.b.router!.waitFor(/dropped datagram from 127\.0\.0\.1:\d+: Bad datagram MAC/);
      await o.b.router!.waitFor(/dropped datagram from 127\.0\.0\.1:\d+: Short datagram: 3 bytes/);
      assert.doesNotMatch(echo.stdout, /^from /m, "nothing forged reached the program");
      // The router still relays real datagrams.
      const r = await socatOnce(o, addrA, `${addrB}:7003`, "still relaying\n");
      assert.equal(r.stdout, "still relaying\n", r.stderr);
    });
  } finally {
    sock.close();
  }
});

Deno.test("udp: iperf3 -u across the overlay receives its datagrams with low loss", async () => {
  using dir = tempDir();
  const o = await overlay(dir.path);
  let server: Proc | undefined;
  try {
    const addrB = await o.register(o.b);
    const addrA = await o.register(o.a);
    server = new Proc("iperf3", ["-s", "-1", "-B", addrB, "-p", "5301"], { env: o.env(o.b, addrB) });
    await o.b.router!.waitFor(new RegExp(`listener ${esc(addrB)}:5301 is at`));
    const r = await run("iperf3", ["-u", "-c", addrB, "-p", "5301", "-b", "20M", "-l", "1200", "-t", "2", "--json"], {
      env: o.env(o.a, addrA),
      timeoutMs: 30_000,
    });
    assert.equal(r.code, 0, r.stdout + r.stderr);
    const sum = JSON.parse(r.stdout).end.sum;
    const received = sum.packets - sum.lost_packets;
    assert.ok(sum.packets > 1000, `sent ${sum.packets} datagrams`);
    assert.ok(received > 1000, `received ${received} datagrams`);
    assert.ok(sum.lost_percent < 10, `lost ${sum.lost_percent}%`);
  } finally {
    await server?.stop();
    await o.stop();
  }
});

/** The static Go UDP fixture (tests/fixtures/gohttp/udp), built once with its own Go caches. */
async function goUdp(dir: string): Promise<string> {
  const r = await run("go", ["build", "-o", join(dir, "goudp"), "./udp"], {
    cwd: join(ROOT, "tests/fixtures/gohttp"),
    env: { CGO_ENABLED: "0", GOCACHE: join(dir, "cache"), GOPATH: join(dir, "gopath"), GOFLAGS: "", HOME: dir },
    timeoutMs: 240_000,
  });
  if (r.code !== 0) throw new Error(`go build failed: ${r.stderr}`);
  return join(dir, "goudp");
}

Deno.test("udp: a static Go program under the seccomp supervisor exchanges UDP across subnets", async () => {
  using dir = tempDir();
  const bin = await goUdp(dir.path);
  const o = await overlay(dir.path);
  let echo: Proc | undefined;
  try {
    // Static: uvpn_register's default mode runs both under the supervisor.
    echo = spawnCli("uvpn_register", ["-r", "--", bin, "echo", "0.0.0.0:7004"], { env: { ...o.homeEnv(o.b), UVPN_DEBUG: "1" } });
    const addrB = (await echo.waitFor(/Leased virtual address (\S+) from router/))[1];
    await echo.waitFor(/ready/);
    await o.b.router!.waitFor(new RegExp(`UDP endpoint ${esc(addrB)}:7004 is at`));
    const c = spawnCli("uvpn_register", ["-r", "--", bin, "client", `${addrB}:7004`], { env: { ...o.homeEnv(o.a), UVPN_DEBUG: "1" } });
    const r = await c.result(30_000);
    const addrA = (await c.waitFor(/Leased virtual address (\S+) from router/))[1];
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stderr, /uvpn: supervising pid/);
    assert.match(r.stdout, new RegExp(`^ok ${esc(addrA)}:\\d+\\n$`));
    assert.match(r.stderr, /do not fit the tunnel \(at most 65473\) \(EMSGSIZE\)/);
    const froms = [...echo.stdout.matchAll(/^from (\S+):\d+ (\d+)$/gm)];
    assert.deepEqual(froms.map((m) => [m[1], m[2]]), [[addrA, "1"], [addrA, "1400"], [addrA, "9000"], [addrA, "65473"]]);
  } finally {
    await echo?.stop();
    await o.stop();
  }
});

Deno.test("udp: IPv6 sockets reach v4-mapped virtual addresses; an unreachable router fails closed", async () => {
  await withEcho(7005, async (o, addrA, addrB) => {
    const v6 = `
import socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.settimeout(10)
s.sendto(b"six", ("::ffff:" + sys.argv[1], 7005))
data, peer = s.recvfrom(100)
print(data.decode(), peer[0], peer[1])
`;
    const r = await run("python3", ["-c", v6, addrB], { env: o.env(o.a, addrA), timeoutMs: 20_000 });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `six ::ffff:${addrB} 7005\n`);
    // The home router is gone: nothing may leave for the virtual address, the send fails.
    await o.a.router!.stop();
    const down = `
import errno, socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
try:
    s.sendto(b"x", (sys.argv[1], 7005))
    print("sent")
except OSError as e:
    print(errno.errorcode[e.errno])
`;
    const d = await run("python3", ["-c", down, addrB], { env: o.env(o.a, addrA), timeoutMs: 60_000 });
    assert.equal(d.stdout, "ENETUNREACH\n", d.stderr);
  });
});
