/**
 * A real router's links (issue 12): captured frames are useless on a new link and after a router
 * restart (challenge-response, no replay cache); strangers that never authenticate are bounded
 * per source and closed after the handshake deadline, their refusals logged once per interval;
 * a pre-authentication frame of more than 64 bytes is refused; only the holder of an address
 * may release it, listen or unlisten on it, or connect from it — checked with uvpn_register and
 * with a raw link.
 */
import assert from "node:assert/strict";
import { be32, concat } from "../../common/bytes.ts";
import { readKey } from "../../router/key.ts";
import { ClientLink } from "../../router/link.ts";
import { encodeConnect, encodeFrame, encodeHello, FrameType, ipBytes, randomId, Status } from "../../router/wire.ts";
import { cli, Overlay, spawnCli, tempDir } from "../helpers.ts";
import { parseIp } from "../../router/ipv4.ts";


async function withRouter(args: string[], body: (o: Overlay, key: Uint8Array) => Promise<void>): Promise<void> {
  using dir = tempDir();
  const o = new Overlay(dir.path, { routerArgs: args });
  await o.startRouter(o.a);
  try {
    await body(o, await readKey(o.keyFile));
  } finally {
    await o.stop();
  }
}

/** Reads whatever comes until the peer closes (or `ms` passes); returns the byte count and whether it closed. */
async function drain(c: Deno.Conn, ms: number): Promise<{ bytes: number; closed: boolean }> {
  const buf = new Uint8Array(4096);
  let bytes = 0;
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    const n = await Promise.race([c.read(buf).catch(() => null), new Promise<"wait">((r) => setTimeout(() => r("wait"), deadline - Date.now()))]);
    if (n === "wait") return { bytes, closed: false };
    if (n === null) return { bytes, closed: true };
    bytes += n;
  }
  return { bytes, closed: false };
}

Deno.test("links: a captured HELLO and request are useless on a new link, and after a router restart", () =>
  withRouter([], async (o, key) => {
    // A real exchange, recorded as an eavesdropper would: HELLO, then the client's first frame.
    const nc = randomId();
    const hello = encodeFrame(key, FrameType.HELLO, 0, 0, encodeHello({ role: 1, flags: 0, nc, holder: new Uint8Array(16) }));
    const link = await ClientLink.open(o.a, key);
    const leased = await link.request(FrameType.LEASE, concat(new Uint8Array([0]), be32(0), new Uint8Array([0])));
    assert.equal(leased.status, Status.OK);
    link.close();
    // Replayed on a fresh connection, the HELLO gets a fresh CHALLENGE, and a request MACed for
    // another link (here: under the network key itself) is refused and the link closed.
    const replay = async () => {
      const c = await Deno.connect({ hostname: o.a.host, port: o.a.port });
      await c.write(hello);
      const challenge = new Uint8Array(96);
      let got = 0;
      while (got < 96) got += (await c.read(challenge.subarray(got))) ?? 96;
      await c.write(encodeFrame(key, FrameType.LEASE, 1, 1, concat(new Uint8Array([0]), be32(0), new Uint8Array([0]))));
      const r = await drain(c, 3000);
      c.close();
      return { challenge: challenge.slice(32, 48), ...r };
    };
    const first = await replay();
    assert.deepEqual([first.bytes, first.closed], [0, true], "no answer, closed");
    await o.a.router!.waitFor(/refused 127\.0\.0\.1:\d+: Bad MAC/);
    await o.a.router!.stop("SIGKILL");
    await o.startRouter(o.a);
    const second = await replay();
    assert.deepEqual([second.bytes, second.closed], [0, true], "after a restart: still no answer");
    assert.notDeepEqual(first.challenge, second.challenge, "every CHALLENGE carries a fresh nonce");
    const list = await cli("uvpn_register", ["--list"], { env: o.homeEnv(o.a) });
    assert.equal(list.stdout.trim().split("\n").length, 1, `exactly the one real lease: ${list.stdout}`);
  }));

Deno.test("links: strangers are bounded per source and closed after the handshake deadline; refusals logged once", () =>
  withRouter(["--handshake-timeout", "1", "--max-unauthenticated-per-source", "4"], async (o) => {
    const idle: Deno.Conn[] = [];
    for (let i = 0; i < 10; i++) idle.push(await Deno.connect({ hostname: o.a.host, port: o.a.port }));
    const results = await Promise.all(idle.map((c) => drain(c, 4000)));
    for (const c of idle) c.close();
    assert.ok(results.every((r) => r.closed && r.bytes === 0), JSON.stringify(results));
    await o.a.router!.waitFor(/refused 127\.0\.0\.1:\d+: too many unauthenticated connections/);
    await o.a.router!.waitFor(/refused 127\.0\.0\.1:\d+: no handshake within 1000 ms/);
    const lines = (o.a.router!.stderr.match(/too many unauthenticated/g) ?? []).length;
    assert.equal(lines, 1, `one line for six refusals:\n${o.a.router!.stderr}`);
    // A pre-authentication frame may carry 64 bytes at most: a bigger HELLO is refused at its head.
    const c = await Deno.connect({ hostname: o.a.host, port: o.a.port });
    await c.write(encodeFrame(new Uint8Array(32), FrameType.HELLO, 0, 0, new Uint8Array(300)));
    assert.deepEqual(await drain(c, 3000), { bytes: 0, closed: true });
    c.close();
    await o.a.router!.waitFor(/refused 127\.0\.0\.1:\d+: Body too long for type 1: 300/);
    // Legitimate clients still get in.
    const r = await cli("uvpn_register", ["-s", "-r"], { env: o.homeEnv(o.a) });
    assert.equal(r.code, 0, r.stderr);
  }));

Deno.test("links: a second holder cannot release, unlisten, listen on or connect from another's address", () =>
  withRouter([], async (o, key) => {
    // The first holder: a command run with its lease (held by uvpn_register's link and CMD's).
    const holder = spawnCli("uvpn_register", ["-r", "--", "python3", "-u", "-c", `
import os, socket, time
s = socket.socket(); s.bind((os.environ["UVPN_SRC_ADDR"], 8080)); s.listen(4)
print("listening", os.environ["UVPN_SRC_ADDR"], flush=True); time.sleep(60)
`], { env: { ...o.homeEnv(o.a), UVPN_DEBUG: "1" } });
    try {
      const addr = (await holder.waitFor(/listening (\S+)/))[1];
      await o.a.router!.waitFor(new RegExp(`listener ${addr.replaceAll(".", "\\.")}:8080 is at`));
      const rel = await cli("uvpn_register", ["--release", addr], { env: o.homeEnv(o.a) });
      assert.equal(rel.code, 5, rel.stderr);
      assert.match(rel.stderr, new RegExp(`Router refused to release ${addr.replaceAll(".", "\\.")}: EPERM`));
      const ip = parseIp(addr)!;
      const other = await ClientLink.open(o.a, key);
      try {
        assert.equal((await other.request(FrameType.USE, ipBytes(ip))).status, Status.EPERM);
        const lid = new Uint8Array(8);
        assert.equal((await other.request(FrameType.UNLISTEN, concat(ipBytes(ip), new Uint8Array([0x1f, 0x90]), lid))).status, Status.EPERM);
        assert.equal((await other.request(FrameType.LISTEN, concat(ipBytes(ip), new Uint8Array([0x1f, 0x90, 0x9c, 0x40]), lid))).status, Status.EPERM);
        const c = encodeConnect({ proto: 6, flags: 0, srcIp: ip, srcPort: 0, dstIp: ip, dstPort: 8080 });
        assert.equal((await other.request(FrameType.CONNECT, c)).status, Status.EPERM, "CONNECT from an address the link does not hold");
        assert.equal((await other.request(FrameType.RELEASE, ipBytes(ip))).status, Status.EPERM);
      } finally {
        other.close();
      }
      const list = await cli("uvpn_register", ["--list"], { env: o.homeEnv(o.a) });
      assert.match(list.stdout, new RegExp(`^${addr.replaceAll(".", "\\.")}\\t127\\.0\\.0\\.1\\t\\t\\d+\\theld$`, "m"));
      await o.a.router!.waitFor(/refused RELEASE of .* the link does not hold the address/);
    } finally {
      await holder.stop();
    }
  }));

Deno.test("links: a lease taken for -- CMD is released after its lifetime once CMD is gone; the wrapper's lease waits", () =>
  withRouter(["--cmd-lease-ttl", "1"], async (o) => {
    const r = await cli("uvpn_register", ["-r", "--", "true"], { env: o.homeEnv(o.a) });
    assert.equal(r.code, 0, r.stderr);
    const addr = r.stderr.match(/Leased virtual address (\S+)/)![1];
    const seed = (await cli("uvpn_register", ["-s", "-r"], { env: o.homeEnv(o.a) })).stdout.trim();
    await o.a.router!.waitFor(new RegExp(`lease ${addr.replaceAll(".", "\\.")} expired: no holder for 1 s`), 5000);
    const list = await cli("uvpn_register", ["--list"], { env: o.homeEnv(o.a) });
    assert.doesNotMatch(list.stdout, new RegExp(`^${addr.replaceAll(".", "\\.")}\\t`, "m"));
    assert.match(list.stdout, new RegExp(`^${seed.replaceAll(".", "\\.")}\\t127\\.0\\.0\\.1\\t\\t\\d+\\tgrace$`, "m"), "12 h by default");
  }));
