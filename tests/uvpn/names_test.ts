/**
 * Overlay host names and the rest of libuvpn.so's socket surface, with real programs: python3's
 * socket module through every libc resolver entry point, curl and ssh by overlay name across two
 * subnets, and tests/fixtures/uvpn_surface.py for the socket calls. Runs inside the loopback-only
 * namespace of scripts/test.sh.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { request } from "../../router/client.ts";
import { readKey } from "../../router/key.ts";
import { FrameType, Status } from "../../router/wire.ts";
import { cli, Overlay, Proc, ROOT, run, tempDir } from "../helpers.ts";
import { Sshd } from "../xufs/sshd.ts";

const SURFACE = join(ROOT, "tests/fixtures/uvpn_surface.py");

/** `uvpn_register -s -r --name NAME` in subnet `s`. */
async function registerNamed(o: Overlay, s: Overlay["a"], name: string): Promise<string> {
  const r = await cli("uvpn_register", ["-s", "-r", "--name", name], { env: o.homeEnv(s) });
  if (r.code !== 0) throw new Error(`uvpn_register --name ${name} failed: ${r.stderr}`);
  return r.stdout.trim();
}

interface Stoppable {
  stop(): Promise<unknown>;
}

/** Runs `body` with a started two-subnet overlay in a fresh directory; stops what it started. */
async function withOverlay(
  body: (o: Overlay, dir: string, later: <T extends Stoppable>(p: T) => T) => Promise<void>,
) {
  using dir = tempDir();
  const o = new Overlay(dir.path);
  const started: Stoppable[] = [];
  await o.start();
  try {
    await body(o, dir.path, (p) => (started.push(p), p));
  } finally {
    for (const p of started.reverse()) await p.stop();
    await o.stop();
  }
}

/** python3 under the overlay as `addr` of subnet `s`. */
function python(o: Overlay, s: Overlay["a"], addr: string, args: string[]) {
  return run("python3", args, { env: o.env(s, addr), timeoutMs: 30_000 });
}

Deno.test(
  "names: NAME and NAME.uvpn resolve across subnets in every resolver call, real names pass through",
  () =>
    withOverlay(async (o) => {
      const addrB = await registerNamed(o, o.b, "webb");
      const addrA = await registerNamed(o, o.a, "nodea");
      const plainB = await o.register(o.b);
      const r = await python(o, o.a, addrA, [
        SURFACE,
        "names",
        "webb",
        addrB,
        "nodea",
        addrA,
        plainB,
      ]);
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.match(r.stdout, /ok getnameinfo reverse/);
      assert.match(r.stdout, /ok localhost still resolves/);
      // From subnet B the name of subnet A resolves too (B asks A's router).
      const back = await python(o, o.b, addrB, [
        "-c",
        "import socket; print(socket.gethostbyname('nodea.uvpn'))",
      ]);
      assert.equal(back.stdout.trim(), addrA, back.stderr);

      // The list keeps its first columns, ADDR<TAB>HOLDER<TAB>NAME, then AGE_S<TAB>STATE.
      const list = await cli("uvpn_register", ["--list"], { env: o.homeEnv(o.b) });
      assert.equal(list.code, 0, list.stderr);
      const row = (addr: string, name: string) => new RegExp(String.raw`^${addr.replaceAll(".", "\\.")}\t127\.0\.0\.1\t${name}\t\d+\t(held|grace)$`, "m");
      assert.match(list.stdout, row(addrB, "webb"));
      assert.match(list.stdout, row(plainB, ""));
    }),
);

Deno.test(
  "names: unique per subnet; the same name in two subnets resolves to the asker's own subnet first",
  () =>
    withOverlay(async (o) => {
      const addrB = await registerNamed(o, o.b, "svc");
      const dup = await cli("uvpn_register", ["-r", "--name", "SVC"], { env: o.homeEnv(o.b) });
      assert.equal(dup.code, 5, dup.stderr);
      assert.match(
        dup.stderr,
        new RegExp(`Name already leased in the subnet of router ${o.b.host}:${o.b.port}: SVC`),
      );
      await o.b.router!.waitFor(
        new RegExp(`name already leased to ${addrB.replaceAll(".", "\\.")}: SVC`),
      );
      const onlyB = await o.register(o.a);
      const seen = await python(o, o.a, onlyB, [
        "-c",
        "import socket; print(socket.gethostbyname('svc'))",
      ]);
      assert.equal(seen.stdout.trim(), addrB, seen.stderr);
      // Subnet A may lease "svc" too: A's programs now get A's, B's keep B's.
      const addrA = await registerNamed(o, o.a, "svc");
      const code = "import socket; print(socket.gethostbyname('svc.uvpn'))";
      assert.equal((await python(o, o.a, onlyB, ["-c", code])).stdout.trim(), addrA);
      assert.equal((await python(o, o.b, addrB, ["-c", code])).stdout.trim(), addrB);
      // Released with its address, the name is free again.
      const rel = await cli("uvpn_register", ["--release", addrB], { env: o.homeEnv(o.b) });
      assert.equal(rel.code, 0, rel.stderr);
      assert.match(await registerNamed(o, o.b, "svc"), /^100\.65\./);
    }),
);

Deno.test(
  "names: overlay names never reach the real DNS; malformed NAME frames are refused and logged",
  () =>
    withOverlay(async (o, dir) => {
      const addrB = await registerNamed(o, o.b, "quiet");
      const addrA = await o.register(o.a);
      const trace = join(dir, "trace");
      const code = "import socket\nprint(socket.gethostbyname('quiet.uvpn'))\n" +
        "try:\n  socket.getaddrinfo('absent.uvpn', 80)\nexcept socket.gaierror as e:\n  print('absent', e.errno)\n" +
        "print(socket.gethostbyaddr('" + addrB + "')[0])";
      const r = await run("strace", [
        "-f",
        "-e",
        "trace=connect,sendto,sendmmsg",
        "-o",
        trace,
        "python3",
        "-c",
        code,
      ], {
        env: o.env(o.a, addrA),
      });
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, `${addrB}\nabsent ${-2}\nquiet.uvpn\n`);
      const calls = Deno.readTextFileSync(trace);
      assert.match(
        calls,
        new RegExp(`connect\\(\\d+, \\{sa_family=AF_INET, sin_port=htons\\(${o.a.port}\\)`),
        "asked the home router",
      );
      assert.doesNotMatch(calls, /htons\(53\)|nameserver|resolv/, "no DNS traffic");

      const key = await readKey(o.keyFile);
      for (
        const body of [
          new Uint8Array([0, 1, 9, 0x61]),
          new Uint8Array([0, 1, 3, 0x61, 0x2e, 0x62]),
          new Uint8Array([0, 7]),
        ]
      ) {
        const reply = await request({ host: o.a.host, port: o.a.port }, key, FrameType.NAME, body);
        assert.equal(reply.status, Status.EINVAL);
      }
      await o.a.router!.waitFor(/bad request from 127\.0\.0\.1:\d+: Bad NAME body: 00010361/);
      assert.match(await registerNamed(o, o.a, "still-serving"), /^100\.64\./);
    }),
);

Deno.test(
  "names: curl fetches http://NAME:8080/ and http://NAME.uvpn:8080/ across subnets",
  () =>
    withOverlay(async (o, dir, later) => {
      const www = join(dir, "www");
      Deno.mkdirSync(www);
      Deno.writeTextFileSync(join(www, "hello.txt"), "hello by name\n");
      const addrB = await registerNamed(o, o.b, "www-b");
      const addrA = await o.register(o.a);
      const server = later(
        new Proc("python3", [
          "-u",
          "-m",
          "http.server",
          "8080",
          "--bind",
          addrB,
          "--directory",
          www,
        ], {
          env: o.env(o.b, addrB),
        }),
      );
      await server.waitFor(/Serving HTTP/);
      for (const host of ["www-b", "www-b.uvpn"]) {
        const r = await run("curl", [
          "-sS",
          "--max-time",
          "15",
          "-w",
          "\n%{remote_ip}:%{remote_port}",
          `http://${host}:8080/hello.txt`,
        ], {
          env: o.env(o.a, addrA),
        });
        assert.equal(r.code, 0, r.stderr);
        assert.equal(r.stdout, `hello by name\n\n${addrB}:8080`);
      }
    }),
);

Deno.test(
  "surface: v4-mapped IPv6, EISCONN, SO_ERROR, shutdown, SO_PEERCRED, fork, exec, SCM_RIGHTS, close_range; preload and supervisor",
  () =>
    withOverlay(async (o, _dir, later) => {
      const addrB = await o.register(o.b);
      const addrA = await o.register(o.a);
      later(
        new Proc("socat", [`TCP-LISTEN:7000,bind=${addrB},reuseaddr,fork`, "EXEC:cat"], {
          env: o.env(o.b, addrB),
        }),
      );
      await o.b.router!.waitFor(new RegExp(`listener ${addrB.replaceAll(".", "\\.")}:7000 is at`));
      const r = await python(o, o.a, addrA, [SURFACE, "client", addrB, "7000", addrA]);
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.match(r.stdout, /ok getpeername after exec/);
      assert.match(r.stdout, /ok after close_range the listener is unregistered/);
      assert.match(r.stderr, new RegExp(`unlisten ${addrA.replaceAll(".", "\\.")}:7100: done`));
      // The same checks for a program under the seccomp supervisor (state keyed by socket inode).
      const sup = await cli("uvpn_register", [
        "-r",
        "--mode",
        "seccomp",
        "--",
        "python3",
        SURFACE,
        "client",
        addrB,
        "7000",
      ], {
        env: { ...o.homeEnv(o.a), UVPN_DEBUG: "1" },
        timeoutMs: 60_000,
      });
      assert.equal(sup.code, 0, sup.stdout + sup.stderr);
      assert.match(sup.stderr, /uvpn: supervising pid \d+/);
      assert.match(sup.stdout, /ok getpeername of a socket received with SCM_RIGHTS/);
    }),
);

Deno.test(
  "names: ssh by overlay name to a real sshd running in the overlay of subnet B",
  () =>
    withOverlay(async (o, dir, later) => {
      const addrB = await registerNamed(o, o.b, "sshb");
      const addrA = await o.register(o.a);
      const sshDir = join(dir, "ssh");
      Deno.mkdirSync(sshDir);
      const sshd = later(new Sshd(sshDir, "", { listen: addrB, env: o.env(o.b, addrB) }));
      await sshd.start();
      await o.b.router!.waitFor(
        new RegExp(`listener ${addrB.replaceAll(".", "\\.")}:${sshd.port} is at`),
      );
      for (const host of ["sshb", "sshb.uvpn"]) {
        const r = await run("ssh", [
          "-F",
          sshd.clientConfig,
          "-o",
          `HostName=${host}`,
          "hostb",
          "echo $SSH_CONNECTION",
        ], {
          env: o.env(o.a, addrA),
        });
        assert.equal(r.code, 0, r.stderr + sshd.proc!.stderr);
        // sshd saw the client's virtual address, after its re-exec, and its own virtual address.
        assert.match(
          r.stdout,
          new RegExp(
            `^${addrA.replaceAll(".", "\\.")} \\d+ ${addrB.replaceAll(".", "\\.")} ${sshd.port}\n$`,
          ),
        );
      }
      await sshd.proc!.waitFor(
        new RegExp(`Accepted publickey for \\S+ from ${addrA.replaceAll(".", "\\.")} port`),
      );
    }),
);
