/**
 * Shared by the UVPN benchmarks on a loopback overlay (uvpn_modes.ts, uvpn_direct.ts): a server
 * and a client run natively or under `uvpn_register -r --mode preload|seccomp -- CMD` in a
 * subnet of tests/helpers.ts's Overlay, the python3 connect loop, and the median.
 */
import { join } from "node:path";
import { type Overlay, Proc, run, spawnCli } from "../../tests/helpers.ts";

/** How a benchmarked program runs: without the overlay, or in one of its two modes. */
export type Mode = "native" | "preload" | "seccomp";

/** Starts argv in subnet s in `mode` (with extra environment env); resolves with the address clients use. */
export async function benchServer(
  o: Overlay,
  s: Overlay["a"],
  mode: Mode,
  argv: string[],
  ready: RegExp,
  env: Record<string, string> = {},
): Promise<{ p: Proc; addr: string }> {
  if (mode === "native") {
    const p = new Proc(argv[0], argv.slice(1));
    await p.waitFor(ready);
    return { p, addr: "127.0.0.1" };
  }
  const p = spawnCli("uvpn_register", ["-r", "--mode", mode, "--", ...argv], { env: { ...o.homeEnv(s), ...env } });
  const addr = (await p.waitFor(/Leased virtual address (\S+)/))[1];
  await p.waitFor(ready);
  await s.router!.waitFor(new RegExp(`listener ${addr.replaceAll(".", "\\.")}:\\d+ is at`));
  return { p, addr };
}

/** Runs argv in subnet s in `mode` (with extra environment env) to completion; returns stdout. */
export async function benchClient(o: Overlay, s: Overlay["a"], mode: Mode, argv: string[], env: Record<string, string> = {}): Promise<string> {
  const r = mode === "native"
    ? await run(argv[0], argv.slice(1), { timeoutMs: 120_000 })
    : await run(Deno.execPath(), ["run", "-A", "--no-prompt", join(import.meta.dirname!, "../../cli/uvpn_register.ts"), "-r", "-s", "--mode", mode, "--", ...argv], {
      env: { ...o.homeEnv(s), ...env },
      timeoutMs: 120_000,
    });
  if (r.code !== 0) throw new Error(`${argv.join(" ")} (${mode}) failed: ${r.stderr}`);
  return r.stdout;
}

/** A python3 server that accepts and closes connections on port 5301 (prints "ready"). */
export const CONNECT_SERVER = `
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 5301)); s.listen(512); print("ready", flush=True)
while True:
    c, _ = s.accept(); c.close()
`;
/** A python3 client: N connects to HOST:5301 one after the other; prints connects per second. */
export const CONNECT_CLIENT = `
import socket, sys, time
host, n = sys.argv[1], int(sys.argv[2])
t = time.monotonic()
for _ in range(n):
    c = socket.create_connection((host, 5301)); c.close()
print(n / (time.monotonic() - t))
`;

/** The median of xs. */
export const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
/** A figure for the table: two decimals below 10, none above. */
export const fmt = (x: number) => x.toFixed(x < 10 ? 2 : 0);
