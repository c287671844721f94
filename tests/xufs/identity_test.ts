/**
 * Stat identity through ussh against a real sshd (issue 15): B's stat reports A's inode numbers,
 * mtimes and ctimes for files B has not changed, so tools that remember stat data agree across
 * the two sides. `git status` on B after one on A reads no file contents (the worktree's files
 * stay unfetched placeholders: pre-caching is off) and leaves `.git/index` unchanged, and A's
 * next `git status` leaves it unchanged too; `make -q` on B finds A's clean build up to date;
 * `stat` and `fstat` of one file agree (tar's "file changed as we read it").
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { run } from "../helpers.ts";
import { usshTest, withHosts } from "./hosts.ts";

const FILES = 40;

function sha(path: string): string {
  return createHash("sha256").update(Deno.readFileSync(path)).digest("hex");
}

/** A's repository: FILES tracked sources, a Makefile with a target built from them, committed; A's own `git status` and `make` ran last. */
async function repoOnA(a: string): Promise<string> {
  const repo = join(a, "repo");
  Deno.mkdirSync(join(repo, "src"), { recursive: true });
  for (let i = 0; i < FILES; i++) Deno.writeTextFileSync(join(repo, "src", `f${i}.txt`), `file ${i}\n`.repeat(10 + i));
  Deno.writeTextFileSync(join(repo, "Makefile"), "all: out.txt\nout.txt: $(wildcard src/*.txt)\n\tcat $^ > $@\n");
  Deno.writeTextFileSync(join(repo, ".gitignore"), "out.txt\n");
  const sh = [
    "set -e",
    "git init -q . && git config user.email t@example.org && git config user.name t",
    // Sources older than the index, so no entry is "racily clean" (git would re-read those).
    "touch -d '2020-01-01 00:00:00' Makefile .gitignore src/*.txt",
    "git add -A && git commit -qm first",
    "sleep 1.1 && git status --porcelain && make -s",
  ].join("\n");
  const r = await run("sh", ["-c", sh], { cwd: repo, env: { HOME: a } });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, "");
  return repo;
}

Deno.test({
  ...usshTest,
  name: "xufs identity: git status on B after A's reads no file and leaves .git/index unchanged; make on B finds A's build up to date",
  async fn() {
    await withHosts(async (h) => {
      h.bashrc("export XUFS_PRECACHE_MAX=0");
      const repo = await repoOnA(h.a);
      const index = sha(join(repo, ".git/index"));
      const st = (p: string) => Deno.lstatSync(p);
      const f0 = st(join(repo, "src/f0.txt"));
      const cmd = [
        "cd ~/xufs-rhome/repo",
        "git status --porcelain; echo status=$?",
        "make -q; echo make=$?",
        "stat -c '%i %Y %Z' src/f0.txt",
      ].join(" && ");
      const r = await h.ussh(cmd);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(sha(join(repo, ".git/index")), index, "B's git status rewrote .git/index");
      // The worktree's files stayed placeholders: git read none of them (B fetched only .git's).
      const meta = JSON.parse((await run("sh", ["-c", `cat ${h.b(".xufs/cache")}/*/meta.json`])).stdout);
      const entries: Record<string, { fetched?: boolean }> = meta;
      const fetched = Object.entries(entries).filter(([p, m]) => p.startsWith("repo/src/") && m.fetched).map(([p]) => p);
      assert.deepEqual(fetched, [], "B's git status read these files");
      // And A's next git status finds nothing changed either.
      const back = await run("git", ["status", "--porcelain"], { cwd: repo, env: { HOME: h.a } });
      assert.equal(back.stdout, "");
      assert.equal(sha(join(repo, ".git/index")), index, "A's git status after B's rewrote .git/index");
      assert.equal(r.stdout, `status=0\nmake=0\n${f0.ino} ${Math.floor(f0.mtime!.getTime() / 1000)} ${Math.floor(f0.ctime!.getTime() / 1000)}\n`);
    });
  },
});

Deno.test({
  ...usshTest,
  name: "xufs identity: stat and fstat of a file under the mount agree (tar reads the tree without a warning); a file B writes shows its own new times",
  async fn() {
    await withHosts(async (h) => {
      const repo = await repoOnA(h.a);
      const py = [
        "import os",
        "p = 'repo/src/f1.txt'",
        "a = os.stat(p)",
        "fd = os.open(p, os.O_RDONLY); b = os.fstat(fd); os.read(fd, 1 << 20); c = os.fstat(fd); os.close(fd)",
        "print(a.st_ino == b.st_ino == c.st_ino, a.st_ctime_ns == b.st_ctime_ns == c.st_ctime_ns, a.st_mtime_ns == c.st_mtime_ns)",
        "print(a.st_ino)",
        "open('repo/src/f2.txt', 'a').write('more\\n')",
        "d = os.stat('repo/src/f2.txt')",
        "print(d.st_mtime_ns > a.st_mtime_ns)",
      ].join("\n");
      const r = await h.ussh(`cd ~/xufs-rhome && python3 -c "${py}" && tar cf /dev/null repo && echo tar-ok && cd repo && git status --porcelain`);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, `True True True\n${Deno.lstatSync(join(repo, "src/f1.txt")).ino}\nTrue\ntar-ok\n M src/f2.txt\n`);
      assert.doesNotMatch(r.stderr, /changed as we read it/);
    });
  },
});
