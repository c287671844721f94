/**
 * Static programs through ussh against a real sshd (issue 15, "static programs see the same
 * tree"): libxufs.so cannot reach a statically linked program, so its exec wrappers run one under
 * the seccomp supervisor's XUFS mode (`uvpn_supervise --xufs`, native/supervisor/xufs.c). Static
 * busybox (`cat` of an unfetched file, `sh -c 'echo x > f'`, `ls` of a directory not listed yet,
 * `cp`, `cat` by an absolute path under the mount, `mkdir`, `mv`, `rm`) and a static Go program from the export
 * (`CGO_ENABLED=0 go build`, run from the mount: reads an unfetched file, writes a new one) see
 * A's files and their writes reach A. Pre-caching is off, so every file is an unfetched
 * placeholder until a program opens it. Without the supervisor (`XUFS_STATIC=off`, the code
 * before it) the same commands read NUL bytes, list nothing and write nothing to A: the second
 * session checks that, which shows the first one can fail.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { cli, run, tempDir } from "../helpers.ts";
import { usshTest, withHosts } from "./hosts.ts";

const GO_PROGRAM = `package main

import "os"

// gorw IN OUT: prints IN and writes "go wrote: " and IN's content to OUT.
func main() {
	b, err := os.ReadFile(os.Args[1])
	if err != nil {
		os.Stderr.WriteString(err.Error() + "\\n")
		os.Exit(1)
	}
	os.Stdout.Write(b)
	if err := os.WriteFile(os.Args[2], append([]byte("go wrote: "), b...), 0o644); err != nil {
		os.Stderr.WriteString(err.Error() + "\\n")
		os.Exit(2)
	}
}
`;

/** Builds the static Go program into `out` (the Go build cache of the user running the tests). */
async function buildGo(out: string): Promise<void> {
  using dir = tempDir();
  Deno.writeTextFileSync(join(dir.path, "main.go"), GO_PROGRAM);
  Deno.writeTextFileSync(join(dir.path, "go.mod"), "module gorw\n\ngo 1.18\n");
  const r = await run("go", ["build", "-o", out, "."], {
    cwd: dir.path,
    env: { CGO_ENABLED: "0", GOFLAGS: "", GOTOOLCHAIN: "local" },
    timeoutMs: 120_000,
  });
  assert.equal(r.code, 0, `go build: ${r.stderr}`);
}

/** What B runs: each program's output after a marker line. */
const SCRIPT = [
  "cd ~/xufs-rhome",
  "echo '-- cat'; /bin/busybox cat data.txt",
  "echo '-- sh'; /bin/busybox sh -c 'echo x > f'",
  "echo '-- ls'; /bin/busybox ls sub",
  "echo '-- cp'; /bin/busybox cp data.txt copy.txt",
  "echo '-- abs'; /bin/busybox cat ~/xufs-rhome/sub/in.txt",
  "echo '-- go'; ./gorw data2.txt gowrote.txt",
  "/bin/busybox mkdir made && /bin/busybox mv old.txt made/new.txt && /bin/busybox rm gone.txt",
  "echo '-- end'",
].join("; ");

const DATA = Array.from({ length: 3000 }, (_, i) => `line ${i} of data.txt on A\n`).join("");

Deno.test({
  ...usshTest,
  name: "xufs static: static busybox (cat, sh -c 'echo x > f', ls, cp) and a static Go program read A's files and write to A through the mount",
  async fn() {
    await withHosts(async (h) => {
      Deno.writeTextFileSync(join(h.a, "data.txt"), DATA);
      Deno.writeTextFileSync(join(h.a, "data2.txt"), "data2 for the Go program\n");
      Deno.mkdirSync(join(h.a, "sub"));
      Deno.writeTextFileSync(join(h.a, "sub", "in.txt"), "in sub\n");
      Deno.writeTextFileSync(join(h.a, "sub", "other.txt"), "other\n");
      Deno.writeTextFileSync(join(h.a, "old.txt"), "renamed by busybox mv\n");
      Deno.writeTextFileSync(join(h.a, "gone.txt"), "removed by busybox rm\n");
      await buildGo(join(h.a, "gorw"));
      h.bashrc("export XUFS_PRECACHE_MAX=0");

      const r = await h.ussh(SCRIPT);
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.equal(
        r.stdout,
        `-- cat\n${DATA}-- sh\n-- ls\nin.txt\nother.txt\n-- cp\n-- abs\nin sub\n-- go\ndata2 for the Go program\n-- end\n`,
        r.stderr,
      );
      assert.equal(Deno.readTextFileSync(join(h.a, "f")), "x\n");
      assert.equal(Deno.readTextFileSync(join(h.a, "copy.txt")), DATA);
      assert.equal(Deno.readTextFileSync(join(h.a, "gowrote.txt")), "go wrote: data2 for the Go program\n");
      // mkdir, rename and unlink are the manager's: A has them.
      assert.equal(Deno.readTextFileSync(join(h.a, "made", "new.txt")), "renamed by busybox mv\n");
      assert.ok(!exists(join(h.a, "old.txt")) && !exists(join(h.a, "gone.txt")));

      // The same without the supervisor (as before it): placeholders read as NUL bytes, the
      // directory not listed yet is empty, absolute paths meet the empty mount point, and
      // nothing written reaches A.
      for (const n of ["f", "copy.txt", "gowrote.txt", "made"]) Deno.removeSync(join(h.a, n), { recursive: true });
      Deno.writeTextFileSync(join(h.a, "old.txt"), "renamed by busybox mv\n");
      Deno.writeTextFileSync(join(h.a, "gone.txt"), "removed by busybox rm\n");
      Deno.writeTextFileSync(join(h.a, "data.txt"), DATA.replace("line 0", "LINE 0"));
      Deno.writeTextFileSync(join(h.a, "data2.txt"), "data2, second session\n");
      Deno.removeSync(h.b(".xufs/cache"), { recursive: true });
      h.bashrc("export XUFS_PRECACHE_MAX=0 XUFS_STATIC=off");
      const off = await h.ussh(SCRIPT);
      assert.ok(off.stdout.startsWith("-- cat\n\0\0\0"), `no supervisor: cat reads zeros:\n${off.stdout.slice(0, 200)}`);
      assert.ok(off.stdout.includes("-- ls\n-- cp\n"), off.stdout.slice(-400));
      assert.ok(!off.stdout.includes("in sub"), off.stdout.slice(-400));
      for (const n of ["f", "copy.txt", "gowrote.txt", "made"]) assert.ok(!exists(join(h.a, n)), `${n} reached A without the supervisor`);
      assert.ok(exists(join(h.a, "old.txt")) && exists(join(h.a, "gone.txt")), "a rename or removal reached A without the supervisor");
    });
  },
});

Deno.test({
  name: "xufs static: a static login shell (SHELL=busybox sh) runs under the supervisor: it reads A's file and its redirection reaches A",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    using dir = tempDir();
    const exported = join(dir.path, "exported");
    Deno.mkdirSync(exported);
    Deno.writeTextFileSync(join(exported, "data.txt"), DATA);
    const sh = join(dir.path, "sh");
    Deno.symlinkSync("/bin/busybox", sh);
    const session = (home: string, env: Record<string, string> = {}) =>
      cli("xufs_session", ["--local-export", exported, "--", "cat data.txt; echo y > g"], {
        env: { PATH: "/usr/bin:/bin", HOME: join(dir.path, home), SHELL: sh, LC_ALL: "C", XUFS_PRECACHE_MAX: "0", ...env },
        timeoutMs: 60_000,
      });
    const r = await session("home1");
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, DATA, r.stderr);
    assert.equal(Deno.readTextFileSync(join(exported, "g")), "y\n");
    // Started as it is (XUFS_STATIC=off, as before): zeros, and nothing reaches A.
    Deno.removeSync(join(exported, "g"));
    const off = await session("home2", { XUFS_STATIC: "off" });
    assert.ok(off.stdout.startsWith("\0\0\0"), off.stdout.slice(0, 100));
    assert.ok(!exists(join(exported, "g")), "g reached A without the supervisor");
  },
});

function exists(p: string): boolean {
  try {
    Deno.statSync(p);
    return true;
  } catch {
    return false;
  }
}
