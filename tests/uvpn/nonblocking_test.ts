/**
 * UVPN never stalls a program (issue 12), with real programs under libuvpn.so: a python3 asyncio
 * loop keeps its 20 ms ticker while it connects to a silent subnet and talks to a healthy one;
 * curl's --connect-timeout works against a silent subnet; node and curl --parallel fetch from
 * overlay servers at once; exact non-blocking semantics (tests/fixtures/nb_semantics.py); idle
 * strangers on a listener's real port delay nobody; a killed server's address refuses at once
 * while another process listens on its old real port; 20,000 short connections to one server.
 * A third route points at a "silent router": a TCP port that accepts and never answers.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { cli, Overlay, Proc, ROOT, run, tempDir } from "../helpers.ts";

const esc = (s: string) => s.replaceAll(".", "\\.");
const SILENT = "100.66.0.9";

/** A two-subnet overlay plus a third route (100.66.0.0/16) to a port that accepts and never answers. */
async function withSilentOverlay(body: (o: Overlay, dir: string) => Promise<void>): Promise<void> {
  using dir = tempDir();
  const o = new Overlay(dir.path);
  const silent = Deno.listen({ hostname: "127.0.0.4", port: 0 });
  const port = (silent.addr as Deno.NetAddr).port;
  const held: Deno.Conn[] = [];
  (async () => {
    for await (const c of silent) held.push(c); // accepted, never read, never answered
  })().catch(() => {});
  Deno.writeTextFileSync(o.routes, `100.66.0.0/16 127.0.0.4:${port}\n`, { append: true });
  await o.start();
  try {
    await body(o, dir.path);
  } finally {
    await o.stop();
    silent.close();
    for (const c of held) c.close();
  }
}

/** socat echo server (forking) on addr:port in subnet s. */
async function echoServer(o: Overlay, s: Overlay["a"], addr: string, port: number): Promise<Proc> {
  const p = new Proc("socat", [`TCP-LISTEN:${port},bind=${addr},reuseaddr,fork`, "EXEC:cat"], { env: o.env(s, addr) });
  await s.router!.waitFor(new RegExp(`listener ${esc(addr)}:${port} is at`));
  return p;
}

/** python3 http.server on addr:port in subnet s, serving dir. */
async function httpServer(o: Overlay, s: Overlay["a"], addr: string, port: number, dir: string): Promise<Proc> {
  const p = new Proc("python3", ["-u", "-m", "http.server", String(port), "--bind", addr, "--directory", dir], { env: o.env(s, addr) });
  await p.waitFor(/Serving HTTP/);
  return p;
}

/** withSilentOverlay with python3 http.server on a virtual address of B (port 8080) serving `text` as /f. */
function withWebServer(text: string, body: (o: Overlay, addrA: string, addrB: string, server: Proc) => Promise<void>) {
  return withSilentOverlay(async (o, dir) => {
    const www = join(dir, "www");
    Deno.mkdirSync(www);
    Deno.writeTextFileSync(join(www, "f"), text);
    const addrB = await o.register(o.b);
    const addrA = await o.register(o.a);
    const server = await httpServer(o, o.b, addrB, 8080, www);
    try {
      await body(o, addrA, addrB, server);
    } finally {
      await server.stop();
    }
  });
}

const ASYNCIO_CLIENT = `
import asyncio, sys, time
silent, healthy, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
gaps = []
async def ticker(stop):
    last = time.monotonic()
    while not stop.is_set():
        await asyncio.sleep(0.02)
        now = time.monotonic(); gaps.append(now - last); last = now
async def silent_conn():
    try:
        await asyncio.wait_for(asyncio.open_connection(silent, 80), 3)
        return "connected"
    except asyncio.TimeoutError:
        return "timeout"
    except OSError as e:
        return "error %s" % e.errno
async def healthy_conns():
    out = []
    for i in range(5):
        r, w = await asyncio.open_connection(healthy, port)
        w.write(b"ping%d\\n" % i); await w.drain()
        out.append((await r.readline()).decode().strip())
        w.close(); await w.wait_closed()
    return out
async def main():
    stop = asyncio.Event()
    t = asyncio.create_task(ticker(stop))
    a, b = await asyncio.gather(silent_conn(), healthy_conns())
    stop.set(); await t
    print("silent", a); print("healthy", ",".join(b)); print("maxgap_ms", int(max(gaps) * 1000))
asyncio.run(main())
`;

Deno.test("nonblocking: a python3 asyncio loop keeps ticking while it connects to a silent subnet and talks to a healthy one", () =>
  withSilentOverlay(async (o) => {
    const addrB = await o.register(o.b);
    const addrA = await o.register(o.a);
    const echo = await echoServer(o, o.b, addrB, 7000);
    try {
      const r = await run("python3", ["-c", ASYNCIO_CLIENT, SILENT, addrB, "7000"], { env: o.env(o.a, addrA), timeoutMs: 30_000 });
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /^silent timeout$/m, r.stderr);
      assert.match(r.stdout, /^healthy ping0,ping1,ping2,ping3,ping4$/m, r.stderr);
      const gap = Number(r.stdout.match(/^maxgap_ms (\d+)$/m)?.[1]);
      assert.ok(gap < 250, `the loop stalled ${gap} ms`);
    } finally {
      await echo.stop();
    }
  }));

Deno.test("nonblocking: curl --connect-timeout 1 to a silent subnet gives up after about a second", () =>
  withSilentOverlay(async (o) => {
    const addrA = await o.register(o.a);
    const t = Date.now();
    const r = await run("curl", ["-sS", "--connect-timeout", "1", `http://${SILENT}/`], { env: o.env(o.a, addrA) });
    const took = Date.now() - t;
    assert.equal(r.code, 28, r.stderr); // CURLE_OPERATION_TIMEDOUT: curl's own timer fired
    assert.ok(took < 5000, `curl took ${took} ms`);
    assert.match(r.stderr, /uvpn: connect 100\.66\.0\.9:80: in progress/);
  }));

Deno.test("nonblocking: exact semantics of a non-blocking connect (epoll edge and level, select, SO_ERROR, EALREADY, EISCONN, SO_SNDTIMEO)", () =>
  withSilentOverlay(async (o) => {
    const addrB = await o.register(o.b);
    const addrA = await o.register(o.a);
    const echo = await echoServer(o, o.b, addrB, 7001);
    try {
      const r = await run("python3", [join(ROOT, "tests/fixtures/nb_semantics.py"), addrB, "7001", addrB, "7002", "100.65.200.200", SILENT], {
        env: o.env(o.a, addrA),
        timeoutMs: 60_000,
      });
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.doesNotMatch(r.stdout, /FAIL/);
      assert.ok(r.stdout.split("\n").filter((l) => l.startsWith("ok ")).length >= 14, r.stdout);
    } finally {
      await echo.stop();
    }
  }));

const NODE_CLIENT = `
const http = require("http");
const [host, port, n] = [process.argv[1], Number(process.argv[2]), Number(process.argv[3])];
const get = (i) => new Promise((resolve, reject) => {
  http.get({ host, port, path: "/f", agent: false }, (res) => {
    let body = ""; res.on("data", (d) => body += d); res.on("end", () => resolve(body.trim()));
  }).on("error", reject);
});
Promise.all(Array.from({ length: n }, (_, i) => get(i))).then((bodies) => {
  console.log("bodies", new Set(bodies).size, bodies.length, bodies[0]);
}, (e) => { console.error("node failed:", e.message); process.exit(1); });
`;

Deno.test("nonblocking: node and curl --parallel fetch from overlay servers many at once", () =>
  withWebServer("from the overlay\n", async (o, addrA, addrB) => {
    {
      const n = await run("node", ["-e", NODE_CLIENT, addrB, "8080", "20"], { env: o.env(o.a, addrA), timeoutMs: 60_000 });
      assert.equal(n.code, 0, n.stderr);
      assert.equal(n.stdout.trim(), "bodies 1 20 from the overlay");
      const urls = Array.from({ length: 12 }, (_, i) => `http://${addrB}:8080/f?${i}`);
      const c = await run("curl", ["-sS", "--parallel", "--parallel-max", "6", "--max-time", "20", ...urls], {
        env: o.env(o.a, addrA),
        timeoutMs: 60_000,
      });
      assert.equal(c.code, 0, c.stderr);
      assert.equal(c.stdout, "from the overlay\n".repeat(12));
    }
  }));

Deno.test("nonblocking: idle strangers on a listener's real port do not delay overlay clients", () =>
  withWebServer("served\n", async (o, addrA, addrB, server) => {
    const strangers: Deno.TcpConn[] = [];
    try {
      const real = Number((await o.b.router!.waitFor(new RegExp(`listener ${esc(addrB)}:8080 is at 127\\.0\\.0\\.1:(\\d+)`)))[1]);
      for (let i = 0; i < 4; i++) strangers.push(await Deno.connect({ hostname: "127.0.0.1", port: real }));
      // One stranger even sends garbage: it is closed at once, and delays nobody either.
      await strangers[0].write(new TextEncoder().encode("GET / HTTP/1.0\r\n\r\n"));
      const t = Date.now();
      const r = await run("curl", ["-sS", "--max-time", "5", `http://${addrB}:8080/f`], { env: o.env(o.a, addrA) });
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, "served\n");
      assert.ok(Date.now() - t < 4000, `curl took ${Date.now() - t} ms`);
      assert.equal(await strangers[0].read(new Uint8Array(64)).catch(() => null), null, "the stranger that spoke was closed unanswered");
      await server.waitFor(/accept .*closed connection from 127\.0\.0\.1:\d+: no ticket/);
      assert.doesNotMatch(server.stderr, /"GET \/ HTTP\/1\.0"/, "the stranger's request never reached http.server");
    } finally {
      for (const c of strangers) c.close();
    }
  }));

Deno.test("nonblocking: a killed server's address refuses at once while another process listens on its real port", () =>
  withWebServer("old server\n", async (o, addrA, addrB, server) => {
    const real = Number((await o.b.router!.waitFor(new RegExp(`listener ${esc(addrB)}:8080 is at 127\\.0\\.0\\.1:(\\d+)`)))[1]);
    await server.stop("SIGKILL");
    await o.b.router!.waitFor(new RegExp(`listener ${esc(addrB)}:8080 dropped: its process went away`), 3000);
    // Another, unrelated program takes the real port and logs whoever connects.
    const other = new Proc("python3", ["-u", "-c", `
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", ${real})); s.listen(8); print("listening", flush=True)
while True:
    c, a = s.accept(); print("connection from", a, flush=True); c.close()
`]);
    try {
      await other.waitFor(/listening/);
      const t = Date.now();
      const r = await run("curl", ["-sS", "--max-time", "10", `http://${addrB}:8080/f`], { env: o.env(o.a, addrA) });
      assert.equal(r.code, 7, r.stderr); // connection refused
      assert.ok(Date.now() - t < 3000, `refused after ${Date.now() - t} ms`);
      assert.match(r.stderr, /uvpn: connect .*Connection refused \(ECONNREFUSED\)/);
      assert.doesNotMatch(other.stdout, /connection from/, "nothing meant for the old server reached the new process");
    } finally {
      await other.stop();
    }
  }));

const MANY_CLIENT = `
import socket, sys, time
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
ok = 0
t = time.monotonic()
for i in range(n):
    s = socket.create_connection((host, port), timeout=10)
    s.sendall(b"x")
    if s.recv(1) == b"x":
        ok += 1
    s.close()
print("ok", ok, "of", n, "in", round(time.monotonic() - t, 1), "s")
`;

const ONE_BYTE_ECHO = `
import socket, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((__import__("os").environ["UVPN_SRC_ADDR"], 7100)); s.listen(512); print("ready", flush=True)
def serve(c):
    with c:
        d = c.recv(1)
        if d: c.sendall(d)
while True:
    c, _ = s.accept(); threading.Thread(target=serve, args=(c,), daemon=True).start()
`;

/** 20,000; the sanitizer pass (scripts/test.sh) runs 2,000: the same paths, a tenth of the time. */
const SHORT_CONNECTIONS = Number(Deno.env.get("MYRT_SHORT_CONNECTIONS") ?? 20_000);

Deno.test(`nonblocking: ${SHORT_CONNECTIONS.toLocaleString("en")} short connections to one server all succeed`, () =>
  withSilentOverlay(async (o) => {
    const addrB = await o.register(o.b);
    const addrB2 = await o.register(o.b);
    const server = new Proc("python3", ["-u", "-c", ONE_BYTE_ECHO], { env: o.env(o.b, addrB) });
    try {
      await server.waitFor(/ready/);
      await o.b.router!.waitFor(new RegExp(`listener ${esc(addrB)}:7100 is at`));
      const r = await run("python3", ["-c", MANY_CLIENT, addrB, "7100", String(SHORT_CONNECTIONS)], { env: { ...o.env(o.b, addrB2), UVPN_DEBUG: "" }, timeoutMs: 600_000 });
      assert.equal(r.code, 0, r.stderr.slice(-2000));
      assert.match(r.stdout, new RegExp(`^ok ${SHORT_CONNECTIONS} of ${SHORT_CONNECTIONS} `), r.stdout);
    } finally {
      await server.stop();
    }
  }));

Deno.test("nonblocking: the same semantics and the asyncio ticker under the seccomp supervisor", () =>
  withSilentOverlay(async (o) => {
    const addrB = await o.register(o.b);
    const echo = await echoServer(o, o.b, addrB, 7001);
    // python3 is dynamic: --mode seccomp forces the supervisor on it.
    const seccomp = (args: string[]) =>
      cli("uvpn_register", ["-r", "--mode", "seccomp", "--", "python3", ...args], {
        env: { ...o.homeEnv(o.a), UVPN_DEBUG: "1", NB_SUPERVISED: "1" },
        timeoutMs: 60_000,
      });
    try {
      const r = await seccomp([join(ROOT, "tests/fixtures/nb_semantics.py"), addrB, "7001", addrB, "7002", "100.65.200.200", SILENT]);
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.match(r.stderr, /uvpn: supervising pid/);
      assert.doesNotMatch(r.stdout, /FAIL/);
      const a = await seccomp(["-c", ASYNCIO_CLIENT, SILENT, addrB, "7001"]);
      assert.equal(a.code, 0, a.stderr);
      assert.match(a.stdout, /^silent timeout$/m, a.stderr);
      assert.match(a.stdout, /^healthy ping0,ping1,ping2,ping3,ping4$/m, a.stderr);
      const gap = Number(a.stdout.match(/^maxgap_ms (\d+)$/m)?.[1]);
      assert.ok(gap < 250, `the loop stalled ${gap} ms`);
    } finally {
      await echo.stop();
    }
  }));
