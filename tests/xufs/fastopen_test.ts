/**
 * The fast open of cached files (native/xufs/core/fastopen.c, issue 15): a file opened for reading
 * through the mount is opened by the kernel from a descriptor of the cache root without symlinks,
 * and the identity records a process read are kept by inode with the ctime, mtime and size of
 * their stat (native/xufs/core/identity.c). One python3 process keeps opening while A changes its
 * files (xufs_session --local-export: A's change callbacks reach the manager): it must see A's new
 * content, never the placeholder that replaces the old file (same size, same mtime, often the same
 * inode number: only the ctime tells it apart), and a directory A replaced by a symlink to another
 * one must lead where the symlink points. Another closes the root descriptor behind libxufs.so's
 * back and puts a cache directory at its number: its opens must still find the right files.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { cli, spawnCli, tempDir } from "../helpers.ts";
import { waitForFile } from "./hosts.ts";

/** Opens, waits for the test's go file, then opens again until the content changes (bounded). */
const READER = String.raw`
import os, sys, time
mnt, marks = os.environ["XUFS_MOUNT"], sys.argv[1]
def rd(rel):
    fd = os.open(os.path.join(mnt, rel), os.O_RDONLY)
    try: return os.read(fd, 100)
    finally: os.close(fd)
first = rd("f.txt"), rd("d/g.txt")
time.sleep(0.05)
for _ in range(3): assert (rd("f.txt"), rd("d/g.txt")) == first  # trusted, then from the record cache
open(os.path.join(marks, "ready"), "w").close()
for _ in range(600):
    if os.path.exists(os.path.join(marks, "go")): break
    time.sleep(0.05)
seen = set()
end = time.monotonic() + 20
while time.monotonic() < end:
    now = rd("f.txt"), rd("d/g.txt")
    seen.update(now)
    if now == (b"version 2\n", b"in e\n"): break
print(repr(first), repr(now), sorted(seen - {b"version 1\n", b"version 2\n", b"in d\n", b"in e\n"}))
`;

Deno.test({
  name: "xufs fast open: one process sees A's new content (never a placeholder) and a directory A replaced by a symlink",
  async fn() {
    using dir = tempDir();
    const exported = join(dir.path, "export"), home = join(dir.path, "home"), marks = join(dir.path, "marks");
    for (const d of [join(exported, "d"), join(exported, "e"), home, marks]) Deno.mkdirSync(d, { recursive: true });
    const t = new Date(1_700_000_000_000);
    Deno.writeTextFileSync(join(exported, "f.txt"), "version 1\n");
    Deno.utimeSync(join(exported, "f.txt"), t, t);
    Deno.writeTextFileSync(join(exported, "d/g.txt"), "in d\n");
    Deno.writeTextFileSync(join(exported, "e/g.txt"), "in e\n");
    Deno.writeTextFileSync(join(dir.path, "reader.py"), READER);
    const p = spawnCli("xufs_session", ["--local-export", exported, "--", `python3 ${join(dir.path, "reader.py")} ${marks}`], {
      // No pre-caching: the placeholder stays until the reader's open fetches it.
      env: { PATH: "/usr/bin:/bin", HOME: home, SHELL: "/bin/sh", LC_ALL: "C", XUFS_PRECACHE_MAX: "0" },
    });
    try {
      await waitForFile(join(marks, "ready"), 30_000, p);
      const cached = join(home, ".xufs/cache/local-xufs-rhome/tree/f.txt");
      const ino = Deno.lstatSync(cached).ino;
      // Same size and mtime on A: B's new placeholder differs from the cached file only in its ctime.
      Deno.writeTextFileSync(join(exported, "f.txt"), "version 2\n");
      Deno.utimeSync(join(exported, "f.txt"), t, t);
      Deno.renameSync(join(exported, "d"), join(exported, "d.old"));
      Deno.symlinkSync("e", join(exported, "d"));
      Deno.writeTextFileSync(join(marks, "go"), "");
      const r = await p.result(60_000);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout.trim(), `(b'version 1\\n', b'in d\\n') (b'version 2\\n', b'in e\\n') []`, r.stderr);
      console.log(`  (the cache file's inode ${Deno.lstatSync(cached).ino === ino ? "was reused" : "changed"})`);
    } finally {
      await p.stop();
    }
  },
});

/** Closes every descriptor, fills the numbers up to the one libxufs.so kept, opens a cache
 * directory there, then opens a file: the right one, not its namesake inside that directory. */
const CLOSER = String.raw`
import os, sys
mnt = os.environ["XUFS_MOUNT"]
def rd(rel):
    fd = os.open(os.path.join(mnt, rel), os.O_RDONLY)
    try: return os.read(fd, 100)
    finally: os.close(fd)
before = rd("d/f.txt"), rd("d/d/f.txt")  # listed: the next opens are fast
assert (rd("d/f.txt"), rd("d/d/f.txt")) == before
def target(n):
    try: return os.readlink("/proc/self/fd/" + n)
    except OSError: return ""
kept = [int(n) for n in os.listdir("/proc/self/fd") if int(n) >= 64 and target(n).endswith("/.xufs/cache/local-xufs-rhome/tree")]
assert len(kept) == 1, kept
how = sys.argv[1]
if how == "closerange": os.closerange(3, 1 << 16)
elif how == "close": os.close(kept[0])
else: os.dup2(os.open("/dev/null", os.O_RDONLY), kept[0]); os.close(kept[0])
while True:  # every lower number taken: the next open gets the kept one
    fd = os.open("/dev/null", os.O_RDONLY)
    if fd >= kept[0]: break
os.close(fd)
d = os.open(os.path.join(mnt, "d"), os.O_RDONLY | os.O_DIRECTORY)
print(how, d == kept[0], before, (rd("d/f.txt"), rd("d/d/f.txt")))
`;

Deno.test({
  name: "xufs fast open: a program that closes the descriptor libxufs.so keeps (close_range, close, dup2 over it) still opens the right files",
  async fn() {
    using dir = tempDir();
    const exported = join(dir.path, "export"), home = join(dir.path, "home");
    for (const d of [join(exported, "d/d"), home]) Deno.mkdirSync(d, { recursive: true });
    Deno.writeTextFileSync(join(exported, "d/f.txt"), "outer\n");
    Deno.writeTextFileSync(join(exported, "d/d/f.txt"), "inner\n");
    Deno.writeTextFileSync(join(dir.path, "closer.py"), CLOSER);
    const py = join(dir.path, "closer.py");
    const r = await cli("xufs_session", ["--local-export", exported, "--", `sh -c 'for h in closerange close dup2; do python3 ${py} $h; done'`], {
      env: { PATH: "/usr/bin:/bin", HOME: home, SHELL: "/bin/sh", LC_ALL: "C" },
      timeoutMs: 60_000,
    });
    assert.equal(r.code, 0, r.stderr);
    const same = "(b'outer\\n', b'inner\\n') (b'outer\\n', b'inner\\n')";
    assert.equal(r.stdout, `closerange True ${same}\nclose True ${same}\ndup2 True ${same}\n`, r.stderr);
  },
});
