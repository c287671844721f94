/**
 * Libraries under the mount reach the dynamic loader (libxufs_audit.so, LD_AUDIT): python3's
 * ctypes loads a shared object built into A's export by a relative path, by its path under
 * ~/xufs-rhome and through LD_LIBRARY_PATH pointing into the mount (the shell's exec gives
 * python3 the cache directory instead); a program in the export finds its library through
 * RUNPATH $ORIGIN/lib; a venv in the export imports its C extension module. Without the audit library (XUFS_AUDIT=none)
 * the same loads read the cache's unfetched placeholders and fail, which shows what the test
 * checks. Uses `xufs_session --local-export` (the file server in-process, no ssh).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { cli, run, tempDir } from "../helpers.ts";


/**
 * A's export: ext.so (answer() = 42), lib/libdep.so (dep() = 7), prog, which needs libdep.so
 * through RUNPATH $ORIGIN/lib, and a venv (Debian's python3) whose site-packages hold cext, a
 * C extension module (cext.answer() = 42).
 */
async function buildExport(root: string): Promise<void> {
  Deno.mkdirSync(join(root, "lib"), { recursive: true });
  Deno.writeTextFileSync(join(root, "ext.c"), "int answer(void) { return 42; }\n");
  Deno.writeTextFileSync(join(root, "dep.c"), "int dep(void) { return 7; }\n");
  Deno.writeTextFileSync(join(root, "cext.c"), [
    "#include <Python.h>",
    "static PyObject *answer(PyObject *s, PyObject *a) { return PyLong_FromLong(42); }",
    'static PyMethodDef m[] = {{"answer", answer, METH_NOARGS, ""}, {0}};',
    'static struct PyModuleDef d = {PyModuleDef_HEAD_INIT, "cext", "", -1, m};',
    "PyMODINIT_FUNC PyInit_cext(void) { return PyModule_Create(&d); }",
  ].join("\n") + "\n");
  const py = "/usr/bin/python3";
  const venv = await run(py, ["-m", "venv", "--without-pip", join(root, "venv")], { timeoutMs: 60_000 });
  assert.equal(venv.code, 0, venv.stderr);
  const cfg = await run(py, ["-c", "import sysconfig as s; print(s.get_paths()['include'], s.get_config_var('EXT_SUFFIX'), s.get_python_version())"]);
  const [include, suffix, version] = cfg.stdout.trim().split(" ");
  const site = `venv/lib/python${version}/site-packages`;
  Deno.writeTextFileSync(join(root, "prog.c"), '#include <stdio.h>\nint dep(void);\nint main(void) { printf("dep=%d\\n", dep()); return 0; }\n');
  for (const [args, what] of [
    [["-shared", "-fPIC", "-o", "ext.so", "ext.c"], "ext.so"],
    [["-shared", "-fPIC", "-o", "lib/libdep.so", "dep.c"], "libdep.so"],
    [["-o", "prog", "prog.c", "-Llib", "-ldep", "-Wl,-rpath,$ORIGIN/lib"], "prog"],
    [["-shared", "-fPIC", `-I${include}`, "-o", `${site}/cext${suffix}`, "cext.c"], "cext"],
  ]) {
    const r = await run("gcc", [...args], { cwd: root, timeoutMs: 60_000 });
    assert.equal(r.code, 0, `${what}: ${r.stderr}`);
  }
}

const SCRIPT = [
  `python3 -c "import ctypes; print('relative', ctypes.CDLL('./ext.so').answer())"`,
  `python3 -c "import ctypes, os; print('absolute', ctypes.CDLL(os.environ['XUFS_MOUNT'] + '/ext.so').answer())"`,
  `./prog`,
  `LD_LIBRARY_PATH="/usr/lib:$XUFS_MOUNT/lib" python3 -c "import ctypes; print('library path', ctypes.CDLL('libdep.so').dep())"`,
  `$XUFS_MOUNT/venv/bin/python -c "import sys, cext; print('venv', sys.prefix != sys.base_prefix, cext.answer())"`,
].map((l) => `${l} 2>&1`).join("; ");

async function session(exported: string, home: string, env: Record<string, string> = {}) {
  return await cli("xufs_session", ["--local-export", exported, "--", `sh -c '${SCRIPT.replaceAll("'", "'\\''")}'`], {
    // No pre-caching: the libraries are fetched when the loader asks for them, or not at all.
    env: { PATH: "/usr/bin:/bin", HOME: home, SHELL: "/bin/sh", LC_ALL: "C", XUFS_PRECACHE_MAX: "0", ...env },
    timeoutMs: 90_000,
  });
}

Deno.test("xufs loader: dlopen by relative and mount paths, LD_LIBRARY_PATH into the mount, RUNPATH $ORIGIN and a venv's C extension module load libraries of the export", async () => {
  using dir = tempDir();
  const exported = join(dir.path, "exported");
  await buildExport(exported);
  const r = await session(exported, join(dir.path, "home1"));
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.equal(r.stdout, "relative 42\nabsolute 42\ndep=7\nlibrary path 7\nvenv True 42\n", r.stderr);
  // Without the loader's half, the loader reads placeholders: every one of them fails.
  const without = await session(exported, join(dir.path, "home2"), { XUFS_AUDIT: "none" });
  for (const line of ["relative 42", "absolute 42", "dep=7", "library path 7", "venv True 42"]) {
    assert.ok(!without.stdout.includes(line), `${line} without libxufs_audit.so:\n${without.stdout}`);
  }
});
