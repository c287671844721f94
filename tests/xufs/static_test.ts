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
import { usshTest, withHosts } from "./hosts.ts";
import { assertNothingReachedA, assertReachedA, buildGo, busyboxOutput, busyboxScript, DATA, seedTree } from "./static_tree.ts";

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

/** What B runs: static busybox's steps and the Go program, each output after a marker line. */
const SCRIPT = busyboxScript(["echo '-- go'; ./gorw data2.txt gowrote.txt"]);

Deno.test({
  ...usshTest,
  name: "xufs static: static busybox (cat, sh -c 'echo x > f', ls, cp) and a static Go program read A's files and write to A through the mount",
  async fn() {
    await withHosts(async (h) => {
      seedTree(h.a);
      Deno.writeTextFileSync(join(h.a, "data2.txt"), "data2 for the Go program\n");
      await buildGo(GO_PROGRAM, join(h.a, "gorw"));
      h.bashrc("export XUFS_PRECACHE_MAX=0");

      const r = await h.ussh(SCRIPT);
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.equal(r.stdout, busyboxOutput("-- go\ndata2 for the Go program\n"), r.stderr);
      assertReachedA(h.a);
      assert.equal(Deno.readTextFileSync(join(h.a, "gowrote.txt")), "go wrote: data2 for the Go program\n");

      // The same without the supervisor (as before it).
      Deno.removeSync(join(h.a, "gowrote.txt"));
      seedTree(h.a);
      Deno.writeTextFileSync(join(h.a, "data.txt"), DATA.replace("line 0", "LINE 0"));
      Deno.writeTextFileSync(join(h.a, "data2.txt"), "data2, second session\n");
      Deno.removeSync(h.b(".xufs/cache"), { recursive: true });
      h.bashrc("export XUFS_PRECACHE_MAX=0 XUFS_STATIC=off");
      const off = await h.ussh(SCRIPT);
      assertNothingReachedA(h.a, off.stdout, ["gowrote.txt"]);
    });
  },
});
