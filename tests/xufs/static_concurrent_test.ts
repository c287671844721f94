/**
 * The seccomp supervisor's XUFS mode serves stopped calls concurrently (issue 15,
 * native/supervisor/xufs.c): while one static program waits for its fetch, the path calls of the
 * other programs under the same supervisor are still answered. The fetch is held by stopping the
 * session's process (`xufs_session --local-export`: the cache manager and the file server run
 * in it) with SIGSTOP: every manager request then waits, and a call that needs none (here a
 * static `cat` of a file outside the mount: its execve and open are stopped calls too) must
 * still complete. Before, the supervisor answered one call at a time, and the second `cat`
 * waited for the first's fetch.
 * Also a target killed while its fetch is in flight: the others are still served, and once the
 * fetch ends the supervisor holds no descriptor more than before (counted in /proc/PID/fd).
 *
 * Everything is ordered by events, never by time: the static shell is stepped through a FIFO its
 * (unsupervised) parent opened, reports on descriptors it inherited (writes to them are not
 * stopped calls), and a `cat` is known to wait for its fetch when its cmdline is `cat`'s and the
 * kernel shows it stopped in the seccomp notification (/proc/PID/wchan).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { run, sleep, spawnCli, tempDir } from "../helpers.ts";

const BIG = new Uint8Array(4 << 20).map((_, i) => (i * 7 + (i >> 12)) & 0xff);

/**
 * The static shell's steps (NOTE: a file outside the mount, given as $1); each `read` waits for
 * the test (fd 3), reports go to fd 4, NOTE's copies to fd 5, the first big file's to fd 6 (all
 * opened by the unsupervised shell that starts it: writes to them are never stopped calls).
 */
const STATIC_STEPS = [
  "B=/bin/busybox",
  // the warm-up: the manager connection and what the supervisor opens once are open now
  "$B ls >/dev/null && $B cat warm.txt >/dev/null || exit 1",
  'echo "sup $PPID" >&4',
  'read x <&3 || exit 1; $B cat big.bin >&6 & echo "first $!" >&4',
  'read x <&3 || exit 1; $B cat "$1" >&5',
  'read x <&3 || exit 1; $B cat big2.bin >/dev/null & echo "killed $!" >&4',
  'read x <&3 || exit 1; $B cat "$1" >&5',
  "read x <&3 || exit 1; wait",
].join("\n");

/** Polls `f` (bounded: 200 tries, 25 ms apart) until it returns a value; throws `why` otherwise. */
async function until<T>(f: () => T | undefined, why: () => string): Promise<T> {
  for (let i = 0; i < 200; i++) {
    const v = f();
    if (v !== undefined) return v;
    await sleep(25);
  }
  throw new Error(why());
}

/** File text, "" when it cannot be read. */
function text(p: string): string {
  try {
    return Deno.readTextFileSync(p);
  } catch {
    return "";
  }
}

/** Is pid the static `cat` and stopped in a seccomp notification (waiting for the supervisor)? */
function heldInSupervisor(pid: number): boolean {
  const cmd = text(`/proc/${pid}/cmdline`).split("\0");
  return cmd[1] === "cat" && /seccomp/.test(text(`/proc/${pid}/wchan`));
}

/**
 * Opens the FIFO `go` for writing once the session's shell opened it for reading (within 30 s);
 * throws if the session ends first, after releasing the pending open with a reader of its own.
 */
async function openWriter(
  go: string,
  session: { done: Promise<Deno.CommandStatus> },
): Promise<Deno.FsFile> {
  const opening = Deno.open(go, { write: true });
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<"late">((r) => (timer = setTimeout(() => r("late"), 30_000)));
  const first = await Promise.race([opening, session.done.then(() => "ended" as const), late]);
  clearTimeout(timer);
  if (typeof first !== "string") return first;
  Deno.openSync(go, { read: true }).close(); // completes the writer's open
  (await opening).close();
  throw new Error(`The session's shell never opened the FIFO: ${first}`);
}

/** How many descriptors pid has open. */
function fdCount(pid: number): number {
  return [...Deno.readDirSync(`/proc/${pid}/fd`)].length;
}

/** What pid has open, for a failure's message. */
function fdList(pid: number): string {
  return [...Deno.readDirSync(`/proc/${pid}/fd`)].map((e) => {
    try {
      return `${e.name} ${Deno.readLinkSync(`/proc/${pid}/fd/${e.name}`)}`;
    } catch {
      return e.name;
    }
  }).join(", ");
}

Deno.test("xufs static (concurrent): a static cat of a file outside the mount completes while another waits for its fetch; a target killed meanwhile leaks nothing", async () => {
  using dir = tempDir();
  const exported = join(dir.path, "exported"), t = join(dir.path, "t");
  Deno.mkdirSync(exported);
  Deno.mkdirSync(t);
  Deno.writeFileSync(join(exported, "big.bin"), BIG);
  Deno.writeFileSync(join(exported, "big2.bin"), BIG);
  Deno.writeTextFileSync(join(exported, "warm.txt"), "warm\n");
  const note = join(dir.path, "note.txt");
  Deno.writeTextFileSync(note, "note\n");
  const go = join(t, "go"),
    reports = join(t, "reports"),
    out = join(t, "out"),
    bigOut = join(t, "big.out");
  assert.equal((await run("mkfifo", [go])).code, 0);
  const script =
    `cd ~/xufs-rhome && exec 3<'${go}' 4>'${reports}' 5>'${out}' 6>'${bigOut}' && /bin/busybox sh -c '${STATIC_STEPS}' sh '${note}'`;
  const session = spawnCli("xufs_session", ["--local-export", exported, "--", script], {
    env: {
      PATH: "/usr/bin:/bin",
      HOME: join(dir.path, "home"),
      SHELL: "/bin/sh",
      LC_ALL: "C",
      XUFS_PRECACHE_MAX: "0",
    },
  });
  let stopped = false, fifo: Deno.FsFile | undefined;
  try {
    fifo = await openWriter(go, session);
    const step = (n: number) => fifo!.writeSync(new TextEncoder().encode(`${n}\n`));
    const report = (key: string) =>
      until(
        () => text(reports).match(new RegExp(`^${key} (\\d+)$`, "m"))?.[1],
        () => `no "${key}" report; reports:\n${text(reports)}\n${session.stdout}${session.stderr}`,
      ).then(Number);
    const held = (pid: number, what: string) =>
      until(
        () => heldInSupervisor(pid) || undefined,
        () => `${what} (pid ${pid}) never waited in the supervisor`,
      );
    const sup = await report("sup");
    const fdsBefore = fdCount(sup), listBefore = fdList(sup);

    Deno.kill(session.pid, "SIGSTOP"); // the manager answers nothing until SIGCONT
    stopped = true;
    step(1);
    await held(await report("first"), "the first cat");
    step(2);
    await until(
      () => text(out) === "note\n" || undefined,
      () =>
        `the second static cat (of a file outside the mount) waited for the first one's fetch: out ${
          JSON.stringify(text(out))
        }`,
    );

    step(3);
    const victim = await report("killed");
    await held(victim, "the cat to kill");
    Deno.kill(victim, "SIGKILL");
    step(4);
    await until(
      () => text(out) === "note\nnote\n" || undefined,
      () =>
        `after a target was killed during its fetch, the supervisor no longer serves: out ${
          JSON.stringify(text(out))
        }`,
    );

    Deno.kill(session.pid, "SIGCONT");
    stopped = false;
    await until(
      () => Deno.statSync(bigOut).size === BIG.length || undefined,
      () => `the first cat never finished: ${Deno.statSync(bigOut).size} bytes`,
    );
    // Both fetches answered: the killed target's worker answers nobody, and closes what it opened.
    await until(
      () => fdCount(sup) === fdsBefore || undefined,
      () =>
        `the supervisor holds ${fdCount(sup)} descriptors (${
          fdList(sup)
        }), ${fdsBefore} before (${listBefore})`,
    );
    step(5);
    fifo.close();
    fifo = undefined;
    const r = await session.result(30_000);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.deepEqual(Deno.readFileSync(bigOut), BIG);
  } finally {
    if (stopped) Deno.kill(session.pid, "SIGCONT");
    fifo?.close(); // the shell's next read ends it
    await session.stop();
  }
});
