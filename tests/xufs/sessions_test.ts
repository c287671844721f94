/**
 * Sessions through ussh against a real sshd, in both transports: two sessions to one export on
 * one B writing at once, with A reachable and with A away and coming back (issue 11, case 3); a
 * directory of 200,000 entries listed without harm to the session, and a link that times out or
 * drops re-attached with the queued work going on (case 6); the end of a session waiting, with a
 * progress line, until every change reached A, and an interrupt there leaving them for the next.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { type Proc, run } from "../helpers.ts";
import { awaitMarker, conflictRe, type Hosts, namesMatching, TRANSPORTS, usshTest, waitForFile, withHosts } from "./hosts.ts";

/** B writes `n` files named PREFIX-i holding "PREFIX i". */
const writes = (prefix: string, n: number) => `for i in $(seq ${n}); do echo "${prefix} $i" > ${prefix}-$i; done`;

function assertWritten(a: string, prefix: string, n: number): void {
  for (let i = 1; i <= n; i++) assert.equal(Deno.readTextFileSync(join(a, `${prefix}-${i}`)), `${prefix} ${i}\n`, `${prefix}-${i}`);
}

/** Kills the established TCP connections to B's notun ports (both ends), as a network drop would. */
async function dropNotunLinks(lo: number): Promise<void> {
  const r = await run("ss", ["-K", "-tn", `( dport >= :${lo} and dport <= :${lo + 20} ) or ( sport >= :${lo} and sport <= :${lo + 20} )`]);
  assert.equal(r.code, 0, r.stderr);
}

for (const notun of TRANSPORTS) {
  const t = notun ? " (--notun)" : "";
  Deno.test({
    ...usshTest,
    name: `xufs sessions${t}: two sessions to one export on one B write at once, with A reachable and with A away`,
    async fn() {
      await withHosts(async (h) => {
        Deno.writeTextFileSync(join(h.a, "shared.txt"), "on A\n");
        const both = await Promise.all(["s1", "s2"].map((s) => h.ussh(`cd ~/xufs-rhome && ${writes(s, 40)} && cat shared.txt`, { notun })));
        for (const r of both) {
          assert.equal(r.code, 0, r.stderr);
          assert.equal(r.stdout, "on A\n");
        }
        assertWritten(h.a, "s1", 40);
        assertWritten(h.a, "s2", 40);
        // A goes away (its ussh stopped) while both sessions write, and comes back.
        const procs = ["w1", "w2"].map((s) =>
          h.spawn(`cd ~/xufs-rhome && touch ~/m-started-${s} && ${awaitMarker("m-stopped")} && ${writes(s, 30)} && ` +
            `touch ~/m-written-${s} && ${awaitMarker("m-resumed")} && cat s1-1`, { notun })
        );
        for (const s of ["w1", "w2"]) await waitForFile(h.b(`m-started-${s}`), 60_000, procs[s === "w1" ? 0 : 1]);
        for (const p of procs) Deno.kill(p.pid, "SIGSTOP");
        if (notun) await dropNotunLinks(h.portLo);
        Deno.writeTextFileSync(h.b("m-stopped"), "");
        for (const s of ["w1", "w2"]) await waitForFile(h.b(`m-written-${s}`), 60_000, procs[s === "w1" ? 0 : 1]);
        for (const p of procs) Deno.kill(p.pid, "SIGCONT");
        // With --notun the links were dropped, and B reads only once A has dialled in again: an
        // open in between fails at once with EIO (A unreachable), which a run once met.
        if (notun) for (const p of procs) await p.waitFor(/link to host A re-established/, 60_000);
        Deno.writeTextFileSync(h.b("m-resumed"), "");
        for (const p of procs) {
          const r = await p.result(120_000);
          assert.equal(r.code, 0, r.stderr);
          assert.equal(r.stdout, "s1 1\n");
        }
        assertWritten(h.a, "w1", 30);
        assertWritten(h.a, "w2", 30);
      }, { freshB: true });
    },
  });
}

/**
 * B's shell writes `n` files named PREFIX-i and exits while A is stopped (its ussh SIGSTOPped);
 * runs `whileWaiting` once the session shows it waits for them, then lets A go on.
 */
async function exitWithAStopped(h: Hosts, prefix: string, n: number, whileWaiting: (p: Proc) => Promise<void>): Promise<Proc> {
  h.bashrc("export XUFS_TIMEOUT=2");
  const p = h.spawn(`cd ~/xufs-rhome && touch ~/m-ready && ${awaitMarker("m-stopped")} && ${writes(prefix, n)}`);
  await waitForFile(h.b("m-ready"), 60_000, p);
  Deno.kill(p.pid, "SIGSTOP");
  Deno.writeTextFileSync(h.b("m-stopped"), "");
  try {
    await p.waitFor(/xufs: writing back \d+ change\(s\), [0-9.]+ MiB left/, 30_000);
    await whileWaiting(p);
  } finally {
    Deno.kill(p.pid, "SIGCONT");
  }
  return p;
}

Deno.test({
  ...usshTest,
  name: "xufs sessions: when B's shell exits, ussh waits until every change reached A, with a progress line",
  async fn() {
    await withHosts(async (h) => {
      // A stops answering; B's shell writes and exits, and the session waits, saying what is left.
      const p = await exitWithAStopped(h, "late", 20, async () => {});
      const r = await p.result(120_000);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stderr, /xufs: every change reached host A/);
      assert.doesNotMatch(r.stderr, /not written back/);
      assertWritten(h.a, "late", 20);
    });
  },
});

Deno.test({
  ...usshTest,
  name: "xufs sessions: an interrupt while the session waits leaves the changes for the next session, which sends them",
  async fn() {
    await withHosts(async (h) => {
      const p = await exitWithAStopped(h, "left", 10, async (waiting) => {
        // ^C in the session on B (as a terminal would send it) while it waits for A.
        const pids = (await run("pgrep", ["-f", `xufs_session\\.ts .*${h.bHome}/`])).stdout.trim().split("\n").filter(Boolean);
        assert.equal(pids.length, 1, `B's session: ${pids.join(" ")}`);
        Deno.kill(Number(pids[0]), "SIGINT");
        await waiting.waitFor(/xufs: \d+ change\(s\) not written back yet \(interrupted\); they are kept in \S+\/queue and sent by the next session to this export/, 30_000);
      });
      const r = await p.result(60_000);
      assert.equal(r.code, 0, r.stderr);
      // (What was already on its way when A stopped may land when A goes on: the next session
      // sends it again and A answers it without applying it twice.)
      const next = await h.ussh("true");
      assert.equal(next.code, 0, next.stderr);
      assert.match(next.stderr, /xufs: \d+ change\(s\) from an earlier session are queued for host A/);
      assertWritten(h.a, "left", 10);
      assert.deepEqual(namesMatching(h.a, conflictRe(".*")), []);
    });
  },
});

/**
 * One session over 200,000 entries in a directory and a subtree of 12,000 (listings far beyond
 * one message), then a stall of A longer than XUFS_TIMEOUT (B's writes meanwhile are queued),
 * a file made on A while B's link is down, and a re-attach; with --notun the connections are
 * also dropped (reset) while A is stopped.
 */
async function hugeAndStalled(h: Hosts, notun: boolean): Promise<void> {
  for (const path of [...["m-ready", "m-stopped", "m-written", "m-resumed"].map((m) => h.b(m)), join(h.a, "fresh.txt")]) {
    try {
      Deno.removeSync(path); // left by the session before
    } catch { /* first session */ }
  }
  const p = h.spawn(
    "cd ~/xufs-rhome && ls -f huge | wc -l && find wide -type f | wc -l && ls huge/f199999 && cat small.txt && " +
      `echo before > before.txt && touch ~/m-ready && ${awaitMarker("m-stopped")} && echo during > during.txt && ` +
      `touch ~/m-written && ${awaitMarker("m-resumed")} && echo after > after.txt && cat fresh.txt`,
    { notun, timeoutMs: 300_000 },
  );
  await waitForFile(h.b("m-ready"), 180_000, p);
  // A stops answering: B's link shows no progress for XUFS_TIMEOUT, is declared lost, and B
  // re-attaches when A is back; B's writes meanwhile are queued, then sent.
  Deno.kill(p.pid, "SIGSTOP");
  if (notun) await dropNotunLinks(h.portLo);
  Deno.writeTextFileSync(h.b("m-stopped"), "");
  await waitForFile(h.b("m-written"), 30_000, p);
  await p.waitFor(/link to host A lost/, 30_000);
  Deno.writeTextFileSync(join(h.a, "fresh.txt"), "made on A while B's link was down\n");
  Deno.kill(p.pid, "SIGCONT");
  await p.waitFor(/link to host A re-established/, 30_000);
  Deno.writeTextFileSync(h.b("m-resumed"), "");
  const r = await p.result(300_000);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, "200002\n12000\nhuge/f199999\nsmall\nmade on A while B's link was down\n");
  for (const f of ["before", "during", "after"]) assert.equal(Deno.readTextFileSync(join(h.a, `${f}.txt`)), `${f}\n`);
}

Deno.test({
  ...usshTest,
  name: "xufs sessions: 200,000 entries in a directory are listed, and a link that times out or drops is re-attached (tunnel, then --notun)",
  async fn() {
    await withHosts(async (h) => {
      const made = await run("python3", ["-c", [
        "import os, sys",
        "a = sys.argv[1]",
        "os.mkdir(a + '/huge')",
        "for i in range(200000): open('%s/huge/f%06d' % (a, i), 'w').close()",
        "for d in range(3):",
        "    os.makedirs('%s/wide/d%d' % (a, d))",
        "    for i in range(4000): open('%s/wide/d%d/g%05d' % (a, d, i), 'w').close()",
      ].join("\n"), h.a], { timeoutMs: 300_000 });
      assert.equal(made.code, 0, made.stderr);
      Deno.writeTextFileSync(join(h.a, "small.txt"), "small\n");
      h.bashrc("export XUFS_TIMEOUT=2");
      // The second session revalidates the 200,000 cached entries.
      for (const notun of TRANSPORTS) await hugeAndStalled(h, notun);
    }, { inMemory: true });
  },
});
