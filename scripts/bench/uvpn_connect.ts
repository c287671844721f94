/**
 * The benchmark behind scripts/bench/uvpn_connect.sh (issue 12): on a two-subnet overlay on
 * loopback (tests/helpers.ts's Overlay),
 *   1. connection set-up rate: a python3 asyncio client with 32 connects in flight does N short
 *      connections (connect, 1 byte each way, close) to a python3 asyncio server, natively
 *      (127.0.0.1), under libuvpn.so and under the seccomp supervisor, within one subnet (one
 *      router) and across both (two routers and a session);
 *   2. sustained rate: RATE connections per second to one server for SECONDS, through one router
 *      (two carry less than 500/s until issue 13), counting every failure (the old replay caches
 *      dropped connections past 8,192 per 600 s);
 *   3. idle cost: 1,000 and 10,000 open idle overlay connections across subnets: each router's
 *      RSS per session and its CPU while idle (10 s), the routers started fresh for each size.
 *   Phase 1 also prints each router's CPU per connection (all its threads, user + system).
 * Prints a table and ratios against native measured in the same run.
 */
import { Overlay, Proc, spawnCli, tempDir } from "../../tests/helpers.ts";

type Mode = "native" | "preload" | "seccomp";

const N = Number(Deno.args[0] ?? 20000);
const SKIP_RATES = Deno.env.get("SKIP_RATES") === "1"; // only phases 2 and 3
/** Connections in flight at once in phase 1 (INFLIGHT=1: one after the other, i.e. the latency of one). */
const INFLIGHT = Number(Deno.env.get("INFLIGHT") ?? 32);
const SUSTAIN_S = Number(Deno.args[1] ?? 600);
const RATE = Number(Deno.args[2] ?? 500);
const IDLE = (Deno.args[3] ?? "1000,10000").split(",").map(Number).filter((n) => n > 0);
/** MODES=preload (a comma list): only these modes in phase 1; PATHS=two (one, two): only these paths. */
const MODES = (Deno.env.get("MODES") ?? "native,preload,seccomp").split(",") as Mode[];
const PATHS = (Deno.env.get("PATHS") ?? "one,two").split(",");

const SERVER = `
import asyncio, os, resource, sys
_h = resource.getrlimit(resource.RLIMIT_NOFILE)[1]; resource.setrlimit(resource.RLIMIT_NOFILE, (_h, _h))
host = os.environ.get("UVPN_SRC_ADDR", "127.0.0.1")
hold = sys.argv[1] == "hold"
async def serve(r, w):
    if hold:
        await r.read(1)  # idle until the client closes
    else:
        d = await r.read(1)
        if d: w.write(d); await w.drain()
    w.close()
async def main():
    s = await asyncio.start_server(serve, host, 7300, backlog=4096)
    print("ready", flush=True)
    await s.serve_forever()
asyncio.run(main())
`;

const CLIENT = `
import asyncio, resource, sys, time
_h = resource.getrlimit(resource.RLIMIT_NOFILE)[1]; resource.setrlimit(resource.RLIMIT_NOFILE, (_h, _h))
host, mode, n, arg = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
fails = 0
async def one():
    global fails
    try:
        r, w = await asyncio.wait_for(asyncio.open_connection(host, 7300), 30)
        w.write(b"x"); await w.drain()
        if await asyncio.wait_for(r.read(1), 30) != b"x": fails += 1
        w.close()
    except Exception as e:
        fails += 1
        if fails < 5: print("failure:", repr(e), file=sys.stderr, flush=True)
async def burst():   # n connections, arg in flight at once
    sem = asyncio.Semaphore(int(arg))
    async def gated():
        async with sem: await one()
    t = time.monotonic()
    await asyncio.gather(*(gated() for _ in range(n)))
    print("rate", n / (time.monotonic() - t), "fails", fails, flush=True)
async def paced():   # arg connections per second for n seconds
    tasks, t0, i = [], time.monotonic(), 0
    while time.monotonic() - t0 < n:
        due = t0 + i / arg
        if due > time.monotonic(): await asyncio.sleep(due - time.monotonic())
        tasks.append(asyncio.create_task(one())); i += 1
        if len(tasks) > 4096: tasks = [x for x in tasks if not x.done()]
    await asyncio.gather(*tasks)
    print("sent", i, "fails", fails, "rate", i / (time.monotonic() - t0), flush=True)
async def hold():    # n idle connections, open until the process is stopped
    conns = []
    for k in range(0, n, 32):
        conns += await asyncio.gather(*(asyncio.open_connection(host, 7300) for _ in range(min(32, n - k))))
    print("open", len(conns), flush=True)
    await asyncio.sleep(86400)
asyncio.run({"burst": burst, "paced": paced, "hold": hold}[mode]())
`;



function inOverlay(o: Overlay, s: Overlay["a"], mode: Mode, argv: string[], stdin?: string): Proc {
  if (mode === "native") return new Proc(argv[0], argv.slice(1), { stdin });
  return spawnCli("uvpn_register", ["-r", "--mode", mode, "--", ...argv], { env: o.homeEnv(s), stdin });
}

async function server(o: Overlay, s: Overlay["a"], mode: Mode, kind: string): Promise<{ p: Proc; addr: string }> {
  const p = inOverlay(o, s, mode, ["python3", "-c", SERVER, kind]);
  const addr = mode === "native" ? "127.0.0.1" : (await p.waitFor(/Leased virtual address (\S+)/))[1];
  await p.waitFor(/ready/, 30_000);
  if (mode !== "native") await s.router!.waitFor(new RegExp(`listener ${addr.replaceAll(".", "\\.")}:7300 is at`));
  return { p, addr };
}

async function client(o: Overlay, s: Overlay["a"], mode: Mode, args: string[], timeoutMs: number): Promise<string> {
  const p = inOverlay(o, s, mode, ["python3", "-c", CLIENT, ...args]);
  const r = await p.result(timeoutMs);
  if (r.code !== 0 || / fails [1-9]/.test(r.stdout)) throw new Error(`client ${mode} ${args.join(" ")} failed: ${r.stdout.slice(-500)}${r.stderr.slice(-2000)}`);
  return r.stdout;
}

/** RSS (KiB) and CPU ticks (user+system) of a pid. */
function usage(pid: number): { rssKiB: number; ticks: number } {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`).split(") ")[1].split(" ");
  return { rssKiB: Number(status.match(/VmRSS:\s+(\d+)/)![1]), ticks: Number(stat[11]) + Number(stat[12]) };
}

const out: string[] = [];
const say = (line: string) => {
  console.log(line);
  out.push(line);
};

using dir = tempDir("myrt-bench-");
{
  const o = new Overlay(dir.path);
  await o.start();
  try {
    if (!SKIP_RATES) say(`1. connection set-up: ${N} connections (connect, 1 byte each way, close), ${INFLIGHT} in flight, python3 asyncio both ends`);
    if (!SKIP_RATES) say(["", "native", "preload", "seccomp", "preload/native", "seccomp/native"].join("\t"));
    const paths = ([["one", "one router (same subnet)", o.b], ["two", "two routers (across subnets)", o.a]] as const).filter((p) => PATHS.includes(p[0]));
    for (const [, label, cs] of SKIP_RATES ? [] : paths) {
      const rates: Record<Mode, number> = { native: 0, preload: 0, seccomp: 0 };
      const cpu: string[] = [];
      for (const mode of MODES) {
        const s = await server(o, o.b, mode === "seccomp" ? "seccomp" : mode, "echo");
        try {
          const before = [usage(o.a.router!.pid), usage(o.b.router!.pid)];
          const text = await client(o, cs, mode, [s.addr, "burst", String(N), String(INFLIGHT)], 600_000);
          const after = [usage(o.a.router!.pid), usage(o.b.router!.pid)];
          const m = text.match(/rate ([\d.]+) fails (\d+)/)!;
          if (Number(m[2])) throw new Error(`${m[2]} failed connections (${mode}, ${label})`);
          rates[mode] = Number(m[1]);
          // Router CPU (all threads, user + system, USER_HZ ticks of 10 ms) per connection.
          const ms = (i: number) => (((after[i].ticks - before[i].ticks) * 10) / N).toFixed(3);
          if (mode !== "native") cpu.push(`${mode}: router A ${ms(0)} ms, router B ${ms(1)} ms`);
        } finally {
          await s.p.stop();
        }
      }
      say([label + " (connections/s)", ...(["native", "preload", "seccomp"] as Mode[]).map((m) => rates[m].toFixed(0)),
        (rates.preload / rates.native).toFixed(3), (rates.seccomp / rates.native).toFixed(3)].join("\t"));
      if (cpu.length) say(`${label}: router CPU per connection (all threads): ${cpu.join("; ")}`);
      if (INFLIGHT === 1) say([label + " (ms per connection)", ...(["native", "preload", "seccomp"] as Mode[]).map((m) => (1000 / rates[m]).toFixed(2))].join("\t"));
    }
    if (SUSTAIN_S > 0) {
      const s = await server(o, o.b, "preload", "echo");
      try {
        // Through one router: two routers carry less than this rate until issue 13 multiplexes
        // sessions (see the set-up rates above).
        const text = await client(o, o.b, "preload", [s.addr, "paced", String(SUSTAIN_S), String(RATE)], (SUSTAIN_S + 300) * 1000);
        const m = text.match(/sent (\d+) fails (\d+) rate ([\d.]+)/)!;
        say(`2. sustained: ${RATE}/s asked for ${SUSTAIN_S} s to one server through one router (preload): ${m[1]} connections at ${Number(m[3]).toFixed(0)}/s, ${m[2]} lost`);
      } finally {
        await s.p.stop();
      }
    }
  } finally {
    await o.stop();
  }
}
for (const n of IDLE) {
  using d = tempDir("myrt-bench-idle-");
  const o = new Overlay(d.path);
  await o.start();
  try {
    const base = [usage(o.a.router!.pid), usage(o.b.router!.pid)];
    const s = await server(o, o.b, "preload", "hold");
    const c = inOverlay(o, o.a, "preload", ["python3", "-c", CLIENT, s.addr, "hold", String(n), "0"]);
    try {
      await c.waitFor(new RegExp(`open ${n}`), 600_000);
      await new Promise((r) => setTimeout(r, 3000)); // settle
      const before = [usage(o.a.router!.pid), usage(o.b.router!.pid)];
      const t = Date.now();
      await new Promise((r) => setTimeout(r, 10_000));
      const after = [usage(o.a.router!.pid), usage(o.b.router!.pid)];
      const secs = (Date.now() - t) / 1000;
      const hz = 100; // USER_HZ
      for (const [i, name] of ["A (client side)", "B (server side)"].entries()) {
        const perSession = ((before[i].rssKiB - base[i].rssKiB) / n).toFixed(1);
        const cpu = (((after[i].ticks - before[i].ticks) / hz / secs) * 100).toFixed(2);
        say(`3. idle ${n} sessions, router ${name}: RSS ${before[i].rssKiB} KiB (${perSession} KiB per session over ${base[i].rssKiB} KiB), CPU while idle ${cpu} % of a core`);
      }
    } finally {
      await c.stop();
      await s.p.stop();
    }
  } finally {
    await o.stop();
  }
}
console.log("\nsummary\n" + out.join("\n"));
