/**
 * What the static-program tests share (tests/xufs/static_test.ts through ussh and sshd,
 * tests/xufs/static_local_test.ts through a local export): A's tree, the static busybox steps B
 * runs under the mount, what they print, the checks of what reached A, and the builds of the static
 * programs (Go, C) the tests store in A's export.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { run, tempDir } from "../helpers.ts";

/** A file of 3,000 lines, larger than a page: a placeholder read as zeros cannot pass for it. */
export const DATA = Array.from({ length: 3000 }, (_, i) => `line ${i} of data.txt on A\n`).join("");

/** Static busybox steps under ~/xufs-rhome; `extra` steps (e.g. a Go program) go before the end. */
export function busyboxScript(extra: string[] = []): string {
  return [
    "cd ~/xufs-rhome",
    "echo '-- cat'; /bin/busybox cat data.txt",
    "echo '-- sh'; /bin/busybox sh -c 'echo x > f'",
    "echo '-- ls'; /bin/busybox ls sub",
    "echo '-- cp'; /bin/busybox cp data.txt copy.txt",
    "echo '-- abs'; /bin/busybox cat ~/xufs-rhome/sub/in.txt",
    ...extra,
    "/bin/busybox mkdir made && /bin/busybox mv old.txt made/new.txt && /bin/busybox rm gone.txt",
    "echo '-- end'",
  ].join("; ");
}

/** What busyboxScript prints when every step sees A's tree (`extra`: the extra steps' output). */
export function busyboxOutput(extra = ""): string {
  return `-- cat\n${DATA}-- sh\n-- ls\nin.txt\nother.txt\n-- cp\n-- abs\nin sub\n${extra}-- end\n`;
}

/** A's tree for busyboxScript (again after a first session: what it wrote is removed). */
export function seedTree(a: string): void {
  for (const n of ["f", "copy.txt", "made"]) if (exists(join(a, n))) Deno.removeSync(join(a, n), { recursive: true });
  Deno.writeTextFileSync(join(a, "data.txt"), DATA);
  Deno.mkdirSync(join(a, "sub"), { recursive: true });
  Deno.writeTextFileSync(join(a, "sub", "in.txt"), "in sub\n");
  Deno.writeTextFileSync(join(a, "sub", "other.txt"), "other\n");
  Deno.writeTextFileSync(join(a, "old.txt"), "renamed by busybox mv\n");
  Deno.writeTextFileSync(join(a, "gone.txt"), "removed by busybox rm\n");
}

/** The writes of busyboxScript reached A: the redirection, the copy, mkdir, rename and unlink. */
export function assertReachedA(a: string): void {
  assert.equal(Deno.readTextFileSync(join(a, "f")), "x\n");
  assert.equal(Deno.readTextFileSync(join(a, "copy.txt")), DATA);
  assert.equal(Deno.readTextFileSync(join(a, "made", "new.txt")), "renamed by busybox mv\n");
  assert.ok(!exists(join(a, "old.txt")) && !exists(join(a, "gone.txt")));
}

/**
 * The same steps without the supervisor (XUFS_STATIC=off, the code before it): placeholders read
 * as NUL bytes, the directory not listed yet is empty, absolute paths meet the empty mount point,
 * and nothing written reaches A.
 */
export function assertNothingReachedA(a: string, stdout: string, written: string[] = []): void {
  assert.ok(stdout.startsWith("-- cat\n\0\0\0"), `no supervisor: cat reads zeros:\n${stdout.slice(0, 200)}`);
  assert.ok(stdout.includes("-- ls\n-- cp\n"), stdout.slice(-400));
  assert.ok(!stdout.includes("in sub"), stdout.slice(-400));
  for (const n of ["f", "copy.txt", "made", ...written]) assert.ok(!exists(join(a, n)), `${n} reached A without the supervisor`);
  assert.ok(exists(join(a, "old.txt")) && exists(join(a, "gone.txt")), "a rename or removal reached A without the supervisor");
}

/** Whether a path exists (lstat). */
export function exists(p: string): boolean {
  try {
    Deno.lstatSync(p);
    return true;
  } catch {
    return false;
  }
}

/** Builds the static Go program `source` (package main) into `out` (the Go build cache of the user running the tests). */
export async function buildGo(source: string, out: string): Promise<void> {
  using dir = tempDir();
  Deno.writeTextFileSync(join(dir.path, "main.go"), source);
  Deno.writeTextFileSync(join(dir.path, "go.mod"), "module staticprog\n\ngo 1.18\n");
  const r = await run("go", ["build", "-o", out, "."], {
    cwd: dir.path,
    env: { CGO_ENABLED: "0", GOFLAGS: "", GOTOOLCHAIN: "local" },
    timeoutMs: 120_000,
  });
  assert.equal(r.code, 0, `go build: ${r.stderr}`);
}

/** Builds the C program `source` statically (`cc -static`) into `out`. */
export async function buildStaticC(source: string, out: string): Promise<void> {
  using dir = tempDir();
  Deno.writeTextFileSync(join(dir.path, "prog.c"), source);
  const r = await run("cc", ["-static", "-O1", "-o", out, join(dir.path, "prog.c")], { timeoutMs: 60_000 });
  assert.equal(r.code, 0, `cc -static: ${r.stderr}`);
}
