/**
 * The seccomp supervisor across 1,000 connections: a static Go client run by the launcher
 * (uvpn_supervise) makes 1,000 HTTP requests, each over a new overlay connection, to the
 * supervised static Go server in the other subnet. Between the 100th and the 1,000th the
 * supervisor's descriptors must not grow and its memory only within a small bound; in the
 * sanitizer pass (scripts/test.sh), the instrumented supervisor runs with LeakSanitizer on and
 * must end without a leak report.
 */
import assert from "node:assert/strict";
import { Proc, SANITIZE_RT, UVPN_SUPERVISE } from "../helpers.ts";
import { withGoServer } from "./static_fixtures.ts";

const CONNECTIONS = 1000;

/** The supervisor: the launcher's child running the launcher's executable (the launcher's own
 * process waits for the program and mirrors its exit). */
function supervisorOf(front: number): number {
  const exe = Deno.readLinkSync(`/proc/${front}/exe`);
  for (const e of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    try {
      const stat = Deno.readTextFileSync(`/proc/${e.name}/stat`).replace(/^.*\) /s, "").split(" ");
      if (Number(stat[1]) === front && Deno.readLinkSync(`/proc/${e.name}/exe`) === exe) return Number(e.name);
    } catch { /* gone meanwhile */ }
  }
  throw new Error(`no supervisor under the launcher ${front}`);
}

/**
 * The socket inodes of the engine's holding port in process pid (native/uvpn/core/park.c: a
 * listener on 127.0.0.1 and the one connection that fills its queue), opened the first time a
 * router's answer comes late, so not a leak: a listening socket of pid that a socket of pid is
 * connected to, and those sockets.
 */
function holdingPort(pid: number, inodes: Set<string>): Set<string> {
  const rows = Deno.readTextFileSync(`/proc/${pid}/net/tcp`).trim().split("\n").slice(1).map((l) => l.trim().split(/\s+/));
  const mine = rows.filter((r) => inodes.has(r[9]));
  const port = (addr: string) => addr.split(":")[1];
  const ports = new Set(mine.filter((r) => r[3] === "0A" && mine.some((c) => port(c[2]) === port(r[1]))).map((r) => port(r[1])));
  return new Set(mine.filter((r) => ports.has(port(r[1])) || ports.has(port(r[2]))).map((r) => r[9]));
}

/** Open descriptors (the holding port's left out) and resident memory (KiB) of process pid. */
function usage(pid: number): { fds: number; rssKiB: number } {
  const links = [...Deno.readDirSync(`/proc/${pid}/fd`)].map((e) => {
    try {
      return Deno.readLinkSync(`/proc/${pid}/fd/${e.name}`);
    } catch {
      return ""; // closed meanwhile
    }
  });
  const sockets = new Set(links.map((l) => l.match(/^socket:\[(\d+)\]$/)?.[1]).filter((i): i is string => i !== undefined));
  const held = holdingPort(pid, sockets);
  const fds = links.filter((l) => !held.has(l.match(/^socket:\[(\d+)\]$/)?.[1] ?? "")).length;
  const rss = Deno.readTextFileSync(`/proc/${pid}/status`).match(/^VmRSS:\s+(\d+) kB/m);
  return { fds, rssKiB: Number(rss?.[1] ?? 0) };
}

Deno.test("supervisor: 1,000 overlay connections leak no descriptor and no memory in the supervisor", async () => {
  await withGoServer(async (o, s, go) => {
    const addr = await o.register(o.a);
    const env: Record<string, string> = { ...o.homeEnv(o.a), UVPN_SRC_ADDR: addr };
    // LeakSanitizer at the launcher's exit (the sanitizer pass turns it off for everything else).
    if (SANITIZE_RT) env.ASAN_OPTIONS = `${Deno.env.get("ASAN_OPTIONS") ?? ""}:detect_leaks=1`;
    const p = new Proc(UVPN_SUPERVISE, ["--", go.client, "client", `http://${s.addr}:8080/`, String(CONNECTIONS), "1500"], { env });
    try {
      await p.waitFor(/^at 100$/m, 60_000);
      const sup = supervisorOf(p.pid);
      const first = usage(sup);
      await p.waitFor(new RegExp(`^at ${CONNECTIONS}$`, "m"), 180_000);
      const last = usage(sup);
      const st = await p.result(30_000);
      assert.equal(st.code, 0, p.stderr);
      assert.match(p.stdout, new RegExp(`local=${addr.replaceAll(".", "\\.")}:\\d+ remote=${s.addr.replaceAll(".", "\\.")}:8080`));
      assert.doesNotMatch(p.stderr, /LeakSanitizer/, p.stderr);
      assert.ok(last.fds <= first.fds, `the supervisor's descriptors grew from ${first.fds} to ${last.fds} over ${CONNECTIONS - 100} connections`);
      // ASan's quarantine keeps freed memory for a while: the bound is for the plain build.
      const boundKiB = SANITIZE_RT ? 64 * 1024 : 1024;
      assert.ok(last.rssKiB - first.rssKiB < boundKiB, `the supervisor's memory grew by ${last.rssKiB - first.rssKiB} KiB over ${CONNECTIONS - 100} connections`);
      console.log(`supervisor after 100 connections: ${first.fds} fds, ${first.rssKiB} KiB; after ${CONNECTIONS}: ${last.fds} fds, ${last.rssKiB} KiB`);
    } finally {
      await p.stop();
    }
  });
});
