/**
 * UVPN for statically linked programs: `uvpn_register -r -- CMD` under the seccomp supervisor
 * (libmyrt.so, run by the launcher uvpn_supervise). Real static programs built or installed by the test: a Go HTTP
 * server and client (CGO_ENABLED=0, built once per run from tests/fixtures/gohttp) and Debian's
 * static busybox (nc, wget, sh). Checks that they talk across two subnets with virtual
 * identities, that Go's own DNS resolver finds overlay names through the supervisor's DNS stub, that the same binaries under `--mode preload` do not reach the overlay (they are
 * static), that a forked and exec'd child stays in the overlay, and exit statuses.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { cli, DENO, Proc, ROOT, run, SANITIZE_RT, tempDir } from "../helpers.ts";
import { BUSYBOX, goBinaries, goServer, inOverlay, leased, withGoServer, withOverlay } from "./static_fixtures.ts";

const esc = (s: string) => s.replaceAll(".", "\\.");

Deno.test("static: Go HTTP server and client talk across two subnets under the supervisor", async () => {
  await withGoServer(async (o, s, go) => {
    assert.match(s.addr, /^100\.65\./);
    await s.p.waitFor(/uvpn: supervising pid \d+/); // auto mode chose the supervisor
    const client = inOverlay(o, o.a, [go.client, `http://${s.addr}:8080/x`]);
    const r = await client.result(30_000);
    assert.equal(r.code, 0, r.stderr);
    const addrA = await leased(client);
    assert.match(addrA, /^100\.64\./);
    // The server's accept gave the client's virtual address; the client's getsockname and
    // getpeername are virtual too.
    assert.match(r.stdout, new RegExp(`^hello from ${esc(s.addr)}:8080 to ${esc(addrA)}:\\d+\\n`));
    assert.match(r.stdout, new RegExp(`local=${esc(addrA)}:\\d+ remote=${esc(s.addr)}:8080\\n`));
    await s.p.waitFor(new RegExp(`request from ${esc(addrA)}:\\d+ /x`));
    // The path went client -> home router A -> peer router B -> server.
    await o.a.router!.waitFor(new RegExp(`relay ${esc(addrA)}:\\d+ -> ${esc(s.addr)}:8080 open via peer router`));
    await o.b.router!.waitFor(new RegExp(`relay ${esc(addrA)}:\\d+ -> ${esc(s.addr)}:8080 open via listener`));
  });
});

Deno.test("static: inside a subnet the router brokers a direct connection; supervised and preloaded clients reach the supervised Go server without a relay", async () => {
  await withGoServer(async (o, s, go) => {
    const paths = async () => {
      const r = await cli("uvpn_proxy", ["--status", "--routes", o.routes, "--subnet", o.b.prefix], { env: o.baseEnv });
      const m = /^paths direct_offered=(\d+) direct_failed=(\d+) direct=(\d+) direct_bytes=\d+ relayed=(\d+) relayed_bytes=(\d+)$/m.exec(r.stdout);
      assert.ok(m, r.stdout + r.stderr);
      return m.slice(1).map(Number);
    };
    const before = await paths();
    const client = inOverlay(o, o.b, [go.client, `http://${s.addr}:8080/direct`]);
    const r = await client.result(30_000);
    assert.equal(r.code, 0, r.stderr);
    const addrB = await leased(client);
    assert.match(r.stdout, new RegExp(`^hello from ${esc(s.addr)}:8080 to ${esc(addrB)}:\\d+\\n`));
    assert.match(r.stdout, new RegExp(`local=${esc(addrB)}:\\d+ remote=${esc(s.addr)}:8080\\n`));
    assert.match(r.stderr, /connected directly to the listener/);
    await s.p.waitFor(new RegExp(`direct connection from ${esc(addrB)}:\\d+`));
    const mine = await o.register(o.b);
    const curl = await run("curl", ["-sS", `http://${s.addr}:8080/curl`], { env: o.env(o.b, mine) });
    assert.match(curl.stdout, new RegExp(`^hello from ${esc(s.addr)}:8080 to ${esc(mine)}:\\d+\\n`), curl.stderr);
    assert.match(curl.stderr, /connected directly to the listener/);
    // Brokered twice, relayed never; both direct connections counted when they ended (the
    // supervised client's when its supervisor noticed, without bytes; curl's at close).
    let d: number[] = [];
    // (Up to 12 s: the supervised client's end is counted by its supervisor's sweep, which a
    // loaded machine delays.)
    for (let i = 0; i < 120 && d[2] !== 2; i++) {
      if (i) await new Promise((res) => setTimeout(res, 100));
      const after = await paths();
      d = after.map((v, j) => v - before[j]);
    }
    assert.deepEqual(d, [2, 0, 2, 0, 0]);
  });
});

Deno.test("static: Go's own resolver finds NAME, NAME.uvpn and the reverse; real names still reach the nameserver", async () => {
  const go = await goBinaries();
  await withOverlay(async (o) => {
    using dir = tempDir();
    const s = await goServer(o, o.b, go.server, 8080, "webb");
    // A real nameserver for real names; the program gets a resolv.conf naming it, bind-mounted
    // over /etc/resolv.conf in a private mount namespace.
    const ns = new Proc("python3", [join(ROOT, "tests/fixtures/fake_dns.py"), "127.0.0.77", "53", "real.example=127.0.0.9"]);
    try {
      await ns.waitFor(/serving 127\.0\.0\.77:53/);
      const resolv = join(dir.path, "resolv.conf");
      Deno.writeTextFileSync(resolv, "nameserver 127.0.0.77\noptions timeout:2 attempts:1\n");
      const steps = [
        "host:webb",
        "host:WEBB.uvpn",
        `addr:${s.addr}`,
        "get:http://webb:8080/byname",
        "host:real.example",
        "peer:127.0.0.77:53",
        "bad:127.0.0.77:53",
        "host:absent.uvpn",
      ];
      const resolving = (argv: string[]) =>
        run("unshare", [
          "-m",
          "--",
          "sh",
          "-c",
          'mount --bind "$0" /etc/resolv.conf && exec "$@"',
          resolv,
          DENO,
          "run",
          "-A",
          "--no-prompt",
          join(ROOT, "cli/uvpn_register.ts"),
          "-r",
          "--mode",
          "seccomp",
          "--",
          ...argv,
        ], { env: { ...o.homeEnv(o.a), UVPN_DEBUG: "1" }, timeoutMs: 60_000 });
      const r = await resolving([go.resolve, ...steps]);
      const addrA = r.stderr.match(/Leased virtual address (\S+) from router/)?.[1];
      assert.match(addrA ?? "", /^100\.64\./, r.stderr);
      assert.equal(r.code, 1, r.stdout + r.stderr); // absent.uvpn is not found
      assert.match(
        r.stdout,
        new RegExp(
          `^host webb: ${esc(s.addr)}\n` +
            `host WEBB\\.uvpn: ${esc(s.addr)}\n` +
            `addr ${esc(s.addr)}: webb\\.uvpn\\.\n` +
            `get http://webb:8080/byname: hello from ${esc(s.addr)}:8080 to ${esc(addrA!)}:\\d+\n` +
            `host real\\.example: 127\\.0\\.0\\.9\n` +
            // getpeername reports the nameserver the program asked for, not the stub.
            `peer 127\\.0\\.0\\.77:53: 127\\.0\\.0\\.77:53\n` +
            // A malformed query gets FORMERR with its transaction id, from the nameserver.
            `bad 127\\.0\\.0\\.77:53: from=127\\.0\\.0\\.77:53 id=beef rcode=1\n` +
            `host absent\\.uvpn: error lookup absent\\.uvpn.*: no such host\n$`,
        ),
        r.stderr,
      );
      assert.match(r.stderr, /uvpn: dns: malformed query \(16 bytes\): label runs past the end/);
      await s.p.waitFor(new RegExp(`request from ${esc(addrA!)}:\\d+ /byname`));
      // Static glibc (busybox wget) connects, sends with sendmmsg and checks that recvfrom
      // reports the nameserver as the sender.
      const bb = await resolving([BUSYBOX, "wget", "-q", "-O", "-", "http://webb:8080/busybox"]);
      assert.equal(bb.code, 0, bb.stderr);
      assert.match(bb.stdout, new RegExp(`^hello from ${esc(s.addr)}:8080 to 100\\.64\\.\\d+\\.\\d+:\\d+\n$`));
      // The real name went to the nameserver (A and AAAA); no overlay name or reverse ever did.
      assert.match(ns.stdout, /query real\.example 1\n/);
      const asked = [...ns.stdout.matchAll(/^query (\S+) \d+$/gm)].map((m) => m[1].toLowerCase());
      assert.deepEqual(asked.filter((n) => n !== "real.example"), [], ns.stdout);
    } finally {
      await ns.stop();
      await s.p.stop();
    }
  });
});

Deno.test("static: two supervised Go servers share port 8080; busybox wget reaches each", async () => {
  const go = await goBinaries();
  await withOverlay(async (o) => {
    const servers: Proc[] = [];
    try {
      const addrs: string[] = [];
      for (let i = 0; i < 2; i++) {
        const s = await goServer(o, o.b, go.server, 8080);
        servers.push(s.p);
        addrs.push(s.addr);
      }
      assert.notEqual(addrs[0], addrs[1]);
      for (const addr of addrs) {
        const c = inOverlay(o, o.a, [BUSYBOX, "wget", "-q", "-O", "-", `http://${addr}:8080/w`]);
        const r = await c.result(30_000);
        assert.equal(r.code, 0, r.stderr);
        const addrA = await leased(c);
        assert.match(r.stdout, new RegExp(`^hello from ${esc(addr)}:8080 to ${esc(addrA)}:\\d+\\n$`));
      }
    } finally {
      for (const s of servers) await s.stop();
    }
  });
});

Deno.test("static: busybox nc listens on the wildcard and talks to busybox nc across subnets", async () => {
  await withOverlay(async (o) => {
    let server: Proc | undefined;
    try {
      server = inOverlay(o, o.b, [BUSYBOX, "nc", "-l", "-p", "7000"], undefined, "from the server\n");
      const addrB = await leased(server);
      await o.b.router!.waitFor(new RegExp(`listener ${esc(addrB)}:7000 is at`));
      const client = inOverlay(o, o.a, [BUSYBOX, "nc", "-w", "10", addrB, "7000"], undefined, "from the client\n");
      await client.waitFor(/from the server/);
      await server.waitFor(/from the client/);
      const addrA = await leased(client);
      await o.a.router!.waitFor(new RegExp(`relay ${esc(addrA)}:\\d+ -> ${esc(addrB)}:7000 open via peer router`));
      // nc closes its listening socket once it has a connection: the supervisor, which does not
      // see close(), notices from the kernel's socket list and unregisters the listener.
      await server.waitFor(new RegExp(`uvpn: unlisten ${esc(addrB)}:7000: done`), 10_000);
      await client.stop();
    } finally {
      await server?.stop();
    }
  });
});

Deno.test("static: a forked and exec'd child (curl under busybox sh) stays in the overlay", async () => {
  await withGoServer(async (o, s) => {
    // busybox sh is static (supervised); it forks and execs curl, which is not preloaded here:
    // only the inherited seccomp filter can put it into the overlay.
    const c = inOverlay(o, o.a, [
      BUSYBOX,
      "sh",
      "-c",
      `curl -sS --max-time 15 -w '%{local_ip} %{remote_ip}:%{remote_port}\\n' http://${s.addr}:8080/child; echo "exit=$?"`,
    ]);
    const r = await c.result(30_000);
    assert.equal(r.code, 0, r.stderr);
    assert.doesNotMatch(r.stderr, /LD_PRELOAD|libuvpn/);
    const addrA = await leased(c);
    assert.match(
      r.stdout,
      new RegExp(
        `^hello from ${esc(s.addr)}:8080 to ${esc(addrA)}:\\d+\\n${esc(addrA)} ${esc(s.addr)}:8080\\nexit=0\\n$`,
      ),
      r.stdout + r.stderr,
    );
    await s.p.waitFor(new RegExp(`request from ${esc(addrA)}:\\d+ /child`));
  });
});

/** A python3 client: non-blocking connect, names, one HTTP GET, then a UDP sendto. */
const NB_CLIENT = `
import errno, fcntl, os, select, socket, sys
host, port = sys.argv[1], int(sys.argv[2])
s = socket.socket()
s.setblocking(False)
r = s.connect_ex((host, port))
print("connect", errno.errorcode.get(r, r), "nonblock", bool(fcntl.fcntl(s.fileno(), fcntl.F_GETFL) & os.O_NONBLOCK))
select.select([], [s], [], 10)
print("so_error", s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR), "peer", "%s:%d" % s.getpeername(), "local", s.getsockname()[0])
s.setblocking(True)
s.sendall(b"GET /nb HTTP/1.0\\r\\n\\r\\n")
data = b""
while True:
    d = s.recv(4096)
    if not d:
        break
    data += d
print(data.split(b"\\r\\n\\r\\n", 1)[1].decode().strip())
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
try:
    u.sendto(b"x", (host, 9))
    print("udp sent")
except OSError as e:
    print("udp", errno.errorcode[e.errno])
`;

Deno.test("static: --mode seccomp keeps non-blocking connects intact and carries UDP", async () => {
  await withGoServer(async (o, s) => {
    // python3 is dynamic: --mode seccomp forces the supervisor on it.
    const c = inOverlay(o, o.a, ["python3", "-c", NB_CLIENT, s.addr, "8080"], "seccomp");
    const r = await c.result(30_000);
    assert.equal(r.code, 0, r.stderr);
    const addrA = await leased(c);
    assert.match(r.stderr, /uvpn: supervising pid/);
    // connect() returns EINPROGRESS at once, as the kernel's; the engine finishes it outside the
    // program; O_NONBLOCK is untouched.
    assert.equal(
      r.stdout,
      `connect EINPROGRESS nonblock True\nso_error 0 peer ${s.addr}:8080 local ${addrA}\n` +
        `hello from ${s.addr}:8080 to ${addrA}:${r.stdout.match(/to [\d.]+:(\d+)/)?.[1]}\nudp sent\n`,
    );
    // The datagram went through the overlay; nobody listens on port 9, so B's router drops it.
    await o.b.router!.waitFor(new RegExp(`dropped datagram for ${esc(s.addr)}:9: no UDP endpoint registered there`));
  });
});

Deno.test("static: a supervised server that closes its listener and listens again on the port (iperf3 between tests) keeps serving", async () => {
  await withOverlay(async (o) => {
    // iperf3 -s closes its listening socket after each test and opens a new one on the same
    // port. The supervisor does not see close(): the second LISTEN found the first socket's
    // registration still held (EADDRINUSE), the wildcard listener stayed unregistered, and the
    // router's relayed connections arrived with their tickets in iperf3's stream: the second
    // client hung until killed.
    const server = inOverlay(o, o.b, ["iperf3", "-s", "-p", "7400", "--forceflush"], "seccomp");
    try {
      const addrB = await leased(server);
      await o.b.router!.waitFor(new RegExp(`listener ${esc(addrB)}:7400 is at`));
      for (const [round, streams] of [[1, "1"], [2, "2"]] as const) {
        const c = inOverlay(o, o.a, ["iperf3", "-c", addrB, "-p", "7400", "-n", "256K", "-P", streams, "-J"], "seccomp");
        const r = await c.result(20_000);
        assert.equal(r.code, 0, `round ${round}: ${r.stdout.slice(-400)}${r.stderr.slice(-800)}`);
        assert.equal(JSON.parse(r.stdout).end.sum_sent.bytes >= 256 * 1024, true, r.stdout.slice(-400));
        await server.waitFor(new RegExp(`(Server listening on 7400[^]*){${round + 1}}`), 10_000);
      }
      assert.doesNotMatch(server.stdout + server.stderr, /EADDRINUSE|listening natively only/);
    } finally {
      await server.stop();
    }
  });
});

Deno.test("static: the same static binaries under --mode preload do not reach the overlay", async () => {
  await withGoServer(async (o, s, go) => {
    const goc = await inOverlay(o, o.a, [go.client, `http://${s.addr}:8080/preloaded`], "preload").result(30_000);
    assert.notEqual(goc.code, 0, goc.stdout);
    // LD_PRELOAD does not apply: the kernel itself is asked for a route to the virtual address.
    assert.match(goc.stderr, /network is unreachable/);
    const bb = await inOverlay(o, o.a, [BUSYBOX, "wget", "-q", "-O", "-", `http://${s.addr}:8080/preloaded`], "preload")
      .result(30_000);
    assert.notEqual(bb.code, 0, bb.stdout);
    assert.doesNotMatch(o.a.router!.stdout + o.a.router!.stderr, /relay /);
    assert.doesNotMatch(s.p.stdout, /preloaded/);
    // Under the default mode the same client does get through (so the failures above are due
    // to the mode alone).
    const ok = await inOverlay(o, o.a, [go.client, `http://${s.addr}:8080/auto`]).result(30_000);
    assert.equal(ok.code, 0, ok.stderr);
  });
});

Deno.test("static: auto mode preloads dynamic programs; exit statuses and usage errors", async () => {
  await withOverlay(async (o) => {
    const env = { ...o.homeEnv(o.a), UVPN_DEBUG: "1" };
    const reg = (args: string[]) => cli("uvpn_register", args, { env });
    // A dynamic program gets libuvpn.so, not the supervisor.
    const dyn = await reg(["-r", "--", "sh", "-c", 'echo "preload=$LD_PRELOAD src=$UVPN_SRC_ADDR"']);
    assert.equal(dyn.code, 0, dyn.stderr);
    assert.match(dyn.stdout, /^preload=\S*libuvpn\.so(:\S+)? src=100\.64\.\d+\.\d+\n$/);
    assert.doesNotMatch(dyn.stderr, /supervising/);
    // A static one gets the supervisor and no LD_PRELOAD.
    const stat = await reg(["-r", "--", BUSYBOX, "sh", "-c", 'echo "preload=$LD_PRELOAD src=$UVPN_SRC_ADDR"']);
    assert.equal(stat.code, 0, stat.stderr);
    // (The sanitizer pass preloads the ASan runtime into our commands, and so into their tree.)
    assert.match(stat.stdout, new RegExp(`^preload=${SANITIZE_RT.replaceAll(".", "\\.")} src=100\\.64\\.\\d+\\.\\d+\n$`));
    assert.match(stat.stderr, /uvpn: supervising pid \d+/);
    // Linux 6.6+ wakes the supervisor on the stopped program's CPU and the program on the
    // supervisor's (SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP): asked for where the kernel has it.
    const [major, minor] = Deno.osRelease().split(".").map(Number);
    if (major > 6 || (major === 6 && minor >= 6)) {
      assert.match(stat.stderr, /uvpn: supervisor: synchronous wake-ups on the notification fd/);
    }
    // CMD's exit status, and 128 + signal when killed, in both modes.
    for (const mode of ["seccomp", "preload"]) {
      assert.equal((await reg(["-r", "-s", "--mode", mode, "--", BUSYBOX, "sh", "-c", "exit 7"])).code, 7, mode);
      assert.equal(
        (await reg(["-r", "-s", "--mode", mode, "--", BUSYBOX, "sh", "-c", "kill -TERM $$"])).code,
        143,
        mode,
      );
    }
    // Nested supervision: the kernel refuses a second listener in one process tree, and says so.
    const nested = await reg(["-r", "-s", "--mode", "seccomp", "--", Deno.execPath(), "run", "-A", "--no-prompt",
      join(ROOT, "cli/uvpn_register.ts"), "-r", "-s", "--mode", "seccomp", "--", BUSYBOX, "true"]);
    assert.equal(nested.code, 126, nested.stderr);
    assert.match(nested.stderr, /uvpn_register: Already under a seccomp supervisor .*: Device or resource busy/);
    const missing = await reg(["-r", "--", "/nonexistent/cmd"]);
    assert.equal(missing.code, 127);
    assert.match(missing.stderr, /uvpn_register: No executable file: \/nonexistent\/cmd/);
    const noR = await reg(["--", "true"]);
    assert.equal(noR.code, 2);
    assert.match(noR.stderr, /-- CMD needs -r and a command/);
    const badMode = await reg(["-r", "--mode", "ptrace", "--", "true"]);
    assert.equal(badMode.code, 2);
    assert.match(badMode.stderr, /--mode takes auto, preload or seccomp: ptrace/);
  });
});
