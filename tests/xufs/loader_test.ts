/**
 * Libraries under the mount reach the dynamic loader (libxufs_audit.so, LD_AUDIT): python3's
 * ctypes loads a shared object built into A's export by a relative path, by its path under
 * ~/xufs-rhome and through LD_LIBRARY_PATH pointing into the mount (the shell's exec gives
 * python3 the cache directory instead); a program in the export finds its library through
 * RUNPATH $ORIGIN/lib. Without the audit library (XUFS_AUDIT=none)
 * the same loads read the cache's unfetched placeholders and fail, which shows what the test
 * checks. Uses `xufs_session --local-export` (the file server in-process, no ssh).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { cli, run, tempDir } from "../helpers.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };

/** A's export: ext.so (answer() = 42), lib/libdep.so (dep() = 7) and prog, which needs libdep.so through RUNPATH $ORIGIN/lib. */
async function buildExport(root: string): Promise<void> {
  Deno.mkdirSync(join(root, "lib"), { recursive: true });
  Deno.writeTextFileSync(join(root, "ext.c"), "int answer(void) { return 42; }\n");
  Deno.writeTextFileSync(join(root, "dep.c"), "int dep(void) { return 7; }\n");
  Deno.writeTextFileSync(join(root, "prog.c"), '#include <stdio.h>\nint dep(void);\nint main(void) { printf("dep=%d\\n", dep()); return 0; }\n');
  for (const [args, what] of [
    [["-shared", "-fPIC", "-o", "ext.so", "ext.c"], "ext.so"],
    [["-shared", "-fPIC", "-o", "lib/libdep.so", "dep.c"], "libdep.so"],
    [["-o", "prog", "prog.c", "-Llib", "-ldep", "-Wl,-rpath,$ORIGIN/lib"], "prog"],
  ] as const) {
    const r = await run("gcc", [...args], { cwd: root, timeoutMs: 60_000 });
    assert.equal(r.code, 0, `${what}: ${r.stderr}`);
  }
}

const SCRIPT = [
  `python3 -c "import ctypes; print('relative', ctypes.CDLL('./ext.so').answer())"`,
  `python3 -c "import ctypes, os; print('absolute', ctypes.CDLL(os.environ['XUFS_MOUNT'] + '/ext.so').answer())"`,
  `./prog`,
  `LD_LIBRARY_PATH="/usr/lib:$XUFS_MOUNT/lib" python3 -c "import ctypes; print('library path', ctypes.CDLL('libdep.so').dep())"`,
].map((l) => `${l} 2>&1`).join("; ");

async function session(exported: string, home: string, env: Record<string, string> = {}) {
  return await cli("xufs_session", ["--local-export", exported, "--", `sh -c '${SCRIPT.replaceAll("'", "'\\''")}'`], {
    // No pre-caching: the libraries are fetched when the loader asks for them, or not at all.
    env: { PATH: "/usr/bin:/bin", HOME: home, SHELL: "/bin/sh", LC_ALL: "C", XUFS_PRECACHE_MAX: "0", ...env },
    timeoutMs: 90_000,
  });
}

Deno.test("xufs loader: dlopen by relative and mount paths, LD_LIBRARY_PATH into the mount and RUNPATH $ORIGIN load libraries of the export", opts, async () => {
  using dir = tempDir();
  const exported = join(dir.path, "exported");
  await buildExport(exported);
  const r = await session(exported, join(dir.path, "home1"));
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.equal(r.stdout, "relative 42\nabsolute 42\ndep=7\nlibrary path 7\n", r.stderr);
  // Without the loader's half, the loader reads placeholders: every one of them fails.
  const without = await session(exported, join(dir.path, "home2"), { XUFS_AUDIT: "none" });
  for (const line of ["relative 42", "absolute 42", "dep=7", "library path 7"]) {
    assert.ok(!without.stdout.includes(line), `${line} without libxufs_audit.so:\n${without.stdout}`);
  }
});
