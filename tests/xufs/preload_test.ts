/**
 * libxufs.so on its own, without a cache manager: inert without the XUFS_* variables, the mount
 * shown by getcwd/realpath while the real cwd is the cache, and EIO (not a hang) under the mount
 * when the manager cannot be reached, while paths elsewhere pass through untouched.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { PRELOAD_XUFS, run, tempDir } from "../helpers.ts";


function layout(dir: string) {
  const mount = join(dir, "xufs-rhome");
  const cache = join(dir, "cache/tree");
  Deno.mkdirSync(mount);
  Deno.mkdirSync(join(cache, "sub"), { recursive: true });
  Deno.writeTextFileSync(join(cache, "sub/f.txt"), "cached\n");
  Deno.writeTextFileSync(join(dir, "outside.txt"), "outside\n");
  const env = { LD_PRELOAD: PRELOAD_XUFS, XUFS_MOUNT: mount, XUFS_CACHE: cache, XUFS_SOCK: join(dir, "no-manager.sock") };
  return { mount, cache, env };
}

Deno.test("xufs preload: inert without XUFS_MOUNT/XUFS_CACHE/XUFS_SOCK", async () => {
  using d = tempDir();
  Deno.writeTextFileSync(join(d.path, "f"), "plain\n");
  const r = await run("/bin/sh", ["-c", `cd ${d.path} && /bin/pwd && cat f && ls`], {
    env: { LD_PRELOAD: PRELOAD_XUFS, XUFS_MOUNT: "", XUFS_CACHE: "", XUFS_SOCK: "" },
  });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, `${d.path}\nplain\nf\n`);
  assert.equal(r.stderr, "");
});

Deno.test("xufs preload: the cwd in the cache shows as the mount path", async () => {
  using d = tempDir();
  const { mount, cache, env } = layout(d.path);
  const py = "import os; print(os.getcwd()); print(os.path.realpath('.'))";
  // /usr/bin/python3: a pyenv shim would cd to the mount path, which needs the manager
  const r = await run("/bin/sh", ["-c", `/bin/pwd; pwd -P; /usr/bin/python3 -c "${py}"`], { env, cwd: join(cache, "sub") });
  assert.equal(r.code, 0, r.stderr);
  const want = join(mount, "sub");
  assert.deepEqual(r.stdout.trim().split("\n"), [want, want, want, want]);
});

Deno.test("xufs preload: manager unreachable -> EIO under the mount, others pass through", async () => {
  using d = tempDir();
  const { mount, env } = layout(d.path);
  const t0 = Date.now();
  const r = await run("/bin/sh", ["-c", `cat ${mount}/sub/f.txt; echo "rc=$?"; cat ${d.path}/outside.txt`], { env });
  assert.ok(Date.now() - t0 < 10_000);
  assert.match(r.stderr, /Input\/output error/);
  assert.equal(r.stdout, "rc=1\noutside\n");
});

Deno.test("xufs preload: '..' from the mount root leaves the mount, not the cache", async () => {
  using d = tempDir();
  const { cache, env } = layout(d.path);
  const r = await run("/bin/sh", ["-c", "cat ../outside.txt && ls .."], { env, cwd: cache });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, "outside\ncache\noutside.txt\nxufs-rhome\n");
});
