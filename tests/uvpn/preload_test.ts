/**
 * UVPN end to end on loopback with unmodified dynamic programs under libuvpn.so: curl against
 * python3's http.server and a socat echo with half-close across two subnets, two virtual servers
 * on one port, an unkeyed client, fail-closed connects (checked with strace), router restarts.
 * Runs inside the loopback-only namespace of scripts/test.sh.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { cli, Overlay, Proc, run, tempDir } from "../helpers.ts";


/** Starts `python3 -m http.server` on addr:port in subnet `s`, serving `root`. */
async function httpServer(o: Overlay, s: Overlay["a"], addr: string, port: number, root: string): Promise<Proc> {
  const p = new Proc("python3", ["-u", "-m", "http.server", String(port), "--bind", addr, "--directory", root], {
    env: o.env(s, addr),
  });
  await p.waitFor(/Serving HTTP/);
  return p;
}

/** curl through the overlay; prints the body then `local_ip:local_port remote_ip:remote_port`. */
function curl(o: Overlay, s: Overlay["a"], addr: string, url: string, extra: string[] = []) {
  return run("curl", [
    "-sS",
    "--max-time",
    "15",
    "-w",
    "\n%{local_ip}:%{local_port} %{remote_ip}:%{remote_port}",
    ...extra,
    url,
  ], { env: o.env(s, addr) });
}

Deno.test("uvpn: curl reaches python3 http.server across two subnets with virtual identities", async () => {
  using dir = tempDir();
  const o = new Overlay(dir.path);
  const www = join(dir.path, "www");
  Deno.mkdirSync(www);
  Deno.writeTextFileSync(join(www, "hello.txt"), "hello across the overlay\n");
  await o.start();
  let server: Proc | undefined;
  try {
    const addrB = await o.register(o.b);
    const addrA = await o.register(o.a);
    assert.match(addrB, /^100\.65\.\d+\.\d+$/);
    assert.match(addrA, /^100\.64\.\d+\.\d+$/);
    server = await httpServer(o, o.b, addrB, 8080, www);
    const r = await curl(o, o.a, addrA, `http://${addrB}:8080/hello.txt`);
    assert.equal(r.code, 0, r.stderr);
    const cut = r.stdout.lastIndexOf("\n");
    const [body, ids] = [r.stdout.slice(0, cut), r.stdout.slice(cut + 1)];
    assert.equal(body, "hello across the overlay\n");
    const [local, remote] = ids.split(" ");
    assert.match(local, new RegExp(`^${addrA.replaceAll(".", "\\.")}:\\d+$`), "getsockname on the client");
    assert.equal(remote, `${addrB}:8080`, "getpeername on the client");
    // http.server logs the peer address accept() returned: the client's virtual address.
    await server.waitFor(new RegExp(`${addrA.replaceAll(".", "\\.")} - - .*GET /hello.txt`));
    // The path went client -> home router A -> peer router B -> server, as in the paper.
    await o.a.router!.waitFor(new RegExp(`relay ${addrA.replaceAll(".", "\\.")}:\\d+ -> ${addrB}:8080 open via peer router`));
    await o.b.router!.waitFor(new RegExp(`relay ${addrA.replaceAll(".", "\\.")}:\\d+ -> ${addrB}:8080 open via listener`));
  } finally {
    await server?.stop();
    await o.stop();
  }
});

Deno.test("uvpn: socat echo with half-close carries 2 MiB both ways intact", async () => {
  using dir = tempDir();
  const o = new Overlay(dir.path);
  await o.start();
  let server: Proc | undefined;
  try {
    const addrB = await o.register(o.b);
    const addrA = await o.register(o.a);
    server = new Proc("socat", [`TCP-LISTEN:7000,bind=${addrB},reuseaddr`, "EXEC:cat"], { env: o.env(o.b, addrB) });
    await o.b.router!.waitFor(new RegExp(`listener ${addrB.replaceAll(".", "\\.")}:7000 is at`));
    const data = crypto.getRandomValues(new Uint8Array(65536));
    const big = new Uint8Array(2 * 1024 * 1024);
    for (let i = 0; i < 32; i++) big.set(data.map((x) => x ^ i), i * 65536);
    const client = new Deno.Command("socat", {
      args: ["-t", "20", "-", `TCP:${addrB}:7000`],
      env: o.env(o.a, addrA),
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const w = client.stdin.getWriter();
    await w.write(big);
    await w.close(); // EOF: socat shuts down its write side; cat then ends and the echo completes
    const out = await client.output();
    assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
    assert.equal(out.stdout.length, big.length, "echoed byte count");
    assert.equal(createHash("sha256").update(out.stdout).digest("hex"), createHash("sha256").update(big).digest("hex"));
    assert.equal((await server.result(10_000)).code, 0, "socat server saw a clean end");
  } finally {
    await server?.stop();
    await o.stop();
  }
});

Deno.test("uvpn: two virtual servers share port 8080 on one machine", async () => {
  using dir = tempDir();
  const o = new Overlay(dir.path);
  await o.start();
  const servers: Proc[] = [];
  try {
    const addrA = await o.register(o.a);
    const addrs = [await o.register(o.b), await o.register(o.b)];
    assert.notEqual(addrs[0], addrs[1]);
    for (const [i, addr] of addrs.entries()) {
      const www = join(dir.path, `www${i}`);
      Deno.mkdirSync(www);
      Deno.writeTextFileSync(join(www, "who"), `server ${i} at ${addr}\n`);
      servers.push(await httpServer(o, o.b, addr, 8080, www));
    }
    for (const [i, addr] of addrs.entries()) {
      const r = await curl(o, o.a, addrA, `http://${addr}:8080/who`);
      assert.equal(r.code, 0, r.stderr);
      assert.ok(r.stdout.startsWith(`server ${i} at ${addr}\n`), r.stdout);
    }
  } finally {
    for (const s of servers) await s.stop();
    await o.stop();
  }
});

Deno.test("uvpn: a client without the network key is refused and learns nothing", async () => {
  using dir = tempDir();
  const o = new Overlay(dir.path);
  await o.start();
  try {
    const wrongKey = join(dir.path, "wrong");
    Deno.writeTextFileSync(wrongKey, "ab".repeat(32) + "\n", { mode: 0o600 });
    const r = await cli("uvpn_register", ["-s", "-r"], { env: { ...o.homeEnv(o.a), UVPN_KEY_FILE: wrongKey } });
    assert.equal(r.code, 6);
    assert.equal(r.stdout, "");
    assert.match(r.stderr, /refused the request \(wrong network key\?\)/);
    await o.a.router!.waitFor(/refused 127\.0\.0\.1:\d+: Bad MAC: wrong network key/);
    // A preloaded program with the wrong key cannot connect either.
    const addrB = await o.register(o.b);
    const addrA = await o.register(o.a);
    const c = await run("curl", ["-sS", "--max-time", "10", `http://${addrB}:80/`], {
      env: { ...o.env(o.a, addrA), UVPN_KEY_FILE: wrongKey },
    });
    assert.equal(c.code, 7, c.stderr);
    assert.match(c.stderr, /uvpn: /);
    // Garbage on the router port is logged and the router keeps serving.
    const conn = await Deno.connect({ hostname: o.a.host, port: o.a.port });
    await conn.write(new TextEncoder().encode("GET / HTTP/1.0\r\n\r\n".padEnd(80, "x")));
    assert.equal(await conn.read(new Uint8Array(64)), null, "router closes on garbage without a reply");
    conn.close();
    await o.a.router!.waitFor(/refused 127\.0\.0\.1:\d+: Bad magic/);
    assert.match(await o.register(o.a), /^100\.64\./);
  } finally {
    await o.stop();
  }
});

Deno.test("uvpn: connects that cannot be tunneled fail closed, with no connect() to the virtual address", async () => {
  using dir = tempDir();
  const o = new Overlay(dir.path);
  await o.start();
  try {
    const addrA = await o.register(o.a);
    const addrB = await o.register(o.b);
    const cases: [string, RegExp][] = [
      ["100.66.0.5:80", /ENETUNREACH|unreachable/i], // no route to that subnet
      [`${addrB}:81`, /ECONNREFUSED|refused/i], // leased, nobody listens
      ["100.65.200.200:80", /EHOSTUNREACH|unreachable/i], // not leased
    ];
    for (const [target, errRe] of cases) {
      const r = await run("strace", ["-f", "-e", "trace=connect", "-o", join(dir.path, "trace"), "curl", "-sS", "--max-time", "10", `http://${target}/`], {
        env: o.env(o.a, addrA),
      });
      assert.equal(r.code, 7, `curl ${target}: ${r.stderr}`);
      assert.match(r.stderr, new RegExp(`uvpn: .*${target.split(":")[0].replaceAll(".", "\\.")}`), "UVPN_DEBUG line");
      assert.match(r.stderr, errRe);
      const trace = Deno.readTextFileSync(join(dir.path, "trace"));
      assert.match(trace, new RegExp(`connect\\(.*htons\\(${o.a.port}\\).*127\\.0\\.0\\.2`), "went to the home router");
      assert.doesNotMatch(trace, new RegExp(`inet_addr\\("${target.split(":")[0].replaceAll(".", "\\.")}"\\)`), "no connect() to the virtual address");
    }
    // With the home router down, a virtual connect fails and still never reaches the network.
    await o.a.router!.stop();
    const r = await run("strace", ["-f", "-e", "trace=connect", "-o", join(dir.path, "trace2"), "curl", "-sS", "--max-time", "10", `http://${addrB}:80/`], {
      env: o.env(o.a, addrA),
    });
    assert.equal(r.code, 7, r.stderr);
    assert.doesNotMatch(Deno.readTextFileSync(join(dir.path, "trace2")), new RegExp(`inet_addr\\("${addrB.replaceAll(".", "\\.")}"\\)`));
  } finally {
    await o.stop();
  }
});

Deno.test("uvpn: routers restarted after SIGKILL keep leases and listeners", async () => {
  using dir = tempDir();
  const o = new Overlay(dir.path);
  const www = join(dir.path, "www");
  Deno.mkdirSync(www);
  Deno.writeTextFileSync(join(www, "f"), "still here\n");
  await o.start();
  let server: Proc | undefined;
  try {
    const leased = [await o.register(o.a), await o.register(o.a)];
    const addrB = await o.register(o.b);
    server = await httpServer(o, o.b, addrB, 8081, www);
    const list = async () => (await cli("uvpn_register", ["--list"], { env: o.homeEnv(o.a) })).stdout;
    const before = await list();
    for (const s of [o.a, o.b]) {
      await s.router!.stop("SIGKILL");
      await o.startRouter(s);
    }
    // Leases come back from the journal; the state column says who holds them again.
    const cols = (t: string) => t.split("\n").map((l) => l.split("\t").slice(0, 3).join("\t"));
    assert.deepEqual(cols(await list()), cols(before));
    await o.a.router!.waitFor(/2 lease\(s\) restored/);
    // Listeners belong to live processes: the server's engine registers it again on its new link.
    await o.b.router!.waitFor(new RegExp(`listener ${addrB.replaceAll(".", "\\.")}:8081 is at`));
    const fresh = await o.register(o.a);
    assert.ok(!leased.includes(fresh), `${fresh} is new`);
    const r = await curl(o, o.a, leased[0], `http://${addrB}:8081/f`);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(r.stdout.startsWith("still here\n"));
    const rel = await cli("uvpn_register", ["--release", leased[1]], { env: o.homeEnv(o.a) });
    assert.equal(rel.code, 0, rel.stderr);
    assert.ok(!(await list()).includes(`${leased[1]}\t`));
  } finally {
    await server?.stop();
    await o.stop();
  }
});
