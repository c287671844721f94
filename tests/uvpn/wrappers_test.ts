/**
 * Issue 14, second part, with real programs: static programs started by wrappers (timeout,
 * sh -c, env, nohup) join the overlay in the default mode (libuvpn.so execs them through the
 * launcher uvpn_supervise); daemons (busybox httpd, a python3 double-forking daemon that closes
 * every descriptor) outlive `uvpn_register -r -- CMD` and stay reachable in both modes; several
 * virtual hosts bind the wildcard address at one port of one machine with UVPN_BIND_ANY=virtual
 * (two real OpenSSH sshd on port 22; two static Go servers); and the supervisor's notification
 * loop never waits for the home router.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { IS_ROOT, Proc, ROOT, run, sleep, tempDir, UVPN_SUPERVISE } from "../helpers.ts";
import { Sshd } from "../xufs/sshd.ts";
import { BUSYBOX, goBinaries, goServer, inOverlay, leased, withGoServer, withOverlay } from "./static_fixtures.ts";

const esc = (s: string) => s.replaceAll(".", "\\.");
const SUPERVISE = UVPN_SUPERVISE;
const DAEMON = join(ROOT, "tests/fixtures/daemon.py");

/** Whether process pid is gone (or a zombie nobody reaped yet). */
function gone(pid: number): boolean {
  try {
    return Deno.readTextFileSync(`/proc/${pid}/stat`).replace(/^.*\) /s, "").startsWith("Z");
  } catch {
    return true;
  }
}

/** The live children of pid (from /proc). */
function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const e of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    try {
      const fields = Deno.readTextFileSync(`/proc/${e.name}/stat`).replace(/^.*\) /s, "").split(" ");
      if (Number(fields[1]) === pid && fields[0] !== "Z") out.push(Number(e.name));
    } catch { /* exited meanwhile */ }
  }
  return out;
}

/** Waits (bounded) until pid is gone. */
async function waitGone(pid: number, timeoutMs = 10_000): Promise<void> {
  for (const end = Date.now() + timeoutMs; Date.now() < end; await sleep(50)) if (gone(pid)) return;
  throw new Error(`pid ${pid} still runs after ${timeoutMs} ms`);
}

/** Kills pid by pid (ignoring one already gone). */
function kill(pid: number, sig: Deno.Signal = "SIGTERM"): void {
  try {
    Deno.kill(pid, sig);
  } catch { /* gone */ }
}

/** The pid of the supervisor left behind, from uvpn_register's notice. */
function supervisorPid(stderr: string): number {
  const m = stderr.match(/stay in the overlay under the supervisor \(pid (\d+)\), which exits with the last of them/);
  assert.ok(m, stderr);
  return Number(m[1]);
}

Deno.test("wrappers: static programs started by timeout, sh -c, env and nohup join the overlay in auto mode", async () => {
  await withGoServer(async (o, s, go) => {
    const url = `http://${s.addr}:8080`;
    const cases: [string, string[]][] = [
      ["timeout", ["timeout", "30", go.client, `${url}/timeout`]],
      ["sh -c", ["sh", "-c", `${go.client} ${url}/sh; echo "exit=$?"`]],
      ["env", ["env", "X=1", BUSYBOX, "wget", "-q", "-O", "-", `${url}/env`]],
      ["nohup", ["nohup", go.client, `${url}/nohup`]],
    ];
    for (const [what, argv] of cases) {
      const c = inOverlay(o, o.a, argv);
      const r = await c.result(30_000);
      assert.equal(r.code, 0, `${what}: ${r.stderr}`);
      const addrA = await leased(c);
      // The wrapper is dynamic (libuvpn.so); the static program it started got the supervisor.
      assert.match(r.stderr, /uvpn: supervising pid \d+ \(/, what);
      assert.match(r.stdout, new RegExp(`^hello from ${esc(s.addr)}:8080 to ${esc(addrA)}:\\d+\\n`), what);
    }
    // The wrapper still sees its own child: timeout's SIGTERM reaches the static program, and
    // timeout reports the timeout.
    const t = await inOverlay(o, o.a, ["timeout", "1", BUSYBOX, "sleep", "30"]).result(30_000);
    assert.equal(t.code, 124, t.stderr);
    // A static program exits as it did: its status, or its signal.
    const st = await inOverlay(o, o.a, ["sh", "-c", `${BUSYBOX} sh -c 'exit 9'; echo "status=$?"; ${BUSYBOX} sh -c 'kill -USR1 $$'; echo "status=$?"`])
      .result(30_000);
    assert.match(st.stdout, /^status=9\nstatus=138\n$/, st.stderr);
    // --mode preload is LD_PRELOAD alone (UVPN_STATIC=off): the same wrapped client stays out.
    const off = await inOverlay(o, o.a, ["timeout", "30", go.client, `${url}/off`], "preload").result(30_000);
    assert.notEqual(off.code, 0, off.stdout);
    assert.match(off.stderr, /network is unreachable/);
    assert.doesNotMatch(s.p.stdout, /\/off/);
  });
});

Deno.test("daemons: a static busybox httpd outlives uvpn_register under the supervisor, reachable until it ends", async () => {
  await withOverlay(async (o) => {
    using dir = tempDir();
    const www = join(dir.path, "www");
    Deno.mkdirSync(www);
    Deno.writeTextFileSync(join(www, "index.html"), "daemon page\n");
    // busybox httpd daemonizes (fork, setsid, stdio on /dev/null); its parent exits at once.
    const reg = inOverlay(o, o.b, [BUSYBOX, "httpd", "-p", "8080", "-h", www]);
    const r = await reg.result(30_000);
    assert.equal(r.code, 0, r.stderr);
    const addrB = await leased(reg);
    const sup = supervisorPid(r.stderr);
    const daemons = childrenOf(sup); // the daemon was reparented to the supervisor (a subreaper)
    try {
      assert.equal(daemons.length, 1, `children of the supervisor ${sup}: ${daemons}`);
      await o.b.router!.waitFor(new RegExp(`listener ${esc(addrB)}:8080 is at`));
      const addrA = await o.register(o.a);
      const c = await run("curl", ["-sS", "--max-time", "10", `http://${addrB}:8080/`], { env: o.env(o.a, addrA) });
      assert.equal(c.code, 0, c.stderr);
      assert.equal(c.stdout, "daemon page\n");
    } finally {
      for (const d of daemons) kill(d);
    }
    // With the last supervised process gone, the supervisor unregisters and exits.
    await waitGone(sup);
    await o.b.router!.waitFor(new RegExp(`listener ${esc(addrB)}:8080 (unregistered|dropped)`));
  });
});

Deno.test("daemons: a python3 daemon (double fork, setsid, every descriptor closed) stays reachable under libuvpn.so and under the supervisor", async () => {
  await withOverlay(async (o) => {
    using dir = tempDir();
    const addrA = await o.register(o.a);
    for (const mode of ["preload", "seccomp"]) {
      const pidfile = join(dir.path, `daemon-${mode}.pid`);
      const port = 7100 + (mode === "preload" ? 0 : 1);
      const reg = inOverlay(o, o.b, ["python3", DAEMON, String(port), pidfile], mode);
      const r = await reg.result(30_000);
      assert.equal(r.code, 0, `${mode}: ${r.stderr}`);
      const addrB = await leased(reg);
      const daemon = Number(Deno.readTextFileSync(pidfile).trim());
      const sup = mode === "seccomp" ? supervisorPid(r.stderr) : 0;
      try {
        // uvpn_register and the daemon's parents are gone; the daemon closed every descriptor it
        // inherited (in preload mode, the link that keeps its listener registered, too).
        assert.ok(!gone(daemon), `${mode}: the daemon ${daemon} is gone`);
        const c = await run("python3", [
          "-c",
          "import socket, sys; s = socket.create_connection((sys.argv[1], int(sys.argv[2])), 10); print(s.recv(200).decode().strip())",
          addrB,
          String(port),
        ], { env: o.env(o.a, addrA) });
        assert.equal(c.code, 0, `${mode}: ${c.stderr}`);
        assert.match(c.stdout, new RegExp(`^daemon ${daemon} local=${esc(addrB)}:${port} peer=${esc(addrA)}:\\d+\\n$`), mode);
      } finally {
        kill(daemon);
      }
      await waitGone(daemon);
      if (sup) await waitGone(sup);
    }
  });
});

Deno.test("bind any: two static Go servers bind 0.0.0.0:9090 on one machine with UVPN_BIND_ANY=virtual; by default the second collides", async () => {
  const go = await goBinaries();
  await withOverlay(async (o) => {
    const started: Proc[] = [];
    try {
      const virtual = { UVPN_BIND_ANY: "virtual" };
      const servers = [];
      for (let i = 0; i < 2; i++) {
        const s = await goServer(o, o.b, go.server, 9090, undefined, virtual, "0.0.0.0:9090");
        started.push(s.p);
        servers.push(s);
      }
      for (const s of servers) {
        const c = inOverlay(o, o.a, [BUSYBOX, "wget", "-q", "-O", "-", `http://${s.addr}:9090/any`]);
        const r = await c.result(30_000);
        assert.equal(r.code, 0, r.stderr);
        // Each answers as itself; its accepted connection's local address is its virtual one.
        assert.match(r.stdout, new RegExp(`^hello from \\S+:9090 to ${esc(await leased(c))}:\\d+\\n$`));
        await s.p.waitFor(/request from 100\.64\.\d+\.\d+:\d+ \/any/);
      }
      // The default (UVPN_BIND_ANY unset: a wildcard bind is also a real bind).
      const first = await goServer(o, o.b, go.server, 9091, undefined, {}, "0.0.0.0:9091");
      started.push(first.p);
      const second = inOverlay(o, o.b, [go.server, "0.0.0.0:9091"]);
      started.push(second);
      const r2 = await second.result(30_000);
      assert.notEqual(r2.code, 0);
      assert.match(r2.stderr, /address already in use/);
    } finally {
      for (const p of started) await p.stop();
    }
  });
});

Deno.test({
  name: "bind any: two real sshd on port 22 of one machine, each at its own virtual address (UVPN_BIND_ANY=virtual); by default they collide",
  ignore: !IS_ROOT,
  fn: () =>
    withOverlay(async (o) => {
      using dir = tempDir();
      const addrA = await o.register(o.a);
      const sshds: Sshd[] = [];
      const sshd = async (i: number, addr: string, extra: Record<string, string>) => {
        const d = join(dir.path, `ssh${i}`);
        Deno.mkdirSync(d);
        // sshd's default: both 0.0.0.0 and [::] (IPV6_V6ONLY), port 22.
        const s = new Sshd(d, "ListenAddress ::\nAddressFamily any", { listen: "0.0.0.0", port: 22, env: { ...o.env(o.b, addr), ...extra } });
        sshds.push(s);
        await s.start();
        return s;
      };
      try {
        // Default: the first binds the real port 22, the second cannot.
        const d1 = await sshd(0, await o.register(o.b), {});
        await d1.proc!.waitFor(/Server listening on 0\.0\.0\.0 port 22/);
        const d2 = await sshd(1, await o.register(o.b), {});
        const st = await d2.proc!.result(15_000);
        assert.notEqual(st.code, 0);
        assert.match(d2.proc!.stderr, /Bind to port 22 on 0\.0\.0\.0 failed: Address already in use/);
        await d1.stop();
        // UVPN_BIND_ANY=virtual: both, each reachable at its own address, port 22.
        const addrs = [await o.register(o.b), await o.register(o.b)];
        const pair = [];
        for (let i = 0; i < 2; i++) {
          const s = await sshd(2 + i, addrs[i], { UVPN_BIND_ANY: "virtual" });
          await o.b.router!.waitFor(new RegExp(`listener ${esc(addrs[i])}:22 is at`));
          pair.push(s);
        }
        for (let i = 0; i < 2; i++) {
          const r = await run("ssh", ["-F", pair[i].clientConfig, "-o", `HostName=${addrs[i]}`, "hostb", "echo $SSH_CONNECTION"], {
            env: o.env(o.a, addrA),
          });
          assert.equal(r.code, 0, r.stderr + pair[i].proc!.stderr);
          assert.match(r.stdout, new RegExp(`^${esc(addrA)} \\d+ ${esc(addrs[i])} 22\\n$`));
        }
      } finally {
        for (const s of sshds) await s.stop();
      }
    }),
});

Deno.test("supervisor: a UDP registration waiting for a silent home router stalls no other call of the tree", async () => {
  using dir = tempDir();
  // A home router that accepts and never answers: the engine's link waits up to 5 s for it.
  const silent = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const held: Deno.Conn[] = [];
  const accepting = (async () => {
    try {
      for await (const c of silent) held.push(c);
    } catch { /* closed */ }
  })();
  const keyFile = join(dir.path, "key");
  Deno.writeTextFileSync(keyFile, "ab".repeat(32) + "\n", { mode: 0o600 });
  const web = new Proc("python3", ["-m", "http.server", "--bind", "127.0.0.1", "0"], { cwd: dir.path });
  try {
    const port = Number((await web.waitFor(/port (\d+)/))[1]);
    // busybox tftp's first datagram to a virtual address registers its socket with the home
    // router (waiting on it) while busybox wget, in the same supervised tree, connects to a real
    // address: wget must not wait for it.
    const script = `${BUSYBOX} tftp -g -l /dev/null -r x 100.64.0.1 & ${BUSYBOX} sleep 0.3; read a _ </proc/uptime; ` +
      `${BUSYBOX} wget -q -O /dev/null http://127.0.0.1:${port}/; w=$?; read b _ </proc/uptime; echo "wget=$w from=$a to=$b"; kill $!`;
    const r = await run(SUPERVISE, ["--", BUSYBOX, "sh", "-c", script], {
      env: {
        UVPN_SRC_ADDR: "100.64.0.9",
        UVPN_HOME_PROXY: "127.0.0.1",
        UVPN_HOME_PROXY_PORT: String(silent.addr.port),
        UVPN_KEY_FILE: keyFile,
        UVPN_DEBUG: "1",
      },
      timeoutMs: 30_000,
    });
    const m = r.stdout.match(/^wget=0 from=([\d.]+) to=([\d.]+)$/m);
    assert.ok(m, r.stdout + r.stderr);
    const ms = (Number(m[2]) - Number(m[1])) * 1000;
    assert.ok(ms < 2000, `wget waited ${ms} ms for a UDP registration elsewhere in the tree`);
    assert.match(r.stderr, /uvpn: supervising pid/);
  } finally {
    await web.stop();
    silent.close();
    await accepting;
    for (const c of held) c.close();
  }
});
