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
 * which shows the test can fail. Static programs also chdir to, execve and execveat absolute paths
 * under the mount (the supervisor rewrites them to its short link to the cache: before, the kernel
 * met the empty mount point) and execveat a name relative to a directory descriptor in the cache.
 * A file a static program read is not fetched again by the next one's supervisor (this failed
 * in the sanitizer pass only: there the supervisor's identity reads went to libxufs.so's
 * getxattr wrappers, which hide the record).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { cli, type RunResult, tempDir } from "../helpers.ts";
import { assertNothingReachedA, assertReachedA, buildGo, buildStaticC, busyboxOutput, busyboxScript, DATA, exists, seedTree } from "./static_tree.ts";

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

/** A static C program: `prog ARGS` prints its ARGS; `prog execveat DIR NAME ARGS` runs NAME (with
 * argv NAME ARGS) by execveat, relative to DIR opened O_PATH (DIR "": AT_FDCWD); `prog execfn`
 * prints the path it was executed by (AT_EXECFN); `prog literal ARGS` runs `literal` (a string
 * literal in the program's read-only data) by execve; `prog reopen FILE` opens FILE with O_PATH,
 * then reads it through /proc/self/fd. */
const execProg = (literal: string) => `#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/syscall.h>
#include <unistd.h>
extern char **environ;
int main(int argc, char **argv)
{
    if (argc >= 4 && strcmp(argv[1], "execveat") == 0) {
        int d = argv[2][0] ? open(argv[2], O_PATH | O_DIRECTORY) : AT_FDCWD;
        if (d < 0 && d != AT_FDCWD) { perror(argv[2]); return 3; }
        syscall(SYS_execveat, d, argv[3], argv + 3, environ, 0);
        perror("execveat");
        return 4;
    }
    if (argc >= 2 && strcmp(argv[1], "literal") == 0) {
        execve("${literal}", argv + 1, environ);
        perror("execve");
        return 5;
    }
    if (argc == 3 && strcmp(argv[1], "reopen") == 0) {
        char fdpath[64], buf[256];
        int p = open(argv[2], O_PATH);
        if (p < 0) { perror(argv[2]); return 6; }
        snprintf(fdpath, sizeof fdpath, "/proc/self/fd/%d", p);
        int f = open(fdpath, O_RDONLY);
        ssize_t n = f < 0 ? -1 : read(f, buf, sizeof buf);
        if (n < 0) { perror(fdpath); return 7; }
        fwrite(buf, 1, (size_t)n, stdout);
        return 0;
    }
    if (argc == 2 && strcmp(argv[1], "execfn") == 0) {
        printf("execfn %s\\n", (const char *)getauxval(AT_EXECFN));
        return 0;
    }
    printf("prog ran:");
    for (int i = 1; i < argc; i++) printf(" %s", argv[i]);
    printf("\\n");
    return 0;
}
`;

/** A static Go program: `gox DIR PROG` chdirs to DIR, prints file.txt there and the getcwd system
 * call's answer, then runs PROG (exec.Command, an absolute path) and prints its output. */
const GO_EXEC = `package main

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"
)

func main() {
	if err := os.Chdir(os.Args[1]); err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	b, err := os.ReadFile("file.txt")
	if err != nil {
		fmt.Println(err)
		os.Exit(2)
	}
	wd, _ := syscall.Getwd()
	fmt.Print(string(b), wd, "\\n")
	out, err := exec.Command(os.Args[2], "from", "go").Output()
	if err != nil {
		fmt.Println(err)
		os.Exit(3)
	}
	fmt.Print(string(out))
}
`;

Deno.test("xufs static (local export): static busybox and Go chdir to, execve and execveat absolute paths under the mount", async () => {
  using dir = tempDir();
  const exported = join(dir.path, "exported");
  Deno.mkdirSync(join(exported, "dir"), { recursive: true });
  Deno.mkdirSync(join(exported, "bin"));
  Deno.writeTextFileSync(join(exported, "dir", "file.txt"), "file in dir\n");
  Deno.writeTextFileSync(join(exported, "dir", "other.txt"), "other in dir\n");
  // one copy per step, so that each runs a file not fetched yet (an unfetched placeholder)
  const home = join(dir.path, "home");
  const m = `${home}/xufs-rhome`;
  await buildStaticC(execProg(`${m}/bin/prog6`), join(exported, "bin", "prog"));
  for (const n of ["prog2", "prog3", "prog4", "prog5", "prog6"]) Deno.copyFileSync(join(exported, "bin", "prog"), join(exported, "bin", n));
  await buildGo(GO_EXEC, join(exported, "bin", "gox"));
  // each step bounded (before, an O_PATH open under the mount was never answered)
  const step = (name: string, cmd: string) => `echo '-- ${name}'; timeout 20 /bin/busybox sh -c '${cmd}'`;
  const script = [
    step("cd", "cd ~/xufs-rhome/dir && /bin/busybox cat file.txt && /bin/busybox pwd -P"),
    step("exec", `${m}/bin/prog one two`),
    step("execfn", `${m}/bin/prog execfn`),
    step("execveat", `${m}/bin/prog execveat "" ${m}/bin/prog2 three`),
    step("execveat dirfd", `${m}/bin/prog execveat ${m}/bin prog3 four`),
    step("execveat .", `cd ${m}/bin && ./prog execveat . prog5 five`),
    step("literal", `${m}/bin/prog literal six`),
    step("reopen", `${m}/bin/prog reopen ${m}/dir/other.txt`),
    step("go", `${m}/bin/gox ${m}/dir ${m}/bin/prog4`),
    "echo '-- end'",
  ].join("; ");
  const r = await session(exported, home, script);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  // The kernel ran prog by the short path (its AT_EXECFN): MOUNT replaced by the link, padded with
  // slashes to the same length.
  const fn = /^execfn ((\/tmp\/\.x[^/\n]+)\/c\/+bin\/prog)$/m.exec(r.stdout);
  assert.ok(fn, r.stdout);
  assert.equal(fn[1].length, `${m}/bin/prog`.length, fn[1]);
  assert.equal(
    r.stdout.replace(fn[0], "execfn SHORT"),
    `-- cd\nfile in dir\n${m}/dir\n-- exec\nprog ran: one two\n-- execfn\nexecfn SHORT\n-- execveat\nprog ran: three\n` +
      `-- execveat dirfd\nprog ran: four\n-- execveat .\nprog ran: five\n-- literal\nprog ran: six\n-- reopen\nother in dir\n-- go\nfile in dir\n${m}/dir\nprog ran: from go\n-- end\n`,
    r.stderr,
  );
  // The supervisor removed its short link to the cache when it ended.
  assert.ok(!exists(fn[2]), `${fn[2]} is left`);
});

Deno.test("xufs static (local export): a file fetched for one static program is not fetched again for the next (its identity record is read)", async () => {
  using dir = tempDir();
  const exported = join(dir.path, "exported");
  Deno.mkdirSync(exported);
  Deno.writeTextFileSync(join(exported, "data.txt"), DATA);
  // two supervisors (one per static program), each logging its manager requests (UVPN_DEBUG)
  const r = await session(exported, join(dir.path, "home"), "/bin/busybox cat data.txt; /bin/busybox cat data.txt", { UVPN_DEBUG: "1" });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, DATA + DATA, r.stderr);
  const fetches = r.stderr.split("\n").filter((l) => /^uvpn: FETCH data\.txt /.test(l));
  assert.equal(fetches.length, 1, r.stderr);
});
