/**
 * Benchmark (not a test): how soon B's changes are complete on A over a wide-area link. A real
 * sshd on loopback plays host B behind scripts/wan_emulator.ts (50 ms RTT by default); through
 * ussh, B runs `python3 -m venv ~/xufs-rhome/v` (some 1,500 files, 25 MB) and notes when it is
 * done and what it made; the benchmark watches A's export until the same files with the same
 * contents are there. Prints how long the venv took on B, how long after that it was complete on
 * A (the goal: within 10 s), and when ussh returned (it waits for the journal to drain); also
 * the same venv made natively, for scale. Needs root (sshd). Run through xufs_venv.sh.
 *   --rtt-ms 50 --window-kib 512 --rate-mbit 1000 --stripes 4 --runs 1
 */
import { parseArgs } from "node:util";
import { join } from "node:path";
import { run } from "../../tests/helpers.ts";
import { wanHosts } from "./wan_hosts.ts";

const { values: v } = parseArgs({
  args: Deno.args,
  options: {
    "rtt-ms": { type: "string", default: "50" },
    "window-kib": { type: "string", default: "512" },
    "rate-mbit": { type: "string", default: "1000" },
    stripes: { type: "string", default: "4" },
    runs: { type: "string", default: "1" },
  },
});
const RTT = Number(v["rtt-ms"]);
const log = (s: string) => console.error(`[${new Date().toISOString().slice(11, 19)}] ${s}`);
const PATH = "/usr/bin:/bin:/usr/sbin:/sbin";

/** Every file under `root` with its size (cheap, polled), or with its SHA-256: what "the same tree" means. */
async function manifest(root: string, hashes = false): Promise<string> {
  const list = hashes ? "find . -type f -print0 | sort -z | xargs -0 sha256sum" : "find . -type f -printf '%s %p\\n' | sort";
  const r = await run("sh", ["-c", `cd ${root} 2>/dev/null && ${list}`], { timeoutMs: 120_000 });
  return r.stdout;
}

const hosts = await wanHosts("xufs-venv-", { rttMs: RTT, windowKib: Number(v["window-kib"]), rateMbit: Number(v["rate-mbit"]) }, log);
const { dir, sshd, config: cfg, prefix } = hosts;

try {
  const a = join(dir, "ahome"), b = sshd.bHome;
  Deno.mkdirSync(a);
  log("a native venv, for scale");
  const t0 = performance.now();
  const native = await run("/usr/bin/python3", ["-m", "venv", join(dir, "native-venv")], { timeoutMs: 300_000 });
  if (native.code !== 0) throw new Error(`venv: ${native.stderr}`);
  const nativeMs = performance.now() - t0;
  const files = (await manifest(join(dir, "native-venv"))).split("\n").filter(Boolean).length;
  log(`${files} files in a venv`);
  for (let i = 1; i <= Number(v.runs); i++) {
    const name = `v${i}`;
    log(`run ${i}: python3 -m venv on B over ${RTT} ms RTT, ${v.stripes} stripes`);
    // On B: the venv, then the times it started and was done (ms, outside the mount).
    const cmd = `s=$(date +%s%3N); /usr/bin/python3 -m venv ~/xufs-rhome/${name} && e=$(date +%s%3N) && echo "$s $e" > ~/venv-times.tmp && ` +
      `mv ~/venv-times.tmp ~/venv-times`;
    try {
      Deno.removeSync(join(b, "venv-times"));
    } catch { /* first run */ }
    const started = Date.now();
    const ussh = run(join(prefix, "bin", "ussh"), ["-F", cfg, "hostb", cmd], {
      env: { HOME: a, PATH, XUFS_STRIPES: v.stripes! },
      cwd: a,
      timeoutMs: 1_800_000,
    }).then((r) => ({ ...r, at: Date.now() }));
    // A's side: poll until the tree on A is what B made.
    let completeAt = 0;
    let exited: { code: number; stderr: string; at: number } | undefined;
    ussh.then((r) => (exited = r));
    // What B made, read from B's cache tree (not through the mount, which would delay it).
    let sizes = "", hashes = "";
    while (!completeAt && Date.now() - started < 1_800_000) {
      if (!sizes) {
        try {
          Deno.statSync(join(b, "venv-times"));
          const mine = (await run("sh", ["-c", `ls -d ${b}/.xufs/cache/*/tree/${name}`])).stdout.trim();
          [sizes, hashes] = [await manifest(mine), await manifest(mine, true)];
        } catch { /* not done yet */ }
      }
      const seen = Date.now();
      if (sizes && (await manifest(join(a, name))) === sizes && (await manifest(join(a, name), true)) === hashes) completeAt = seen;
      else if (exited && !sizes) throw new Error(`ussh exited ${exited.code} before B was done: ${exited.stderr}`);
      else if (exited && seen - exited.at > 5000) break; // ussh is gone, and A is not complete: it left changes behind
      else await new Promise((r) => setTimeout(r, 100));
    }
    const done = await ussh;
    if (done.code !== 0) throw new Error(`ussh exited ${done.code}: ${done.stderr}`);
    const [s, e] = Deno.readTextFileSync(join(b, "venv-times")).trim().split(" ").map(Number);
    const late = completeAt - e;
    const onA = completeAt
      ? `complete on A ${(late / 1000).toFixed(1)} s after B was done (goal: within 10 s: ${late <= 10_000 ? "met" : "missed"})`
      : `never complete on A: ${(await manifest(join(a, name))).split("\n").filter(Boolean).length} of ${files} files there when ussh returned`;
    console.log(
      `run ${i}: ${files} files; venv on B ${((e - s) / 1000).toFixed(1)} s (native ${(nativeMs / 1000).toFixed(1)} s, ` +
        `${((e - s) / nativeMs).toFixed(1)}x); ${onA}; ussh returned ${((done.at - e) / 1000).toFixed(1)} s after`,
    );
    const drain = done.stderr.match(/xufs: writing back [^\n]*/g);
    if (drain) console.log(`  progress line at exit, first: ${drain[0]}`);
  }
  console.log(`XUFS venv over an emulated WAN: RTT ${RTT} ms, window ${v["window-kib"]} KiB, rate ${v["rate-mbit"]} Mbit/s per connection, ${v.stripes} stripes`);
} finally {
  await hosts.close();
}
