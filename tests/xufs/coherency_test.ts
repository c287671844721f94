/**
 * Coherency through ussh against a real sshd, in both transports: a file A changes while a
 * program on B has it open for writing keeps both versions (issue 11, case 1), and what A changed
 * or deleted between two sessions never reappears on B (case 9).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { run } from "../helpers.ts";
import { conflictRe, namesMatching, TRANSPORTS, usshTest, waitForFile, withHosts } from "./hosts.ts";

for (const notun of TRANSPORTS) {
  const t = notun ? " (--notun)" : "";
  Deno.test({
    ...usshTest,
    name: `xufs coherency${t}: A changes a file B has open for writing; both versions are kept and the user is told`,
    async fn() {
      await withHosts(async (h) => {
        Deno.writeTextFileSync(join(h.a, "notes.txt"), "A v1\n");
        // B opens notes.txt for appending (its base: A v1) and waits, before writing anything,
        // until A's change and the sibling made after it are announced (listed on B); then it
        // writes and closes.
        const py = [
          "import os, time",
          "f = open('notes.txt', 'a')",
          "open(os.path.expanduser('~/m-opened'), 'w').close()",
          "for i in range(600):",
          "    if os.path.exists('after'): break",
          "    time.sleep(0.05)",
          "else: raise SystemExit('the change on A was never announced')",
          "f.write('B line 1\\n'); f.flush(); f.write('B line 2\\n'); f.close()",
          "print('closed')",
        ].join("\n");
        const p = h.spawn(`cd ~/xufs-rhome && python3 -c "${py}"`, { notun });
        await waitForFile(h.b("m-opened"), 60_000, p);
        Deno.writeTextFileSync(join(h.a, "notes.txt"), "A v2, changed on A\n");
        Deno.writeTextFileSync(join(h.a, "after"), "made after the change\n");
        const r = await p.result(120_000);
        assert.equal(r.code, 0, r.stderr);
        assert.equal(r.stdout, "closed\n");
        // A's copy stays; B's whole version (both lines) is kept beside it, and stderr names it.
        assert.equal(Deno.readTextFileSync(join(h.a, "notes.txt")), "A v2, changed on A\n");
        const copies = namesMatching(h.a, conflictRe("notes.txt"));
        assert.equal(copies.length, 1, `conflict copies: ${[...Deno.readDirSync(h.a)].map((e) => e.name).join(" ")}\n${r.stderr}`);
        assert.equal(Deno.readTextFileSync(join(h.a, copies[0])), "A v1\nB line 1\nB line 2\n");
        assert.match(r.stderr, new RegExp(`conflict: notes\\.txt .*${copies[0].replace(/\./g, "\\.")}`));
        // ... and so does the cache's log on B.
        const log = (await run("sh", ["-c", `cat ${h.b(".xufs/cache")}/*/log`])).stdout;
        assert.match(log, new RegExp(`^\\S+ conflict: notes\\.txt .*${copies[0].replace(/\./g, "\\.")}`, "m"));
      });
    },
  });

  Deno.test({
    ...usshTest,
    name: `xufs coherency${t}: what A changed or deleted between sessions never reappears on B (git init, stale content)`,
    async fn() {
      await withHosts(async (h) => {
        Deno.writeTextFileSync(join(h.a, "same-size.txt"), "version 1\n");
        const first = await h.ussh(
          "cd ~/xufs-rhome && git init -q repo && git -C repo config user.name first && cat same-size.txt && mkdir -p gone/deep && echo x > gone/deep/f",
          { notun },
        );
        assert.equal(first.code, 0, first.stderr);
        assert.equal(first.stdout, "version 1\n");
        assert.match(Deno.readTextFileSync(join(h.a, "repo/.git/config")), /name = first/);
        // Between the sessions A deletes the repository and makes it again, empty; removes a
        // tree B made; and rewrites a file B cached with content of the same size and mtime.
        Deno.removeSync(join(h.a, "repo"), { recursive: true });
        Deno.mkdirSync(join(h.a, "repo"));
        Deno.removeSync(join(h.a, "gone"), { recursive: true });
        const ref = join(h.dir, "mtime-ref");
        assert.equal((await run("touch", ["-r", join(h.a, "same-size.txt"), ref])).code, 0);
        Deno.writeTextFileSync(join(h.a, "same-size.txt"), "version 2\n");
        assert.equal((await run("touch", ["-r", ref, join(h.a, "same-size.txt")])).code, 0);
        const second = await h.ussh(
          "export LC_ALL=C; cd ~/xufs-rhome && ls repo | wc -l && ls -d gone 2>&1; cat same-size.txt && cd repo && git init -q && git config user.name second && git config user.name",
          { notun },
        );
        assert.equal(second.code, 0, second.stderr);
        assert.match(second.stdout, /^0\nls: cannot access 'gone': No such file or directory\nversion 2\nsecond\n$/);
        assert.match(Deno.readTextFileSync(join(h.a, "repo/.git/config")), /name = second/);
        assert.doesNotMatch(Deno.readTextFileSync(join(h.a, "repo/.git/config")), /first/);
      });
    },
  });
}
