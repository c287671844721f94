/**
 * Confinement through ussh against a real sshd, in both transports (issue 11, case 7): a
 * directory of the export swapped with a symlink to outside while B writes and reads through it
 * never lets a byte out of (or into) the export; on B, a symlink that climbs out of the mount
 * resolves as the user sees it, never into the cache manager's own files.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { Proc } from "../helpers.ts";
import { TRANSPORTS, usshTest, withHosts } from "./hosts.ts";

/** Swaps `d` and `dswap` (a symlink to ../outside) in DIR with renameat2(RENAME_EXCHANGE) until STOPFILE appears (60 s at most). */
const RACER = [
  "import ctypes, os, sys, time",
  "libc = ctypes.CDLL(None, use_errno=True)",
  "os.chdir(sys.argv[1])",
  "end = time.time() + 60",
  "n = 0",
  "while time.time() < end and not os.path.exists(sys.argv[2]):",
  "    for _ in range(2000):",
  "        if libc.renameat2(-100, b'd', -100, b'dswap', 2) != 0: sys.exit('renameat2: %d' % ctypes.get_errno())",
  "        n += 1",
  "if not os.path.isdir('d') or os.path.islink('d'): libc.renameat2(-100, b'd', -100, b'dswap', 2)",
  "print(n)",
].join("\n");

for (const notun of TRANSPORTS) {
  const t = notun ? " (--notun)" : "";
  Deno.test({
    ...usshTest,
    name: `xufs confinement${t}: a directory swapped with a symlink to outside never lets B read or write outside the export`,
    async fn() {
      await withHosts(async (h) => {
        const outside = join(h.dir, "outside");
        Deno.mkdirSync(outside);
        Deno.writeTextFileSync(join(outside, "secret"), "TOP SECRET outside the export\n");
        Deno.mkdirSync(join(h.a, "d"));
        Deno.writeTextFileSync(join(h.a, "d", "inside"), "inside the export\n");
        Deno.symlinkSync("../outside", join(h.a, "dswap"));
        const stop = join(h.dir, "stop-racer");
        const racer = new Proc("python3", ["-c", RACER, h.a, stop]);
        try {
          const r = await h.ussh(
            "cd ~/xufs-rhome && for i in $(seq 40); do echo $i > d/f$i; cat d/secret d/inside; ls d; cat dswap/secret; done 2>/dev/null; true",
            { notun, timeoutMs: 180_000 },
          );
          assert.equal(r.code, 0, r.stderr);
          assert.doesNotMatch(r.stdout, /TOP SECRET/);
          assert.doesNotMatch(r.stdout, /^secret$/m);
        } finally {
          Deno.writeTextFileSync(stop, "");
          const done = await racer.result(90_000);
          assert.match(done.stdout, /^\d+\n$/, done.stderr);
          assert.ok(Number(done.stdout) > 1000, `swaps: ${done.stdout}`);
        }
        assert.deepEqual([...Deno.readDirSync(outside)].map((e) => e.name), ["secret"]);
        assert.equal(Deno.readTextFileSync(join(outside, "secret")), "TOP SECRET outside the export\n");
      });
    },
  });

  Deno.test({
    ...usshTest,
    name: `xufs confinement${t}: on B a symlink climbing out of the mount never reaches the cache manager's files`,
    async fn() {
      await withHosts(async (h) => {
        Deno.writeTextFileSync(join(h.a, "f"), "in the export\n");
        Deno.symlinkSync("../meta.json", join(h.a, "peek"));
        Deno.symlinkSync("../queue", join(h.a, "peekq"));
        Deno.symlinkSync("..", join(h.a, "up"));
        Deno.writeTextFileSync(h.b("meta.json"), "B's own meta.json, beside the mount\n");
        const warm = await h.ussh("cat ~/xufs-rhome/f", { notun });
        assert.equal(warm.code, 0, warm.stderr);
        const r = await h.ussh(
          "cd ~/xufs-rhome && cat peek; cat up/meta.json; ls peekq/ 2>&1 | grep -c -v 'No such'; ls up/ | grep -c -x -e tree -e queue; " +
            "echo overwritten > peek; cat ~/meta.json",
          { notun },
        );
        assert.equal(r.stdout, "B's own meta.json, beside the mount\n".repeat(2) + "0\n0\noverwritten\n", r.stderr);
      });
    },
  });
}
