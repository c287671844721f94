/**
 * The router's data port (native/router/core/data.c): a program's data connection presents the
 * DATA ticket of its CONNECT's answer to the data plane, which checks it and joins the
 * connection to its session itself. Two real routers on loopback, a socat echo server under
 * libuvpn.so behind router B; the client side is this test (a client link to router A, tickets
 * written by hand) and python3 under libuvpn.so. A forged, misbound, replayed or expired ticket
 * and a stranger's bytes are refused (closed, nothing answered) and logged once per source and
 * reason; the ticket as issued joins its session once; idle strangers on the data port delay no
 * legitimate client and are closed at the handshake deadline.
 */
import assert from "node:assert/strict";
import { Overlay, Proc, run, sleep, tempDir, ticketAttempt } from "../helpers.ts";
import { concat } from "../../common/bytes.ts";
import { ask, connectRouter } from "../../router/client.ts";
import { parseIp } from "../../router/ipv4.ts";
import { readKey } from "../../router/key.ts";
import { type ConnectAnswer, decodeConnectAnswer, encodeConnect, encodeTicket, FrameType, ipBytes, Status, TicketKind } from "../../router/wire.ts";

const esc = (s: string) => s.replaceAll(".", "\\.");

/** A two-router overlay with a socat echo server at addrB:7000 (subnet B); addrA leased in A. */
async function withEcho(body: (o: Overlay, addrA: string, addrB: string) => Promise<void>): Promise<void> {
  using dir = tempDir();
  const o = new Overlay(dir.path);
  await o.start();
  let echo: Proc | undefined;
  try {
    const addrB = await o.register(o.b);
    const addrA = await o.register(o.a);
    echo = new Proc("socat", [`TCP-LISTEN:7000,bind=${addrB},reuseaddr,fork`, "EXEC:cat"], { env: o.env(o.b, addrB) });
    await o.b.router!.waitFor(new RegExp(`listener ${esc(addrB)}:7000 is at`));
    await body(o, addrA, addrB);
  } finally {
    await echo?.stop();
    await o.stop();
  }
}

const hostOf = (ip: number) => `${ip >>> 24}.${(ip >> 16) & 255}.${(ip >> 8) & 255}.${ip & 255}`;

/** ticketAttempt with "hello\n" after the bytes (echoed once the connection joined its session). */
const attempt = (a: ConnectAnswer, bytes: (localPort: number) => Uint8Array) =>
  ticketAttempt(a.realIp, a.realPort, (p) => concat(bytes(p), new TextEncoder().encode("hello\n")));

Deno.test("dataport: forged, misbound and replayed DATA tickets are refused and logged; the issued one joins its session once", () =>
  withEcho(async (o, addrA, addrB) => {
    const key = await readKey(o.keyFile);
    const src = parseIp(addrA)!, dst = parseIp(addrB)!;
    const link = await connectRouter({ host: o.a.host, port: o.a.port }, key);
    try {
      assert.equal((await ask(link, FrameType.USE, ipBytes(src))).status, Status.OK);
      const connect = async (): Promise<ConnectAnswer> => {
        const r = await ask(link, FrameType.CONNECT, encodeConnect({ proto: 6, flags: 0, srcIp: src, srcPort: 0, dstIp: dst, dstPort: 7000 }));
        assert.equal(r.status, Status.OK);
        return decodeConnectAnswer(r.data);
      };
      const ticket = (a: ConnectAnswer, boundPort: number, k = key) =>
        encodeTicket(k, {
          kind: TicketKind.DATA, srcIp: src, srcPort: a.srcPort, dstIp: dst, dstPort: 7000, listenerId: new Uint8Array(8), boundPort, issued: a.issued, ticketId: a.ticketId,
        });
      const a = await connect();
      assert.equal(a.kind, TicketKind.DATA);
      assert.notEqual(a.realPort, o.a.port, "the DATA answer names the data port, not the router's");
      assert.equal(await attempt(a, (p) => ticket(a, p, new Uint8Array(32))), "", "a ticket MACed with another key");
      assert.equal(await attempt(a, (p) => ticket(a, p + 1)), "", "a ticket bound to another port");
      assert.equal(await attempt(a, () => new TextEncoder().encode("GET / HTTP/1.0\r\n\r\n")), "", "no ticket");
      assert.equal(await attempt(a, (p) => ticket(a, p)), "hello\n", "the ticket as issued: echoed through the session");
      assert.equal(await attempt(a, (p) => ticket(a, p)), "", "the same ticket again");
      const r = o.a.router!;
      await r.waitFor(/refused 127\.0\.0\.1:\d+: bad DATA ticket: MAC mismatch/);
      await r.waitFor(/refused 127\.0\.0\.1:\d+: DATA ticket bound to port \d+, not \d+/);
      await r.waitFor(/refused 127\.0\.0\.1:\d+: bad magic: not a UVPN ticket/);
      await r.waitFor(/refused 127\.0\.0\.1:\d+: unknown, used or expired DATA ticket/);
      await r.waitFor(new RegExp(`relay ${esc(addrA)}:${a.srcPort} -> ${esc(addrB)}:7000 open via peer router`));
      // Refusals of one kind from one source are logged once per interval: counted, not logged again.
      assert.equal(await attempt(a, (p) => ticket(a, p)), "", "the same ticket a third time");
      assert.equal(r.stderr.match(/unknown, used or expired DATA ticket/g)?.length, 1, r.stderr);
      const st = JSON.parse(new TextDecoder().decode((await ask(link, FrameType.STATUS, new Uint8Array([1]))).data));
      assert.ok(st.refused >= 5, JSON.stringify(st));
    } finally {
      link.close();
    }
  }));

Deno.test({
  name: "dataport: a DATA ticket not presented within 10 s ends its session and is refused afterwards",
  // Ten seconds of waiting: the plain pass runs it, the sanitizer pass (MYRT_SANITIZE_RT) leaves it out.
  ignore: Deno.env.get("MYRT_SANITIZE_RT") !== undefined,
  fn: () =>
    withEcho(async (o, addrA, addrB) => {
      const key = await readKey(o.keyFile);
      const src = parseIp(addrA)!, dst = parseIp(addrB)!;
      const late = await dataPortOf(o, addrA, addrB);
      const lateAt = Date.now();
      const r = o.a.router!;
      await sleep(Math.max(0, lateAt + 10_800 - Date.now()));
      await r.waitFor(new RegExp(`connect ${esc(addrA)}:${late.srcPort} -> ${esc(addrB)}:7000: no data connection within 10 s; dropped`), 5000);
      const ticket = (p: number) =>
        encodeTicket(key, {
          kind: TicketKind.DATA, srcIp: src, srcPort: late.srcPort, dstIp: dst, dstPort: 7000, listenerId: new Uint8Array(8), boundPort: p, issued: late.issued, ticketId: late.ticketId,
        });
      assert.equal(await attempt(late, ticket), "", "a ticket past its 10 s");
      await r.waitFor(/refused 127\.0\.0\.1:\d+: unknown, used or expired DATA ticket/);
    }),
});

const CLIENT = `
import socket, sys, time
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
worst = 0
for i in range(n):
    t = time.monotonic()
    s = socket.create_connection((host, port), timeout=10)
    s.sendall(b"ping%d\\n" % i)
    got = b""
    while not got.endswith(b"\\n"):
        got += s.recv(64)
    assert got == b"ping%d\\n" % i, got
    s.close()
    worst = max(worst, time.monotonic() - t)
print("worst_ms", int(worst * 1000))
`;

/** A CONNECT from addrA to addrB:7000 on a client link of router A: its answer names the data port (that ticket is left to expire). */
async function dataPortOf(o: Overlay, addrA: string, addrB: string): Promise<ConnectAnswer> {
  const src = parseIp(addrA)!;
  const link = await connectRouter({ host: o.a.host, port: o.a.port }, await readKey(o.keyFile));
  try {
    await ask(link, FrameType.USE, ipBytes(src));
    return decodeConnectAnswer((await ask(link, FrameType.CONNECT, encodeConnect({ proto: 6, flags: 0, srcIp: src, srcPort: 0, dstIp: parseIp(addrB)!, dstPort: 7000 }))).data);
  } finally {
    link.close();
  }
}

Deno.test("dataport: idle and slow strangers on the data port delay no legitimate client and are closed at the handshake deadline", () =>
  withEcho(async (o, addrA, addrB) => {
    const a = await dataPortOf(o, addrA, addrB);
    const strangers: Deno.TcpConn[] = [];
    for (let i = 0; i < 60; i++) strangers.push(await Deno.connect({ hostname: hostOf(a.realIp), port: a.realPort }));
    // A third of them send the start of a ticket and stop.
    for (const c of strangers.slice(0, 20)) await c.write(new TextEncoder().encode("UVPT\x02\x01"));
    const r = await run("python3", ["-c", CLIENT, addrB, "7000", "20"], { env: o.env(o.a, addrA), timeoutMs: 30_000 });
    assert.equal(r.code, 0, r.stderr);
    const worst = Number(r.stdout.match(/^worst_ms (\d+)$/m)?.[1]);
    assert.ok(worst < 1500, `a connection took ${worst} ms with strangers on the data port`);
    // Every stranger is closed by the deadline (3 s), unanswered.
    const closed = await Promise.all(strangers.map(async (c) => {
      const buf = new Uint8Array(16);
      const n = await Promise.race([c.read(buf).catch(() => null), sleep(8000).then(() => -1)]);
      c.close();
      return n === null;
    }));
    assert.ok(closed.every((x) => x), `${closed.filter((x) => !x).length} strangers were not closed`);
    await o.a.router!.waitFor(/refused 127\.0\.0\.1:\d+: no ticket within 3000 ms/);
  }));

Deno.test("dataport: a router out of descriptors pauses the data port's accepts, logs it once, and serves again when strangers are gone", () =>
  withEcho(async (o, addrA, addrB) => {
    const a = await dataPortOf(o, addrA, addrB);
    const pid = o.a.router!.pid;
    const open = [...Deno.readDirSync(`/proc/${pid}/fd`)].length;
    const lim = await run("prlimit", ["--pid", String(pid), `--nofile=${open + 20}:${open + 20}`]);
    assert.equal(lim.code, 0, lim.stderr);
    const strangers: Deno.TcpConn[] = [];
    for (let i = 0; i < 60; i++) strangers.push(await Deno.connect({ hostname: hostOf(a.realIp), port: a.realPort }));
    await o.a.router!.waitFor(/data port: accept failed: Too many open files; pausing new connections for 100 ms/);
    // The strangers go: the admitted ones are closed on their EOF, the queued ones accepted once
    // descriptors are free again (the pause ends) and closed the same way.
    for (const c of strangers) c.close();
    const fds = () => [...Deno.readDirSync(`/proc/${pid}/fd`)].length;
    for (let i = 0; i < 100 && fds() > open + 2; i++) await sleep(100);
    assert.ok(fds() <= open + 2, `router A still holds ${fds() - open} more descriptors than before`);
    const r = await run("python3", ["-c", CLIENT, addrB, "7000", "5"], { env: o.env(o.a, addrA), timeoutMs: 30_000 });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^worst_ms \d+$/m);
    assert.equal(o.a.router!.stderr.match(/data port: accept failed/g)?.length, 1, "logged once");
  }));
