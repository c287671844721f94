/**
 * Fixture of the ussh end-to-end tests: a real sshd on loopback playing host B
 * (tests/xufs/sshd.ts), MyRT installed once per test file for host A, A's export, and ussh runs
 * in either transport — to completion, or in the background with their output followed live —
 * plus bounded waits for the marker files that B's scripts and the tests hand each other.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { freePort, IS_ROOT, Proc, ROOT, run, type RunResult, sleep } from "../helpers.ts";
import { Sshd } from "./sshd.ts";

/** Whether the ussh tests can run here (sshd needs root, not uid 0 of a user namespace). */
export const isRoot = IS_ROOT;
/** Options of every ussh test: skipped without root (Deno's op and resource sanitizers stay on). */
export const usshTest = { ignore: !isRoot };
/** Both transports: the ssh tunnel, then raw TCP (--notun). */
export const TRANSPORTS = [false, true];
/** The PATH of host A's and host B's programs. */
const PATH = "/usr/bin:/bin:/usr/sbin:/sbin";

let installed: Promise<string> | undefined;

/**
 * MyRT installed for host A: once per run of scripts/test.sh (in its MYRT_TEST_RUN_DIR, which
 * it removes at the end), else once per test file (removed when the file's tests end).
 */
function prefixA(): Promise<string> {
  installed ??= (async () => {
    const shared = Deno.env.get("MYRT_TEST_RUN_DIR");
    let base: string;
    if (shared) base = shared;
    else {
      base = Deno.makeTempDirSync({ prefix: "myrt-prefix-" });
      globalThis.addEventListener("unload", () => Deno.removeSync(base, { recursive: true }));
    }
    const prefix = join(base, "prefixA"), done = join(base, "prefixA.done");
    using lock = await Deno.open(join(base, "prefixA.lock"), { create: true, write: true });
    await lock.lock(true);
    if (!existsSync(done)) {
      const r = await run(join(ROOT, "scripts/install.sh"), [prefix], { env: { DENO: Deno.execPath() }, timeoutMs: 120_000 });
      if (r.code !== 0) throw new Error(`install: ${r.stderr}`);
      Deno.writeTextFileSync(done, "");
    }
    return prefix;
  })();
  return installed;
}

/** Options of one ussh run. */
export interface UsshRun {
  notun?: boolean;
  /** ssh client config (default: the sshd's). */
  config?: string;
  env?: Record<string, string>;
  /** Directory ussh starts in on A (default: A's home). */
  cwd?: string;
  timeoutMs?: number;
}

/** Host A (export and MyRT) and host B (a real sshd with its own HOME). */
export class Hosts {
  /** A's home, the export. */
  readonly a: string;
  readonly bHome: string;
  /** A low port of B's XUFS_PORT_RANGE (20 ports from here). */
  readonly portLo = freePort();

  private constructor(readonly dir: string, readonly sshd: Sshd, readonly prefix: string) {
    this.a = join(dir, "ahome");
    this.bHome = sshd.bHome;
    Deno.mkdirSync(this.a, { recursive: true });
    this.bashrc("");
  }

  /**
   * Starts B's sshd in `dir` (with `sshdConfig` added to its config) and installs MyRT for A;
   * unless `freshB`, B's ~/myrt is A's installation (a symlink), so ussh installs nothing.
   */
  static async start(dir: string, sshdConfig = "", freshB = false): Promise<Hosts> {
    const sshd = new Sshd(dir, sshdConfig);
    await sshd.start();
    const prefix = await prefixA();
    if (!freshB) Deno.symlinkSync(prefix, join(sshd.bHome, "myrt"));
    return new Hosts(dir, sshd, prefix);
  }

  /** B's ~/.bashrc: XUFS_PORT_RANGE for --notun, then `extra`. */
  bashrc(extra: string): void {
    Deno.writeTextFileSync(join(this.bHome, ".bashrc"), `export XUFS_PORT_RANGE=${this.portLo},${this.portLo + 20}\n${extra}\n`);
  }

  /** ussh's command line for `cmd` on B. */
  args(cmd: string, o: UsshRun = {}): string[] {
    return [...(o.notun ? ["--notun"] : []), "-F", o.config ?? this.sshd.clientConfig, "hostb", cmd];
  }

  #opts(o: UsshRun) {
    return { env: { HOME: this.a, PATH, ...o.env }, cwd: o.cwd ?? this.a, timeoutMs: o.timeoutMs ?? 120_000 };
  }

  /** Runs `cmd` on B through ussh to the end. */
  ussh(cmd: string, o: UsshRun = {}): Promise<RunResult> {
    return run(join(this.prefix, "bin", "ussh"), this.args(cmd, o), this.#opts(o));
  }

  /** Starts `cmd` on B through ussh in the background. */
  spawn(cmd: string, o: UsshRun = {}): Proc {
    return new Proc(join(this.prefix, "bin", "ussh"), this.args(cmd, o), this.#opts(o));
  }

  /** A path on B, relative to B's home. */
  b(rel: string): string {
    return join(this.bHome, rel);
  }

  async stop(): Promise<void> {
    await this.sshd.stop();
  }
}

/**
 * Runs `fn` with fresh hosts in a temporary directory, stopping sshd and removing it after.
 * With `inMemory` the directory is a tmpfs of its own (mounted, as root, for this test only):
 * hundreds of thousands of files are made there in seconds, not minutes. With `freshB`, B has
 * no MyRT and the first ussh installs it there.
 */
export async function withHosts(
  fn: (h: Hosts) => Promise<void>,
  o: { sshdConfig?: string; inMemory?: boolean; freshB?: boolean } = {},
): Promise<void> {
  const dir = Deno.makeTempDirSync({ prefix: "myrt-test-" });
  const mounted = o.inMemory && (await run("mount", ["-t", "tmpfs", "-o", "size=4g,mode=0755", "tmpfs", dir])).code === 0;
  let h: Hosts | undefined;
  try {
    h = await Hosts.start(dir, o.sshdConfig, o.freshB);
    await fn(h);
  } finally {
    await h?.stop();
    if (mounted) await run("umount", [dir]);
    Deno.removeSync(dir, { recursive: true });
  }
}

/**
 * Waits (at most `ms`) until `cond` holds, polling every 20 ms; throws `what` if it never did,
 * or (with `proc`) as soon as that process ended without it.
 */
export async function waitUntil(cond: () => boolean, what: string, ms = 30_000, proc?: Proc): Promise<void> {
  const end = Date.now() + ms;
  let exited = false;
  proc?.done.then(() => (exited = true));
  for (;;) {
    try {
      if (cond()) return;
    } catch { /* not yet */ }
    if (exited) {
      const r = await proc!.result();
      throw new Error(`${what}: never came, ussh exited ${r.code}:\n${r.stdout}\n${r.stderr}`);
    }
    if (Date.now() > end) throw new Error(`Timed out after ${ms} ms waiting for ${what}`);
    await sleep(20);
  }
}

/** Waits until `path` exists (see waitUntil). */
export function waitForFile(path: string, ms = 30_000, proc?: Proc): Promise<void> {
  return waitUntil(() => Deno.statSync(path) !== null, path, ms, proc);
}

/** A shell loop (for B's scripts) that waits at most 30 s for marker `name` in B's home. */
export function awaitMarker(name: string): string {
  return `for i in $(seq 600); do [ -e ~/${name} ] && break; sleep 0.05; done; [ -e ~/${name} ] || { echo "no ${name}" >&2; exit 99; }`;
}

/** Names in directory `dir` matching `re`. */
export function namesMatching(dir: string, re: RegExp): string[] {
  return [...Deno.readDirSync(dir)].map((e) => e.name).filter((n) => re.test(n)).sort();
}

/** A conflict copy's name: NAME.conflict-HOST-YYYYMMDD-HHMMSS-N. */
export function conflictRe(name: string): RegExp {
  return new RegExp(`^${name.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}\\.conflict-.+-\\d{8}-\\d{6}-\\d+$`);
}
