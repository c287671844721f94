/**
 * Static programs under the mount without ssh (issue 15): `xufs_session --local-export` serves A's
 * tree from the session's own process, so the seccomp supervisor's XUFS mode
 * (native/supervisor/xufs.c) runs here exactly as on B — and, unlike the ussh suite, in the
 * sanitizer pass (ASan + UBSan, gcov), which is why these tests exist beside
 * tests/xufs/static_test.ts. Static busybox reads unfetched placeholders, lists a directory not
 * listed yet, redirects, copies, follows an absolute path into the mount, makes a directory,
 * renames and removes, and its getcwd shows the mount path; a static login shell runs under the
 * supervisor. Each has a control without
 * the supervisor (`XUFS_STATIC=off`, as before it) that reads NUL bytes and writes nothing to A,
 * which shows the test can fail.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { cli, type RunResult, tempDir } from "../helpers.ts";
import { assertNothingReachedA, assertReachedA, busyboxOutput, busyboxScript, DATA, exists, seedTree } from "./static_tree.ts";

/** One session on `exported` running `script` in sh; B's home is `home`; pre-caching off. */
function session(exported: string, home: string, script: string, env: Record<string, string> = {}): Promise<RunResult> {
  return cli("xufs_session", ["--local-export", exported, "--", script], {
    env: { PATH: "/usr/bin:/bin", HOME: home, SHELL: "/bin/sh", LC_ALL: "C", XUFS_PRECACHE_MAX: "0", ...env },
    timeoutMs: 60_000,
  });
}

Deno.test("xufs static (local export): static busybox reads A's files and its writes, mkdir, mv and rm reach A", async () => {
  using dir = tempDir();
  const exported = join(dir.path, "exported");
  Deno.mkdirSync(exported);
  seedTree(exported);
  // (and busybox pwd -P, which asks the kernel's getcwd, shows the mount path, not the cache's)
  const script = busyboxScript(["echo '-- pwd'; cd sub && /bin/busybox pwd -P; cd .."]);
  const home = join(dir.path, "home1");
  const r = await session(exported, home, script);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.equal(r.stdout, busyboxOutput(`-- pwd\n${home}/xufs-rhome/sub\n`), r.stderr);
  assertReachedA(exported);

  seedTree(exported);
  const off = await session(exported, join(dir.path, "home2"), script, { XUFS_STATIC: "off" });
  assertNothingReachedA(exported, off.stdout);
});

Deno.test("xufs static (local export): a static login shell (SHELL=busybox sh) runs under the supervisor: it reads A's file and its redirection reaches A", async () => {
  using dir = tempDir();
  const exported = join(dir.path, "exported");
  Deno.mkdirSync(exported);
  Deno.writeTextFileSync(join(exported, "data.txt"), DATA);
  const sh = join(dir.path, "sh");
  Deno.symlinkSync("/bin/busybox", sh);
  const r = await session(exported, join(dir.path, "home1"), "cat data.txt; echo y > g", { SHELL: sh });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, DATA, r.stderr);
  assert.equal(Deno.readTextFileSync(join(exported, "g")), "y\n");
  // Started as it is (XUFS_STATIC=off, as before): zeros, and nothing reaches A.
  Deno.removeSync(join(exported, "g"));
  const off = await session(exported, join(dir.path, "home2"), "cat data.txt; echo y > g", { SHELL: sh, XUFS_STATIC: "off" });
  assert.ok(off.stdout.startsWith("\0\0\0"), off.stdout.slice(0, 100));
  assert.ok(!exists(join(exported, "g")), "g reached A without the supervisor");
});
