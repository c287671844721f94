/**
 * Conformance: the same script of real programs (ls, cat, cp, mv, rm -r, mkdir -p, tar, grep -r,
 * find, python3, sed -i, git, make + gcc) runs once directly in a copy of A's tree and once
 * through ~/xufs-rhome (xufs_session --local-export: the file server in-process, no ssh); the
 * outputs and the resulting trees on A must be the same.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { cli, run, tempDir } from "../helpers.ts";

const SCRIPT = String.raw`
set -e
exec 2>&1
mkdir -p a/b/c
echo hello > a/b/c/f.txt
cp a/b/c/f.txt a/copy.txt
mv a/copy.txt a/moved.txt
ls -l a | awk 'NR > 1 { print $1, $NF }'
cat a/moved.txt seed/file1
ls seed seed/subdir1
tar cf t.tar a seed && mkdir x && tar xf t.tar -C x && rm t.tar
grep -r hello . | sort
find . -name '*.txt' | sort
python3 -c "open('py.txt', 'w').write('from python\n'); print(open('a/moved.txt').read().strip())"
sed -i 's/hello/bye/' a/b/c/f.txt && cat a/b/c/f.txt
git init -q repo && cd repo && git config user.email t@example.org && git config user.name t
echo tracked > x && git add x && git commit -qm first && echo changed >> x && git status --short && cd ..
printf 'int main(void) { return 7; }\n' > m.c
printf 'm: m.c\n\tgcc -o m m.c\n' > Makefile
make -s && (./m || echo "m exited $?")
rm -r a/b
chmod 600 py.txt && ls -l py.txt | cut -c1-10
ln -s a/moved.txt link && readlink link && cat link
mkdir -p deep/er && cd deep/er && /bin/pwd | sed 's|.*/||' && cd ../..
ls
`;

/** Every path under `root` (but .git internals and the compiled binary) with its type, mode and content hash. */
function snapshot(root: string, rel = ""): string[] {
  const out: string[] = [];
  for (const e of [...Deno.readDirSync(join(root, rel))].sort((x, y) => x.name.localeCompare(y.name))) {
    const p = rel ? `${rel}/${e.name}` : e.name;
    const full = join(root, p);
    const st = Deno.lstatSync(full);
    const mode = (st.mode! & 0o777).toString(8);
    if (e.isSymlink) out.push(`${p} -> ${Deno.readLinkSync(full)}`);
    else if (e.isDirectory) {
      out.push(`${p}/ ${mode}`);
      if (p !== "repo/.git") out.push(...snapshot(root, p));
    } else {
      const hash = p === "m" ? "(binary)" : createHash("sha256").update(Deno.readFileSync(full)).digest("hex").slice(0, 16);
      out.push(`${p} ${mode} ${st.size} ${hash}`);
    }
  }
  return out;
}

function seedTree(root: string): void {
  Deno.mkdirSync(join(root, "seed/subdir1"), { recursive: true });
  Deno.writeTextFileSync(join(root, "seed/file1"), "file one, hello\n");
  Deno.writeTextFileSync(join(root, "seed/file2"), "file two\n");
  Deno.writeTextFileSync(join(root, "seed/subdir1/x.txt"), "x\n");
}

Deno.test({
  name: "xufs conformance: real programs give the same results through ~/xufs-rhome as on A's tree",
  async fn() {
    using dir = tempDir();
    const direct = join(dir.path, "direct"), exported = join(dir.path, "exported"), bHome = join(dir.path, "bhome");
    for (const d of [direct, exported, bHome]) Deno.mkdirSync(d);
    seedTree(direct);
    seedTree(exported);
    const env = { PATH: "/usr/bin:/bin", HOME: bHome, SHELL: "/bin/sh", LC_ALL: "C", GIT_CONFIG_NOSYSTEM: "1" };
    const native = await run("sh", ["-c", SCRIPT], { cwd: direct, env: { ...env, HOME: dir.path } });
    assert.equal(native.code, 0, native.stdout);
    const xufs = await cli("xufs_session", ["--local-export", exported, "--", SCRIPT.replaceAll("'", "'\\''").replace(/^/, "sh -c '") + "'"], {
      env,
      timeoutMs: 120_000,
    });
    assert.equal(xufs.stdout, native.stdout, xufs.stderr);
    assert.equal(xufs.code, 0, xufs.stderr);
    assert.deepEqual(snapshot(exported), snapshot(direct));
    assert.throws(() => Deno.statSync(join(bHome, "xufs-rhome")), "unmounted");
  },
});
