/**
 * The benchmark behind scripts/bench/uvpn_throughput.sh: the overlay's data path against native
 * loopback and against a well-tuned C relay chain with the overlay's hop count, side by side in
 * one run. Paths:
 *   native   client → server on 127.0.0.1;
 *   socat    client → socat → socat → server (`socat -b 262144`: two user-space relays, as the
 *            overlay's two routers), the C anchor;
 *   preload  client and server under libuvpn.so in two subnets (home router → peer router);
 *   seccomp  the same under the seccomp supervisor;
 *   encrypt  preload through a second overlay whose routers run with --encrypt (AES-256-GCM
 *            bodies, not only the MAC that is always on): the encryption's cost, as a ratio to
 *            preload in the same run.
 * Measures: iperf3 with 128 KiB and 100-byte writes, 1 and 8 parallel streams; a 64 MiB echo
 * (python3 sends and reads back, one connection); connection set-up rate (connect, 1 byte each
 * way, close: python3). Prints a table, then the ratios the goals name, then what the
 * two relays of each path (both socat processes and their children; both routers, every thread)
 * spent in CPU seconds per GB carried during each iperf3 run, and its ratio to the socat chain's
 * in the same run: the cost of the relays alone, which other load on the machine changes far less
 * than it changes a throughput (both chains are CPU-bound on a small machine, so CPU per byte
 * decides which is faster).
 */
import { join } from "node:path";
import { Overlay, Proc, spawnCli, tempDir } from "../../tests/helpers.ts";

const seconds = Number(Deno.args[0] ?? 5);
const connects = Number(Deno.args[1] ?? 2000);
type Path = "native" | "socat" | "preload" | "seccomp" | "encrypt";
/** UVPN_BENCH_PATHS=preload,socat runs only those paths (quick comparisons while tuning). */
const PATHS = (Deno.env.get("UVPN_BENCH_PATHS")?.split(",") ?? ["native", "socat", "preload", "seccomp", "encrypt"]) as Path[];
/** The supervisor mode a path's programs run in (encrypt: preload, through the --encrypt overlay). */
const mode = (path: Path) => path === "encrypt" ? "preload" : path;
const SERVER_PORT = 5201, ECHO_PORT = 5301, CONNECT_PORT = 5401;
/** A client that hangs is reported as failed after this, and the run goes on. */
const CLIENT_TIMEOUT_MS = Math.max(60, seconds * 6) * 1000;

const ECHO_SERVER = `
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(512); print("ready", flush=True)
while True:
    c, _ = s.accept()
    while True:
        b = c.recv(262144)
        if not b: break
        c.sendall(b)
    c.close()
`;
const ECHO_CLIENT = `
import socket, sys, threading, time
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]) << 20
c = socket.create_connection((host, port))
got = 0
def reader():
    global got
    while got < n:
        b = c.recv(262144)
        if not b: break
        got += len(b)
t = time.monotonic(); r = threading.Thread(target=reader); r.start()
chunk = bytes(262144); sent = 0
while sent < n: c.sendall(chunk); sent += len(chunk)
r.join(); dt = time.monotonic() - t
assert got == n, (got, n)
print(n * 8 / dt / 1e9)
`;
const CONNECT_SERVER = `
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(4096); print("ready", flush=True)
while True:
    c, _ = s.accept()
    if c.recv(1): c.sendall(b"y")
    c.close()
`;
const CONNECT_CLIENT = `
import socket, sys, time
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
t = time.monotonic()
for _ in range(n):
    c = socket.create_connection((host, port)); c.sendall(b"x"); assert c.recv(1) == b"y"; c.close()
print(n / (time.monotonic() - t))
`;

/** CPU seconds of a process so far: its threads' and its reaped children's (from /proc). */
function cpuSeconds(pid: number): number {
  try {
    const st = Deno.readTextFileSync(`/proc/${pid}/stat`);
    const f = st.slice(st.lastIndexOf(")") + 2).split(" ").map(Number);
    return (f[11] + f[12] + f[13] + f[14]) / 100; // utime, stime, cutime, cstime (USER_HZ 100)
  } catch {
    return 0;
  }
}

/** Two socat relays in a chain in front of port `to`; returns the port clients use. */
function socatChain(to: number, procs: Proc[]): number {
  const mid = to + 1000, front = to + 2000;
  procs.push(new Proc("socat", ["-b", "262144", `TCP-LISTEN:${mid},bind=127.0.0.1,reuseaddr,fork`, `TCP:127.0.0.1:${to}`]));
  procs.push(new Proc("socat", ["-b", "262144", `TCP-LISTEN:${front},bind=127.0.0.1,reuseaddr,fork`, `TCP:127.0.0.1:${mid}`]));
  return front;
}

async function waitPort(port: number): Promise<void> {
  for (let i = 0; i < 200; i++) {
    try {
      (await Deno.connect({ hostname: "127.0.0.1", port })).close();
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 25));
    }
  }
  throw new Error(`Nothing listens on port: ${port}`);
}

/** Starts a server on `port` for `path`; resolves with the address and port clients use. */
async function server(o: Overlay, path: Path, argv: string[], port: number, ready: RegExp, procs: Proc[]): Promise<{ addr: string; port: number }> {
  if (path === "native" || path === "socat") {
    const p = new Proc(argv[0], argv.slice(1));
    procs.push(p);
    await p.waitFor(ready);
    if (path === "native") return { addr: "127.0.0.1", port };
    const front = socatChain(port, procs);
    await waitPort(front);
    return { addr: "127.0.0.1", port: front };
  }
  const p = spawnCli("uvpn_register", ["-r", "--mode", mode(path), "--", ...argv], { env: o.homeEnv(o.b) });
  procs.push(p);
  const addr = (await p.waitFor(/Leased virtual address (\S+)/))[1];
  await p.waitFor(ready);
  await o.b.router!.waitFor(new RegExp(`listener ${addr.replaceAll(".", "\\.")}:${port} is at`));
  return { addr, port };
}

/** Pids of the descendants of `pid` (from /proc). */
function descendants(pid: number): number[] {
  const kids = new Map<number, number[]>();
  for (const e of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    try {
      const stat = Deno.readTextFileSync(`/proc/${e.name}/stat`);
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      kids.set(ppid, [...(kids.get(ppid) ?? []), Number(e.name)]);
    } catch { /* gone */ }
  }
  const out: number[] = [];
  for (const todo = [pid]; todo.length;) {
    const next = kids.get(todo.pop()!) ?? [];
    out.push(...next);
    todo.push(...next);
  }
  return out;
}

/** Runs a command to completion; past CLIENT_TIMEOUT_MS kills it and its descendants (by pid). */
async function bounded(cmd: string, args: string[], env?: Record<string, string>): Promise<{ code: number; stdout: string; stderr: string }> {
  const p = new Proc(cmd, args, { env });
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timedOut = await Promise.race([
    p.done.then(() => false),
    new Promise<boolean>((r) => (timer = setTimeout(() => r(true), CLIENT_TIMEOUT_MS))),
  ]);
  clearTimeout(timer);
  if (timedOut) {
    for (const pid of descendants(p.pid)) {
      try {
        Deno.kill(pid, "SIGKILL");
      } catch { /* gone */ }
    }
  }
  const st = await p.stop("SIGKILL");
  return { code: timedOut ? 124 : st.code, stdout: p.stdout, stderr: timedOut ? `timed out after ${CLIENT_TIMEOUT_MS} ms\n${p.stderr}` : p.stderr };
}

/** Runs argv as a client on `path` to completion; returns stdout. */
async function client(o: Overlay, path: Path, argv: string[]): Promise<string> {
  const r = path === "native" || path === "socat"
    ? await bounded(argv[0], argv.slice(1))
    : await bounded(Deno.execPath(), ["run", "-A", "--no-prompt", join(import.meta.dirname!, "../../cli/uvpn_register.ts"), "-r", "-s", "--mode", mode(path), "--", ...argv], o.homeEnv(o.a));
  if (r.code !== 0) throw new Error(`${argv.join(" ")} (${path}) failed: ${r.stderr}`);
  return r.stdout;
}

async function stopAll(procs: Proc[]): Promise<void> {
  for (const p of procs.splice(0).reverse()) await p.stop().catch(() => {});
}

const LABELS = [
  "iperf3 128 KiB, 1 stream",
  "iperf3 128 KiB, 8 streams",
  "iperf3 100 B, 1 stream",
  "iperf3 100 B, 8 streams",
  "64 MiB echo",
  "connects/s",
] as const;
type Label = (typeof LABELS)[number];
const result: Record<Label, Partial<Record<Path, number>>> = Object.fromEntries(LABELS.map((l) => [l, {}])) as never;
/** The two relays' CPU seconds per GB received by iperf3, per iperf3 label and path. */
const CPU_LABELS = LABELS.filter((l) => l.startsWith("iperf3"));
const relayCpu: Record<string, Partial<Record<Path, number>>> = Object.fromEntries(CPU_LABELS.map((l) => [l, {}]));

using dir = tempDir("myrt-bench-");
using encDir = tempDir("myrt-bench-enc-");
/** UVPN_BENCH_ROUTER_ARGS="--session-window 16": extra uvpn_proxy flags for every router. */
const routerArgs = Deno.env.get("UVPN_BENCH_ROUTER_ARGS")?.split(" ").filter((x) => x) ?? [];
const plain = new Overlay(dir.path, { routerArgs });
const encrypted = new Overlay(encDir.path, { routerArgs: [...routerArgs, "--encrypt"] });
await plain.start();
await encrypted.start();
const procs: Proc[] = [];
try {
  for (const path of PATHS) {
    const o = path === "encrypt" ? encrypted : plain;
    try {
      // One iperf3 server per path, started again after a run that failed (a hung server
      // serves no one after it); a failed run is reported and the others go on.
      let s: { addr: string; port: number } | undefined;
      for (const [label, len, streams] of [
        ["iperf3 128 KiB, 1 stream", "128K", "1"],
        ["iperf3 128 KiB, 8 streams", "128K", "8"],
        ["iperf3 100 B, 1 stream", "100", "1"],
        ["iperf3 100 B, 8 streams", "100", "8"],
      ] as [Label, string, string][]) {
        try {
          s ??= await server(o, path, ["iperf3", "-s", "-p", String(SERVER_PORT), "--forceflush"], SERVER_PORT, /Server listening/, procs);
          // The relays: both socat parents (their connection children are reaped into them), or
          // both routers; native has none.
          const relays = path === "native" ? [] : path === "socat" ? procs.filter((p) => p.cmd === "socat").map((p) => p.pid) : [o.a.router!.pid, o.b.router!.pid];
          const cpu0 = relays.reduce((a, pid) => a + cpuSeconds(pid), 0);
          const out = await client(o, path, ["iperf3", "-c", s.addr, "-p", String(s.port), "-t", String(seconds), "-l", len, "-P", streams, "-J"]);
          const j = JSON.parse(out);
          if (j.error) throw new Error(`iperf3 ${len} x ${streams}: ${j.error}`);
          result[label][path] = j.end.sum_received.bits_per_second / 1e9;
          if (relays.length && label in relayCpu) {
            await new Promise((r) => setTimeout(r, 300)); // socat's children exit and are reaped
            const cpu = relays.reduce((a, pid) => a + cpuSeconds(pid), 0) - cpu0;
            relayCpu[label][path] = cpu / (j.end.sum_received.bytes / 1e9);
          }
          // Fairness of parallel streams (sessions sharing the routers' links): slowest / fastest.
          const per: number[] = (j.end.streams ?? []).map((x: { receiver: { bits_per_second: number } }) => x.receiver.bits_per_second);
          const fair = per.length > 1 ? ` (streams: slowest / fastest ${(Math.min(...per) / Math.max(...per)).toFixed(2)})` : "";
          console.error(`uvpn_throughput: ${path}: ${label}: ${result[label][path]!.toFixed(2)} Gbit/s${fair}`);
        } catch (e) {
          console.error(`uvpn_throughput: ${path}: ${label}: failed: ${(e as Error).message.slice(0, 300)}`);
          await stopAll(procs);
          s = undefined;
        }
      }
      await stopAll(procs);
      const e = await server(o, path, ["python3", "-c", ECHO_SERVER, String(ECHO_PORT)], ECHO_PORT, /ready/, procs);
      result["64 MiB echo"][path] = Number(await client(o, path, ["python3", "-c", ECHO_CLIENT, e.addr, String(e.port), "64"]));
      console.error(`uvpn_throughput: ${path}: 64 MiB echo: ${result["64 MiB echo"][path]!.toFixed(2)} Gbit/s`);
      await stopAll(procs);
      const c = await server(o, path, ["python3", "-c", CONNECT_SERVER, String(CONNECT_PORT)], CONNECT_PORT, /ready/, procs);
      result["connects/s"][path] = Number(await client(o, path, ["python3", "-c", CONNECT_CLIENT, c.addr, String(c.port), String(connects)]));
      console.error(`uvpn_throughput: ${path}: connects/s: ${result["connects/s"][path]!.toFixed(0)}`);
    } catch (e) {
      console.error(`uvpn_throughput: ${path}: ${(e as Error).message}`);
    } finally {
      await stopAll(procs);
    }
  }
} finally {
  await plain.stop();
  await encrypted.stop();
}

const f = (x?: number) => x === undefined ? "-" : x.toFixed(x < 10 ? 2 : 0);
const ratio = (a?: number, b?: number) => a === undefined || b === undefined ? "-" : (a / b).toFixed(2);
console.log(`UVPN data path on loopback, ${new Date().toISOString().slice(0, 10)}, one run each (iperf3 ${seconds} s, ${connects} connects)`);
console.log(`native: 127.0.0.1; socat: two socat -b 262144 relays; preload/seccomp: through both routers; encrypt: preload, routers with --encrypt`);
console.log(["", "native", "socat", "preload", "seccomp", "encrypt", "preload/socat", "preload/native", "seccomp/native", "encrypt/preload"].join("\t"));
for (const label of LABELS) {
  const r = result[label];
  const unit = label === "connects/s" ? "" : " Gbit/s";
  console.log([label + unit, f(r.native), f(r.socat), f(r.preload), f(r.seccomp), f(r.encrypt), ratio(r.preload, r.socat), ratio(r.preload, r.native), ratio(r.seccomp, r.native), ratio(r.encrypt, r.preload)].join("\t"));
}
console.log("Relays' CPU seconds per GB carried (both socat relays / both routers, whole processes), iperf3 runs");
console.log(["", "socat", "preload", "seccomp", "encrypt", "preload/socat", "encrypt/socat"].join("\t"));
for (const label of CPU_LABELS) {
  const r = relayCpu[label];
  console.log([label, f(r.socat), f(r.preload), f(r.seccomp), f(r.encrypt), ratio(r.preload, r.socat), ratio(r.encrypt, r.socat)].join("\t"));
}
console.log("Routers' CPU per GB / the socat chain's, per case (below 1: the routers cost less per byte)");
for (const label of CPU_LABELS) {
  const r = relayCpu[label];
  console.log(`  ${label}: preload ${ratio(r.preload, r.socat)}, seccomp ${ratio(r.seccomp, r.socat)}, encrypt ${ratio(r.encrypt, r.socat)}`);
}
const g = (l: Label, p: Path, vs: Path) => ratio(result[l][p], result[l][vs]);
console.log("Goals (issue 13): overlay >= 1.0 x socat chain at 128 KiB; >= 0.9 x native at 100 B; >= 2000 connects/s");
for (const p of ["preload", "seccomp", "encrypt"] as Path[]) {
  console.log(
    `  ${p}: 128 KiB 1 stream ${g("iperf3 128 KiB, 1 stream", p, "socat")} x socat, 8 streams ${g("iperf3 128 KiB, 8 streams", p, "socat")} x socat; ` +
      `100 B ${g("iperf3 100 B, 1 stream", p, "native")} x native; ${f(result["connects/s"][p])} connects/s`,
  );
}
