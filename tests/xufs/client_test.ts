/**
 * libxufs.so's persistent connection to the cache manager (native/xufs/core/client.c) against
 * what programs do to their descriptors: python3 closes every descriptor (closerange), puts its
 * own file at the connection's number (dup2 onto every descriptor from 64 to 127), forks children
 * that use the mount while the parent does, and runs threads that use the mount at once; every
 * read through the mount still gets A's content and the program's own files stay its own. Uses
 * `xufs_session --local-export` (the file server in-process, no ssh).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { cli, tempDir } from "../helpers.ts";

const SCRIPT = `
import os, sys, threading
m = os.environ["XUFS_MOUNT"]
def read(i): return open(os.path.join(m, "d", "f%d" % i)).read()
assert read(0) == "file 0\\n"
os.closerange(3, 4096)                      # the connection too
assert read(1) == "file 1\\n"
own = os.open(os.path.join(m, "d", "f2"), os.O_RDONLY)
for fd in range(64, 128): os.dup2(own, fd)  # whatever number the connection had is the program's now
assert read(3) == "file 3\\n"
for fd in range(64, 128): assert os.pread(fd, 100, 0) == b"file 2\\n", fd
kids = []
for k in range(4):
    pid = os.fork()
    if pid == 0:
        ok = all(read(10 * k + j) == "file %d\\n" % (10 * k + j) for j in range(10))
        os._exit(0 if ok else 1)
    kids.append(pid)
assert all(read(50 + j) == "file %d\\n" % (50 + j) for j in range(10))
assert all(os.waitstatus_to_exitcode(os.waitpid(p, 0)[1]) == 0 for p in kids)
bad = []
def worker(t):
    for j in range(25):
        i = 100 + 25 * t + j
        if read(i) != "file %d\\n" % i: bad.append(i)
ts = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
for t in ts: t.start()
for t in ts: t.join()
assert not bad, bad
print("ok")
`;

Deno.test("xufs client: the manager connection survives closerange, dup2 over its number, fork and threads", {}, async () => {
  using dir = tempDir();
  const exported = join(dir.path, "export");
  Deno.mkdirSync(join(exported, "d"), { recursive: true });
  for (let i = 0; i < 200; i++) Deno.writeTextFileSync(join(exported, "d", `f${i}`), `file ${i}\n`);
  Deno.writeTextFileSync(join(dir.path, "t.py"), SCRIPT);
  const r = await cli("xufs_session", ["--local-export", exported, "--", `python3 ${join(dir.path, "t.py")}`], {
    env: { PATH: "/usr/bin:/bin", HOME: join(dir.path, "home"), SHELL: "/bin/sh", LC_ALL: "C", XUFS_PRECACHE_MAX: "0" },
    timeoutMs: 90_000,
  });
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.equal(r.stdout, "ok\n", r.stderr);
});
