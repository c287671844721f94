/**
 * System calls beyond the open/stat families through ussh against a real sshd (issue 15):
 * `tail -f` on a file A appends to (inotify_add_watch on the mount: the watch sees A's change,
 * which lands in the same cache file), and openat2 and execveat, which programs reach through
 * syscall() and glibc's execveat, on paths under the mount.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { usshTest, waitForFile, withHosts } from "./hosts.ts";

Deno.test({
  ...usshTest,
  name: "xufs calls: tail -f on a file A appends to shows the appended line",
  async fn() {
    await withHosts(async (h) => {
      Deno.writeTextFileSync(join(h.a, "log.txt"), "line1\n");
      const sh = [
        "cd ~/xufs-rhome",
        "tail -f log.txt > ~/tail.out & t=$!",
        "for i in $(seq 300); do grep -q line1 ~/tail.out && break; sleep 0.1; done",
        "touch ~/m-started",
        "for i in $(seq 300); do grep -q line2 ~/tail.out && break; sleep 0.1; done",
        "kill $t; wait $t; cat ~/tail.out",
      ].join("\n");
      const p = h.spawn(sh);
      await waitForFile(h.b("m-started"), 60_000, p);
      Deno.writeTextFileSync(join(h.a, "log.txt"), "line2\n", { append: true });
      const r = await p.result(90_000);
      assert.equal(r.stdout, "line1\nline2\n", r.stderr);
    });
  },
});

Deno.test({
  ...usshTest,
  name: "xufs calls: openat2 through syscall() reads and creates files under the mount; execveat runs a script there",
  async fn() {
    await withHosts(async (h) => {
      Deno.writeTextFileSync(join(h.a, "data.txt"), "from A\n");
      Deno.writeTextFileSync(join(h.a, "run.sh"), "#!/bin/sh\necho ran \"$1\"\n", { mode: 0o755 });
      const py = [
        "import ctypes, os, struct, sys",
        "libc = ctypes.CDLL(None, use_errno=True)",
        "libc.syscall.restype = ctypes.c_long",
        "def openat2(path, flags, mode=0):",
        "    how = struct.pack('QQQ', flags, mode, 0)",
        "    fd = libc.syscall(ctypes.c_long(437), ctypes.c_long(-100), os.path.expanduser(path).encode(), how, ctypes.c_long(24))",
        "    if fd < 0: raise SystemExit('openat2 ' + path + ': ' + os.strerror(ctypes.get_errno()))",
        "    return fd",
        "fd = openat2('~/xufs-rhome/data.txt', os.O_RDONLY); print(os.read(fd, 100).decode(), end=''); os.close(fd)",
        "fd = openat2('~/xufs-rhome/made.txt', os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)",
        "os.write(fd, b'made by openat2\\n'); os.close(fd)",
        "sys.stdout.flush()",
        "argv = (ctypes.c_char_p * 3)(b'run.sh', b'by-execveat', None)",
        "envp = (ctypes.c_char_p * (len(os.environ) + 1))(*[f'{k}={v}'.encode() for k, v in os.environ.items()], None)",
        "libc.execveat(-100, os.path.expanduser('~/xufs-rhome/run.sh').encode(), argv, envp, 0)",
        "raise SystemExit('execveat: ' + os.strerror(ctypes.get_errno()))",
      ].join("\n");
      const r = await h.ussh(`python3 -c "${py}"`);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, "from A\nran by-execveat\n");
      assert.equal(Deno.readTextFileSync(join(h.a, "made.txt")), "made by openat2\n");
    });
  },
});
