/**
 * The benchmark behind scripts/bench/uvpn_wrapcall.sh: what libuvpn.so's read/recv/write/send
 * wrappers add to each call on an overlay connection (issue 13: 100-byte writes under preload).
 * scripts/bench/c/wrapcall.c times each call through the libc symbol and as a direct syscall(2)
 * on an idle non-blocking connection (cheap calls: EAGAIN, zero-length writes), best of 5 rounds;
 * it runs natively (127.0.0.1, no LD_PRELOAD) and under preload through both routers. Prints ns
 * per call and the wrapper's cost (libc minus direct) for each.
 */
import { join } from "node:path";
import { Overlay, Proc, run, spawnCli, tempDir } from "../../tests/helpers.ts";

const calls = Number(Deno.args[0] ?? 200000);
using dir = tempDir("myrt-wrapcall-");
const exe = join(dir.path, "wrapcall");
const cc = await run("cc", ["-O2", "-Wall", "-Wextra", "-Werror", "-o", exe, join(import.meta.dirname!, "c/wrapcall.c")], { timeoutMs: 60_000 });
if (cc.code !== 0) throw new Error(`Cannot build wrapcall.c: ${cc.stderr}`);
const HOLD = `
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(16); print("ready", flush=True)
held = []
while True:
    c, _ = s.accept(); held.append(c)
`;
const PORT = 5501;
const o = new Overlay(dir.path);
await o.start();
const procs: Proc[] = [];
const rows: Record<string, Record<string, [number, number]>> = {};
try {
  const native = new Proc("python3", ["-c", HOLD, String(PORT)]);
  procs.push(native);
  await native.waitFor(/ready/);
  const srv = spawnCli("uvpn_register", ["-r", "--mode", "preload", "--", "python3", "-c", HOLD, String(PORT + 1)], { env: o.homeEnv(o.b) });
  procs.push(srv);
  const addr = (await srv.waitFor(/Leased virtual address (\S+)/))[1];
  await srv.waitFor(/ready/);
  await o.b.router!.waitFor(new RegExp(`listener ${addr.replaceAll(".", "\\.")}:${PORT + 1} is at`));
  const runs: [string, string, string[]][] = [
    ["native", exe, ["127.0.0.1", String(PORT), String(calls)]],
    ["preload", Deno.execPath(), ["run", "-A", "--no-prompt", join(import.meta.dirname!, "../../cli/uvpn_register.ts"), "-r", "-s", "--mode", "preload", "--", exe, addr, String(PORT + 1), String(calls)]],
  ];
  for (const [name, cmd, args] of runs) {
    const r = await run(cmd, args, { env: name === "preload" ? o.homeEnv(o.a) : undefined, timeoutMs: 120_000 });
    if (r.code !== 0) throw new Error(`wrapcall (${name}) failed: ${r.stderr}`);
    rows[name] = {};
    for (const line of r.stdout.trim().split("\n")) {
      const [call, libc, direct] = line.split(" ");
      rows[name][call] = [Number(libc), Number(direct)];
    }
  }
} finally {
  for (const p of procs.reverse()) await p.stop().catch(() => {});
  await o.stop();
}
console.log(`ns per call on an idle non-blocking TCP connection, ${new Date().toISOString().slice(0, 10)}, best of 5 rounds of ${calls}`);
console.log("call\tnative libc\tnative direct\tpreload libc\tpreload direct\twrapper cost (preload libc - direct)");
for (const call of Object.keys(rows.native)) {
  const [nl, nd] = rows.native[call], [pl, pd] = rows.preload[call];
  console.log(`${call}\t${nl}\t${nd}\t${pl}\t${pd}\t${(pl - pd).toFixed(1)}`);
}
