/**
 * Interfaces show the overlay (docs/UVPN.md, "Interfaces"): a program with a virtual address
 * sees `uvpn0` with that address and its subnet's mask first, then loopback, and no real
 * interface — through getifaddrs, the SIOCGIF* ioctls, if_nameindex, rtnetlink dumps and the
 * listing of /sys/class/net — in both modes. Real programs: a C fixture (tests/fixtures/ifaces.c)
 * built dynamic for libuvpn.so and static for the supervisor, iproute2's `ip`, `hostname -i`/`-I`,
 * python3, `ls`, a static Go program (net.Interfaces, rtnetlink by raw syscalls) and static
 * busybox's ifconfig. The real interfaces of a compute node are checked in
 * tests/uvpn/mycluster_test.ts (root: a namespace with veth links).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { cli, Overlay, PRELOAD_UVPN, ROOT, run, tempDir } from "../helpers.ts";

const esc = (s: string) => s.replaceAll(".", "\\.");
const FIXTURE = join(ROOT, "tests/fixtures/ifaces.c");

/** The C fixture and the static Go program, built once per file. */
const binDir = Deno.makeTempDirSync({ prefix: "myrt-ifaces-" });
let built: Promise<{ dyn: string; stat: string; go: string }> | undefined;
function binaries() {
  built ??= (async () => {
    const dyn = join(binDir, "ifaces"), stat = join(binDir, "ifaces-static"), go = join(binDir, "goifaces");
    for (const args of [["-O1", "-o", dyn, FIXTURE], ["-O1", "-static", "-o", stat, FIXTURE]]) {
      const r = await run("cc", args, { timeoutMs: 120_000 });
      if (r.code !== 0) throw new Error(`cc failed: ${r.stderr}`);
    }
    const r = await run("go", ["build", "-o", go, "./ifaces"], {
      cwd: join(ROOT, "tests/fixtures/gohttp"),
      env: { CGO_ENABLED: "0", GOCACHE: join(binDir, "cache"), GOPATH: join(binDir, "gopath"), GOFLAGS: "", HOME: binDir },
      timeoutMs: 240_000,
    });
    if (r.code !== 0) throw new Error(`go build failed: ${r.stderr}`);
    return { dyn, stat, go };
  })();
  return built;
}
globalThis.addEventListener("unload", () => {
  try {
    Deno.removeSync(binDir, { recursive: true });
  } catch { /* gone */ }
});

/** A started overlay with a node of subnet A leased under `name`. */
async function withNode(name: string, body: (o: Overlay, addr: string) => Promise<void>): Promise<void> {
  using dir = tempDir();
  const o = new Overlay(dir.path);
  await o.start();
  try {
    const r = await cli("uvpn_register", ["-s", "-r", "--name", name], { env: o.homeEnv(o.a) });
    assert.equal(r.code, 0, r.stderr);
    await body(o, r.stdout.trim());
  } finally {
    await o.stop();
  }
}

/** What a program listing interfaces must show for virtual address `addr` (a /16 subnet). */
function assertOverlayListing(out: string, addr: string): void {
  const a = esc(addr);
  assert.match(out, new RegExp(`^getifaddrs uvpn0 ${a} 255\\.255\\.0\\.0 0x100c1\\ngetifaddrs lo 127\\.0\\.0\\.1 255\\.0\\.0\\.0 `, "m"));
  assert.match(out, new RegExp(`^ifconf uvpn0 ${a} 255\\.255\\.0\\.0 0xc1 30070 1500\\nifname 30070 uvpn0\\nifconf lo 127\\.0\\.0\\.1 255\\.0\\.0\\.0 0x49 1 65536\\n`, "m"));
  assert.match(out, /^nameindex 30070 uvpn0\nnameindex 1 lo\n/m);
  assert.match(out, new RegExp(`^netlink 30070 ${a}/16\\nnetlink 1 127\\.0\\.0\\.1/8\\n`, "m"));
  assert.equal(out.match(/^(getifaddrs|ifconf|nameindex|netlink) /gm)?.length, 8, out); // nothing else
  assert.match(out, /^hidden eth0 No such device$/m);
}

Deno.test("ifaces: dynamic programs under libuvpn.so see uvpn0 first, then loopback, nothing real", async () => {
  const bins = await binaries();
  await withNode("ifnode", async (o, addr) => {
    const env = o.env(o.a, addr);
    const c = await run(bins.dyn, ["eth0", "host"], { env });
    assert.equal(c.code, 0, c.stderr);
    assertOverlayListing(c.stdout, addr);
    // getaddrinfo(gethostname()) is the virtual address: the address has an overlay name.
    assert.match(c.stdout, new RegExp(`^host \\S+ ${esc(addr)}$`, "m"));

    // iproute2 speaks rtnetlink itself (RTM_GETLINK then RTM_GETADDR dumps).
    const ip = await run("ip", ["-4", "addr"], { env });
    assert.equal(ip.code, 0, ip.stderr);
    assert.match(ip.stdout, new RegExp(`^30070: uvpn0: <NOARP,UP,LOWER_UP> mtu 1500 .*\\n    inet ${esc(addr)}/16 brd 100\\.64\\.255\\.255 scope global uvpn0\\n`, "m"));
    assert.match(ip.stdout, /^1: lo: .*\n {4}inet 127\.0\.0\.1\/8 scope host lo\n/m);
    const link = await run("ip", ["link", "show", "dev", "uvpn0"], { env });
    assert.equal(link.code, 0, link.stderr);
    assert.match(link.stdout, /^30070: uvpn0: .*\n {4}link\/none/m);

    const hn = await run("hostname", ["-i"], { env });
    assert.equal(hn.stdout.trim(), addr, hn.stderr);
    const all = await run("hostname", ["-I"], { env });
    assert.equal(all.stdout.trim(), addr, all.stderr);

    const py = await run("python3", ["-c", [
      "import socket",
      "print(socket.if_nameindex())",
      "print(socket.gethostbyname(socket.gethostname()))",
      "print(socket.getaddrinfo(socket.gethostname(), 22, socket.AF_INET)[0][4][0])",
    ].join("\n")], { env });
    assert.equal(py.code, 0, py.stderr);
    assert.equal(py.stdout, `[(30070, 'uvpn0'), (1, 'lo')]\n${addr}\n${addr}\n`);

    const ls = await run("ls", ["/sys/class/net"], { env });
    assert.equal(ls.stdout, "lo\nuvpn0\n");
  });
});

Deno.test("ifaces: static programs under the supervisor see the same (C, Go, busybox, iproute2)", async () => {
  const bins = await binaries();
  await withNode("ifnode", async (o) => {
    const env = { ...o.homeEnv(o.a), UVPN_DEBUG: "1" };
    const leased = (stderr: string) => stderr.match(/Leased virtual address (\S+) from router/)![1];

    // Static glibc: getifaddrs and if_nameindex talk rtnetlink by raw sendto/recvmsg; ioctl.
    const c = await cli("uvpn_register", ["-r", "--", bins.stat, "eth0"], { env });
    assert.equal(c.code, 0, c.stderr);
    assert.match(c.stderr, /uvpn: supervising pid/);
    assertOverlayListing(c.stdout, leased(c.stderr));

    // Go: net.Interfaces, Interface.Addrs and net.InterfaceAddrs (RTM_GETLINK/RTM_GETADDR).
    const g = await cli("uvpn_register", ["-r", "--", bins.go], { env });
    assert.equal(g.code, 0, g.stderr);
    const ga = esc(leased(g.stderr));
    assert.match(g.stdout, new RegExp(`^iface uvpn0 30070 up\\naddr uvpn0 ${ga}/16\\niface lo 1 up\\|loopback\\naddr lo 127\\.0\\.0\\.1/8\\naddr lo ::1/128\\nall ${ga}/16\\nall 127\\.0\\.0\\.1/8\\nall ::1/128\\n$`));

    // busybox ifconfig: SIOCGIFCONF and the SIOCGIF* requests.
    const bb = await cli("uvpn_register", ["-r", "--", "/bin/busybox", "ifconfig"], { env });
    assert.equal(bb.code, 0, bb.stderr);
    assert.match(bb.stdout, new RegExp(`^uvpn0 .*\\n +inet addr:${esc(leased(bb.stderr))}  Mask:255\\.255\\.0\\.0\\n +UP RUNNING NOARP  MTU:1500`, "m"));

    // iproute2 forced under the supervisor: address-less sendto requests, recvmsg with MSG_PEEK|MSG_TRUNC.
    const ip = await cli("uvpn_register", ["-r", "--mode", "seccomp", "--", "ip", "-4", "addr"], { env });
    assert.equal(ip.code, 0, ip.stderr);
    assert.match(ip.stdout, new RegExp(`^30070: uvpn0: .*\\n    inet ${esc(leased(ip.stderr))}/16 `, "m"));
  });
});

Deno.test("ifaces: without a virtual address nothing changes; the real answer of a program outside", async () => {
  const bins = await binaries();
  await withNode("ifnode", async (o) => {
    const native = await run(bins.dyn, [], {});
    const { UVPN_SRC_ADDR: _, ...noSrc } = o.env(o.a, "");
    const preloaded = await run(bins.dyn, [], { env: { ...noSrc, LD_PRELOAD: PRELOAD_UVPN } });
    assert.equal(native.code, 0, native.stderr);
    assert.equal(preloaded.stdout, native.stdout);
    assert.doesNotMatch(native.stdout, /uvpn0/);
  });
});
