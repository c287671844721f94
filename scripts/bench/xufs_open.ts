/**
 * Benchmark (not a test): the cost of open() and stat() of cached files through the mount, on
 * one machine (`xufs_session --local-export`: A's file server in-process, no ssh, no WAN). N small
 * files are made in the export and read once through the mount (cached); then python3 times
 * N open+close and N stat calls, best of 5 rounds, through the mount, on the export directly in
 * the same process (libxufs.so loaded, the path outside the mount), and in a process without
 * libxufs.so. Issue 15's goal: an open of a cached file within 1.5 x of a direct open.
 *   ./scripts/bench/xufs_open.sh [N=900]
 */
import { join } from "node:path";
import { cli, run, tempDir } from "../../tests/helpers.ts";

const N = Number(Deno.args[0] ?? 900);
const TIMER = `
import os, sys, time
n, root = int(sys.argv[1]), sys.argv[2]
names = ["d/f%d" % i for i in range(n)]
def best(call):
    b = 1e9
    for _ in range(5):
        t0 = time.perf_counter()
        for nm in names: call(os.path.join(root, nm))
        b = min(b, time.perf_counter() - t0)
    return b
for nm in names: open(os.path.join(root, nm)).read()
print(sys.argv[3], "open", best(lambda p: os.close(os.open(p, os.O_RDONLY))))
print(sys.argv[3], "stat", best(os.stat))
`;

using dir = tempDir();
const exported = join(dir.path, "export");
Deno.mkdirSync(join(exported, "d"), { recursive: true });
for (let i = 0; i < N; i++) Deno.writeTextFileSync(join(exported, "d", `f${i}`), `file ${i}\n`);
Deno.writeTextFileSync(join(dir.path, "timer.py"), TIMER);
const py = join(dir.path, "timer.py");
const inside = `python3 ${py} ${N} "$XUFS_MOUNT" mount && python3 ${py} ${N} ${exported} direct-in-session`;
const r = await cli("xufs_session", ["--local-export", exported, "--", `sh -c '${inside}'`], {
  env: { PATH: "/usr/bin:/bin", HOME: join(dir.path, "home"), SHELL: "/bin/sh", LC_ALL: "C" },
  timeoutMs: 300_000,
});
if (r.code !== 0) throw new Error(`xufs_session: ${r.stderr}`);
const plain = await run("python3", [py, String(N), exported, "direct"]);
const t = new Map<string, number>();
for (const m of (r.stdout + plain.stdout).matchAll(/^(\S+) (open|stat) ([\d.e-]+)$/gm)) t.set(`${m[1]} ${m[2]}`, Number(m[3]));
console.log(`xufs_open: ${N} cached files, best of 5 rounds (${new Date().toISOString().slice(0, 10)})`);
for (const op of ["open", "stat"]) {
  const us = (k: string) => (t.get(`${k} ${op}`)! / N) * 1e6;
  console.log(`  ${op}: mount ${us("mount").toFixed(1)} us, direct in the session ${us("direct-in-session").toFixed(1)} us, direct ${us("direct").toFixed(1)} us -> mount/direct ${(us("mount") / us("direct")).toFixed(2)} x`);
}
