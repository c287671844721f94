/**
 * The write path through ussh against a real sshd, in both transports: a file renamed before it
 * is closed (python's os.replace, vim's rename-over-save, sed -i) and B's operations applied on A
 * in B's order (issue 11, case 2); close() returning 0 means durable on B, even for a writer
 * killed with SIGKILL or ending with _exit(), and close() fails with EIO when the change cannot
 * be made durable (case 4); writes through a shared mapping after close() (case 5); a change
 * A refuses is retried, then reported with B's content kept, and the changes after it go on.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { run } from "../helpers.ts";
import { conflictRe, namesMatching, TRANSPORTS, usshTest, withHosts } from "./hosts.ts";

Deno.test({
  ...usshTest,
  name: "xufs writes: a change A refuses (a full disk) is retried, then reported with B's content kept; later changes go on",
  async fn() {
    await withHosts(async (h) => {
      // A's directory full/ is a file system of 16 KiB: B's 256 KiB file cannot land there.
      const full = join(h.a, "full");
      Deno.mkdirSync(full);
      assert.equal((await run("mount", ["-t", "tmpfs", "-o", "size=16k", "tmpfs", full])).code, 0);
      try {
        const r = await h.ussh(
          "cd ~/xufs-rhome && python3 -c \"open('full/big', 'w').write('B wrote this\\n' * 20000)\" && echo after > after.txt && echo done",
        );
        assert.equal(r.code, 0, r.stderr);
        assert.equal(r.stdout, "done\n");
        const line = r.stderr.match(/xufs: could not apply a change on host A after 4 attempts: write full\/big: ENOSPC: .*; this host's version is kept in (\S+)/);
        assert.ok(line, r.stderr);
        // B's content is whole beside the journal; A has no truncated file, and no temporary one.
        assert.equal(Deno.readTextFileSync(line[1]), "B wrote this\n".repeat(20000));
        assert.deepEqual([...Deno.readDirSync(full)], []);
        assert.equal(Deno.readTextFileSync(join(h.a, "after.txt")), "after\n");
        const log = (await run("sh", ["-c", `cat ${h.b(".xufs/cache")}/*/log`])).stdout;
        assert.match(log, /^\S+ could not apply a change on host A after 4 attempts: write full\/big: ENOSPC/m);
      } finally {
        await run("umount", [full]);
      }
    });
  },
});

/** A C program writing through a MAP_SHARED mapping after closing its only fd, then ending as argv[2] says. */
const MAPPER = String.raw`
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
int main(int argc, char **argv) {
    if (argc != 3) return 9;
    const char *msg = "written through a shared mapping after close\n";
    size_t n = strlen(msg);
    int fd = open(argv[1], O_RDWR | O_CREAT, 0644);
    if (fd < 0 || ftruncate(fd, (off_t)n) < 0) return 1;
    char *m = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED) return 2;
    close(fd);
    memcpy(m, msg, n);
    if (!strcmp(argv[2], "munmap")) return munmap(m, n) == 0 ? 0 : 3;
    if (!strcmp(argv[2], "msync")) { msync(m, n, MS_SYNC); _exit(0); }
    if (!strcmp(argv[2], "exit")) return 0; /* the mapping goes with the process */
    _exit(0);                               /* no destructors, no munmap */
}
`;

for (const notun of TRANSPORTS) {
  const t = notun ? " (--notun)" : "";
  Deno.test({
    ...usshTest,
    name: `xufs writes${t}: a file renamed before close (os.replace, vim, sed -i) lands whole; B's order is kept on A`,
    async fn() {
      await withHosts(async (h) => {
        Deno.writeTextFileSync(join(h.a, "settings.json"), '{"v": 1}\n');
        Deno.writeTextFileSync(join(h.a, "doc.txt"), "line one\n");
        Deno.writeTextFileSync(join(h.a, "conf.ini"), "a=1\n");
        const py = [
          "import os",
          "f = open('settings.json.tmp', 'w')",
          "f.write('{\\\"v\\\": 2}\\n'); f.flush(); os.fsync(f.fileno())",
          "os.replace('settings.json.tmp', 'settings.json')",
          "f.write('{\\\"after\\\": \\\"rename\\\"}\\n'); f.close()",
        ].join("\n");
        const vim = "vi -es -N -u NONE -i NONE -c 'set nobackup writebackup backupcopy=no' -c '%s/one/two/' -c 'wq' doc.txt";
        const r = await h.ussh(
          `cd ~/xufs-rhome && python3 -c "${py}" && ${vim} && sed -i 's/a=1/a=2/' conf.ini && ` +
            "{ echo built; echo by bash; } > out.tmp && mv -f out.tmp out.txt && cp out.txt copy.txt && " +
            "mkdir d && echo x > d/f && mv d e && rm e/f && mkdir e/g && echo y > e/g/h && cat settings.json",
          { notun },
        );
        assert.equal(r.code, 0, r.stderr);
        assert.equal(r.stdout, '{"v": 2}\n{"after": "rename"}\n');
        const a = (p: string) => Deno.readTextFileSync(join(h.a, p));
        assert.equal(a("settings.json"), '{"v": 2}\n{"after": "rename"}\n');
        assert.equal(a("doc.txt"), "line two\n");
        assert.equal(a("conf.ini"), "a=2\n");
        assert.equal(a("out.txt"), "built\nby bash\n");
        assert.equal(a("copy.txt"), "built\nby bash\n");
        assert.equal(a("e/g/h"), "y\n");
        assert.deepEqual([...Deno.readDirSync(join(h.a, "e"))].map((x) => x.name), ["g"]);
        assert.deepEqual(
          [...Deno.readDirSync(h.a)].map((x) => x.name).filter((n) => !n.startsWith(".")).sort(),
          ["conf.ini", "copy.txt", "doc.txt", "e", "out.txt", "settings.json"],
        );
        assert.deepEqual(namesMatching(h.a, conflictRe(".*")), []);
      });
    },
  });

  Deno.test({
    ...usshTest,
    name: `xufs writes${t}: close() returning 0 means durable on B (SIGKILL, _exit, a crashed manager); else close() fails with EIO`,
    async fn() {
      await withHosts(async (h) => {
        const first = await h.ussh(
          "cd ~/xufs-rhome && " +
            `python3 -c "import os; fd = os.open('exit-noclose.txt', os.O_WRONLY | os.O_CREAT, 0o644); os.write(fd, b'written, then _exit without close\\n'); os._exit(0)"; ` +
            `python3 -c "import os, signal; fd = os.open('kill-after-close.txt', os.O_WRONLY | os.O_CREAT, 0o644); os.write(fd, b'closed, then SIGKILL\\n'); os.close(fd); os.kill(os.getpid(), signal.SIGKILL)"; ` +
            `python3 -c "import os; f = open('exit-after-close.txt', 'w'); f.write('closed, then _exit\\n'); f.close(); os._exit(0)"; true`,
          { notun },
        );
        assert.equal(first.code, 0, first.stderr);
        const a = (p: string) => Deno.readTextFileSync(join(h.a, p));
        assert.equal(a("exit-noclose.txt"), "written, then _exit without close\n");
        assert.equal(a("kill-after-close.txt"), "closed, then SIGKILL\n");
        assert.equal(a("exit-after-close.txt"), "closed, then _exit\n");
        // The cache manager is killed while a file is open: what was closed before is durable;
        // the close that cannot be made durable fails with EIO, and the data stays in the cache.
        const py = [
          "import os, signal, time",
          "mgr = int(os.environ['MGR'])",
          "g = open('closed-before.txt', 'w'); g.write('closed before the manager died\\n'); g.close()",
          "f = open('manager-gone.txt', 'w'); f.write('written while the manager died\\n'); f.flush()",
          "os.kill(mgr, signal.SIGKILL)",
          "def gone():",
          "    try: return open('/proc/%d/stat' % mgr).read().split(')')[1].split()[0] in 'ZX'",
          "    except OSError: return True",
          "for i in range(200):",
          "    if gone(): break",
          "    time.sleep(0.05)",
          "try:",
          "    f.close(); print('close returned 0')",
          "except OSError as e: print('close failed:', os.strerror(e.errno))",
        ].join("\n");
        // (ussh ends with 255 here, B's session having been killed; bounded, as it once took 2 min.)
        const second = await h.ussh(`cd ~/xufs-rhome && MGR=$PPID python3 -c "${py}"`, { notun, timeoutMs: 60_000 });
        assert.equal(second.stdout, "close failed: Input/output error\n", second.stderr);
        // The next session sends what the crashed one left: the journal, and the cached file.
        const third = await h.ussh("true", { notun });
        assert.equal(third.code, 0, third.stderr);
        assert.equal(a("closed-before.txt"), "closed before the manager died\n");
        assert.equal(a("manager-gone.txt"), "written while the manager died\n");
      });
    },
  });

  Deno.test({
    ...usshTest,
    name: `xufs writes${t}: writes through a shared mapping after close() reach A (munmap, msync, exit, _exit)`,
    async fn() {
      await withHosts(async (h) => {
        const src = join(h.dir, "mapper.c"), bin = join(h.dir, "mapper");
        Deno.writeTextFileSync(src, MAPPER);
        const cc = await run("gcc", ["-O1", "-o", bin, src]);
        assert.equal(cc.code, 0, cc.stderr);
        Deno.writeTextFileSync(join(h.a, "m-munmap"), "an older and longer content of this file on A\n");
        const ends = ["munmap", "msync", "exit", "_exit"];
        const r = await h.ussh(ends.map((e) => `${bin} ~/xufs-rhome/m-${e} ${e}`).join(" && "), { notun });
        assert.equal(r.code, 0, r.stderr);
        for (const e of ends) assert.equal(Deno.readTextFileSync(join(h.a, `m-${e}`)), "written through a shared mapping after close\n", e);
      });
    },
  });
}
