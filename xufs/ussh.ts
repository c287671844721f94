/**
 * The host-A half of ussh: runs the file server, opens one ssh master connection (the only one
 * that may ask for a password), checks and if needed installs MyRT on B over it, hands B the
 * session secret, and runs xufs_session there through the tunnel (or raw TCP with --notun).
 */
import { randomBytes } from "node:crypto";
import { dirname, join, relative, resolve } from "node:path";
import { ConfigError, NetworkError } from "../common/errors.ts";
import { closeQuietly } from "../common/io.ts";
import { homeDir } from "../common/fs.ts";
import { VERSION } from "../common/version.ts";
import { FileServer } from "./server.ts";
import { shortHost } from "./writes.ts";
import { cacheId, stripeSocket } from "./session.ts";
import { adaptStripes, type RangeMeter, StripePolicy, stripePlan } from "./stripes.ts";

/** ssh options that take an argument (from ssh(1)). */
const SSH_ARG_OPTS = new Set("BbcDEeFIiJLlmOopQRSWw".split(""));

/** Splits ssh's own arguments: options, the destination, and the remote command. */
export function splitSshArgs(args: string[]): { sshOptions: string[]; host?: string; command: string[] } {
  const sshOptions: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === "--") return { sshOptions, host: args[i + 1], command: args.slice(i + 2) };
    if (!a.startsWith("-") || a === "-") return { sshOptions, host: a, command: args.slice(i + 1) };
    sshOptions.push(a);
    // "-p 22": the option letter is last in a cluster and has no value attached.
    const letters = a.slice(1);
    for (let j = 0; j < letters.length; j++) {
      if (SSH_ARG_OPTS.has(letters[j])) {
        if (j === letters.length - 1) sshOptions.push(args[++i] ?? "");
        break;
      }
    }
  }
  return { sshOptions, command: [] };
}

/** Quotes a word for a POSIX shell. */
export function shq(s: string): string {
  return `'${s.replaceAll("'", `'\\''`)}'`;
}

/** What ussh was asked to do. */
export interface UsshOptions {
  notun: boolean;
  exportDir?: string;
  mount: string;
  sshOptions: string[];
  host: string;
  command: string[];
}

/** The MyRT installation this ussh runs from (PREFIX), to copy to B. */
function installedPrefix(): string {
  const env = Deno.env.get("MYRT_PREFIX");
  if (env) return env;
  // Installed layout: PREFIX/lib/myrt/src/xufs/ussh.ts
  const here = dirname(new URL(import.meta.url).pathname);
  const prefix = resolve(here, "../../../..");
  try {
    Deno.statSync(join(prefix, "lib/myrt/VERSION"));
    return prefix;
  } catch {
    throw new ConfigError(`ussh must run from an installed MyRT (./scripts/install.sh) or with MYRT_PREFIX set: ${here}`);
  }
}

/** The ssh connections to host B: a master (ControlMaster) for commands, and the stripes beside it. */
export class Ssh {
  readonly ctl: string;
  master?: Deno.ChildProcess;

  constructor(readonly o: UsshOptions, runDir: string) {
    this.ctl = join(runDir, "ctl");
  }

  args(extra: string[], remote?: string): string[] {
    return ["-S", this.ctl, ...this.o.sshOptions, ...extra, this.o.host, ...(remote === undefined ? [] : [remote])];
  }

  /** Opens the master connection; the user answers any password prompt here, once. */
  async open(): Promise<void> {
    this.master = new Deno.Command("ssh", {
      args: ["-M", "-N", "-o", "ControlPersist=no", ...this.args([])],
      stdin: "inherit",
      stdout: "null",
      stderr: "inherit",
    }).spawn();
    let exited: Deno.CommandStatus | undefined;
    this.master.status.then((s) => (exited = s));
    const deadline = Date.now() + 120_000;
    while (Date.now() < deadline) {
      if (exited) throw new NetworkError(`ssh to ${this.o.host} failed (exit status ${exited.code})`);
      const check = await new Deno.Command("ssh", { args: ["-O", "check", ...this.args([])], stdout: "null", stderr: "null" }).output();
      if (check.success) return;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new NetworkError(`ssh to ${this.o.host} did not connect within 120 s`);
  }

  /** Runs a remote shell command over the master; returns its stdout. */
  async run(remote: string, stdin?: Uint8Array): Promise<string> {
    const child = new Deno.Command("ssh", {
      args: this.args(["-T"], remote),
      stdin: stdin ? "piped" : "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    if (stdin) {
      const w = child.stdin.getWriter();
      await w.write(stdin);
      await w.close();
    }
    const out = await child.output();
    if (!out.success) {
      throw new NetworkError(`Command on ${this.o.host} failed (exit status ${out.code}): ${new TextDecoder().decode(out.stderr).trim()}`);
    }
    return new TextDecoder().decode(out.stdout);
  }

  /**
   * Opens a further ssh connection (its own TCP connection, not through the master) that only
   * forwards `remoteSock` on B to `localSock` here. BatchMode: it never asks the user; where only
   * a password would do, it fails fast. Resolves with the process once the forward is up, or
   * with ssh's complaint.
   */
  async stripe(remoteSock: string, localSock: string, isUp: () => Promise<boolean>, stop: AbortSignal): Promise<Deno.ChildProcess | string> {
    const child = new Deno.Command("ssh", {
      args: [
        "-S", "none", "-o", "ControlMaster=no", "-o", "ControlPath=none", "-o", "BatchMode=yes",
        "-o", "ExitOnForwardFailure=yes", "-o", "StreamLocalBindUnlink=yes",
        ...this.o.sshOptions, "-N", "-R", `${remoteSock}:${localSock}`, this.o.host,
      ],
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    let exited = false;
    const err = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
    let text = "";
    const reading = (async () => {
      for (let r = await err.read(); !r.done; r = await err.read()) text += r.value;
    })().catch(() => {});
    child.status.then(() => (exited = true));
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline && !exited && !stop.aborted) {
      if (await isUp()) return child;
      await new Promise((r) => setTimeout(r, 200));
    }
    if (!exited) child.kill("SIGTERM");
    await child.status;
    await reading;
    return text.trim().split("\n").pop() || "no connection within 30 s";
  }

  /** Closes the master connection and waits for it. */
  async close(): Promise<void> {
    if (!this.master) return;
    await new Deno.Command("ssh", { args: ["-O", "exit", ...this.args([])], stdout: "null", stderr: "null" }).output().catch(() => {});
    const t = setTimeout(() => {
      try {
        this.master?.kill("SIGTERM");
      } catch { /* gone */ }
    }, 3000);
    await this.master.status;
    clearTimeout(t);
  }
}

/**
 * Installs MyRT in B's ~/myrt over the master connection, without root. PREFIX/bin/myrt is the
 * one-file distribution of this PREFIX (scripts/install.sh packs every PREFIX it installs, and
 * `myrt install` copies itself there): it travels alone and installs itself on B after checking
 * itself and B (size, SHA-256, architecture, glibc). Only a PREFIX without it (copied from an
 * install older than the one-file distribution) still travels as a tar stream of its tree.
 * Sessions that start at once on a fresh B take turns (a directory made atomically is the lock;
 * one older than 10 minutes is a crashed install's), and the second finds the first one's
 * install; files are replaced, never rewritten in place, so a running MyRT keeps its old ones.
 */
async function installOnB(ssh: Ssh, prefix: string): Promise<void> {
  const dist = join(prefix, "bin", "myrt");
  const oneFile = await Deno.stat(dist).then((s) => s.isFile, () => false);
  let tar: Deno.ChildProcess | undefined;
  let unpack: string, payload: ReadableStream<Uint8Array>;
  if (oneFile) {
    unpack = 'mkdir -p "$HOME/myrt/bin" && cat > "$HOME/myrt/bin/myrt.new" && chmod 755 "$HOME/myrt/bin/myrt.new" && ' +
      'mv -f "$HOME/myrt/bin/myrt.new" "$HOME/myrt/bin/myrt" && "$HOME/myrt/bin/myrt" install >/dev/null';
    payload = (await Deno.open(dist)).readable;
  } else {
    tar = new Deno.Command("tar", {
      args: ["-C", prefix, "--exclude=./lib/myrt/cache", "-cf", "-", "./bin", "./lib/myrt"],
      stdout: "piped",
    }).spawn();
    unpack = 'tar -C "$HOME/myrt" --unlink-first -xf -';
    payload = tar.stdout;
  }
  const lock = '"$HOME/myrt/.installing"';
  const script = [
    'mkdir -p "$HOME/myrt"',
    `for i in $(seq 1200); do mkdir ${lock} 2>/dev/null && break; [ -n "$(find ${lock} -maxdepth 0 -mmin +10 2>/dev/null)" ] && rmdir ${lock}; sleep 0.1; done`,
    `if [ "$(cat "$HOME/myrt/lib/myrt/VERSION" 2>/dev/null)" = ${shq(VERSION)} ]; then cat >/dev/null; else ${unpack}; fi`,
    `rc=$?; rmdir ${lock}; [ $rc = 0 ] && "$HOME/myrt/bin/xufs_session" --version >/dev/null`,
  ].join("; ");
  const remote = new Deno.Command("ssh", { args: ssh.args(["-T"], script), stdin: "piped", stdout: "null", stderr: "inherit" }).spawn();
  await payload.pipeTo(remote.stdin).catch(() => {}); // a failure on B shows in its status
  const [t, r] = await Promise.all([tar?.status, remote.status]);
  if ((t && !t.success) || !r.success) throw new NetworkError(`Installing MyRT on ${ssh.o.host} failed`);
}

/** Runs a whole ussh session; returns the remote shell's or command's exit status. */
export async function ussh(o: UsshOptions): Promise<number> {
  const home = homeDir();
  const exportDir = await Deno.realPath(o.exportDir ?? home).catch(() => {
    throw new ConfigError(`Export directory does not exist: ${o.exportDir ?? home}`);
  });
  const cwd = await Deno.realPath(Deno.cwd()).catch(() => exportDir);
  const rel = relative(exportDir, cwd);
  const startIn = rel === "" ? "." : rel.startsWith("..") || rel.startsWith("/") ? "." : rel;
  const secret = randomBytes(32).toString("hex");
  const id = cacheId(shortHost(), exportDir);
  const runDir = join(home, ".xufs", "run", `ussh-${Deno.pid}`);
  await Deno.mkdir(runDir, { recursive: true, mode: 0o700 });
  const server = new FileServer(exportDir, secret);
  const ssh = new Ssh(o, runDir);
  let listener: Deno.Listener | undefined;
  let links: Promise<void> | undefined;
  const stopLinks = new AbortController();
  const ignore = () => {};
  Deno.addSignalListener("SIGINT", ignore); // ssh owns the terminal; we clean up after it
  try {
    await ssh.open();
    const [bHome, bVersion, bArch] = (await ssh.run('printf "%s\\n" "$HOME"; cat "$HOME/myrt/lib/myrt/VERSION" 2>/dev/null || echo none; uname -m')).trim().split("\n");
    const myArch = Deno.build.arch === "x86_64" ? "x86_64" : Deno.build.arch;
    if (bArch !== myArch) throw new ConfigError(`host_B is ${bArch}, this host ${myArch}: install MyRT there by hand`);
    if (bVersion !== VERSION) {
      console.error(`ussh: installing MyRT ${VERSION} into ${o.host}:~/myrt (found: ${bVersion})`);
      await installOnB(ssh, installedPrefix());
    }
    const bRun = `${bHome}/.xufs/run/ussh-${shortHost()}-${Deno.pid}`;
    await ssh.run(`umask 077 && mkdir -p ${shq(bRun)} && cat > ${shq(bRun + "/secret")}`, new TextEncoder().encode(secret));
    const common = ["--id", id, "--mount", o.mount, "--cwd", startIn, "--secret-file", `${bRun}/secret`];
    const tty = Deno.stdin.isTerminal();
    const ttyFlag = tty ? ["-t"] : ["-T"];
    const { stripes, limit } = stripePlan();
    common.push("--stripes", String(stripes));
    const adapt: Adapt | undefined = limit === undefined ? undefined : {
      meter: server.meter,
      limit,
      announce: (count) => server.announce({ op: "links", count }),
      linked: () => server.linked,
    };
    let sessionArgs: string[];
    let portFile: string | undefined;
    if (o.notun) {
      portFile = `${bRun}/port`;
      sessionArgs = [...common, "--port-file", portFile];
    } else {
      const aSock = join(runDir, "server.sock");
      listener = Deno.listen({ transport: "unix", path: aSock });
      Deno.chmodSync(aSock, 0o600);
      (async () => {
        for await (const c of listener!) server.serve(c);
      })().catch(() => {});
      ttyFlag.push("-R", `${bRun}/xufs.sock:${aSock}`);
      sessionArgs = [...common, "--socket", `${bRun}/xufs.sock`];
      links = openStripes(ssh, stripes, `${bRun}/xufs.sock`, aSock, stopLinks.signal, adapt);
    }
    const remoteCmd = [`"$HOME/myrt/bin/xufs_session"`, ...sessionArgs.map(shq), "--", ...o.command.map(shq)].join(" ");
    console.error(`XUFS mounting ${o.mount} …`);
    const session = new Deno.Command("ssh", {
      args: ssh.args(ttyFlag, `exec ${remoteCmd}`),
      stdin: "inherit",
      stdout: "inherit",
      stderr: "inherit",
    }).spawn();
    if (portFile) {
      links = connectNotun(ssh, o.host, portFile, server, stripes, stopLinks.signal, adapt).catch((e) => console.error(`ussh: ${(e as Error).message}`));
    }
    const status = await session.status;
    await ssh.run(`rm -rf ${shq(bRun)}`).catch(() => {});
    return status.code;
  } finally {
    stopLinks.abort();
    await links;
    Deno.removeSignalListener("SIGINT", ignore);
    try {
      listener?.close();
    } catch { /* closed */ }
    await ssh.close();
    await Deno.remove(runDir, { recursive: true }).catch(() => {});
  }
}

/** Backoff of re-opening a lost connection of the file protocol. */
const RETRY_FIRST_MS = 200, RETRY_MAX_MS = 5000;

/** Waits `ms`, or less when `stop` is aborted first. */
function pause(ms: number, stop: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    stop.addEventListener("abort", () => {
      clearTimeout(t);
      resolve();
    }, { once: true });
  });
}

/** Adaptive striping of a session (xufs/stripes.ts): the file server's meter, the limit, and how B hears of new links. */
export interface Adapt {
  meter: RangeMeter;
  limit: number;
  announce: (count: number) => void;
  /** Connections the file server serves now. */
  linked: () => number;
}

/**
 * Runs `adapt`'s growth until `stop`: B is told the new count first (it dials each new socket as
 * soon as it appears), then `open(k, isUp)` brings connection k (from the session's first
 * `stripes` on), counted up once the file server serves one more connection — no polling of B
 * over ssh in the middle of the transfer that asked for the step.
 */
function growStripes(
  stripes: number,
  adapt: Adapt | undefined,
  stop: AbortSignal,
  open: (k: number, isUp: () => Promise<boolean>) => Promise<unknown>,
): void {
  if (!adapt || stop.aborted) return;
  const end = adaptStripes(adapt.meter, new StripePolicy(stripes, adapt.limit), async (from, to) => {
    if (stop.aborted) return;
    adapt.announce(to);
    const base = adapt.linked();
    await Promise.all(Array.from({ length: to - from }, (_, i) => open(from + i, () => Promise.resolve(adapt.linked() > base + i))));
  });
  stop.addEventListener("abort", end, { once: true });
}

/** Awaits every promise of `loops`, also those added while it waits. */
async function allOf(loops: Promise<void>[]): Promise<void> {
  while (loops.length) await Promise.all(loops.splice(0));
}

/**
 * The further ssh connections of a tunnel session, one per stripe beyond the main one, opened
 * side by side and opened again whenever one drops, until `stop`; with `adapt`, more while a
 * large transfer's throughput grows. The first that cannot be opened without asking (a
 * password-only login) is reported, and the session goes on with the connections it has.
 * Resolves when every one has ended after `stop`.
 */
export async function openStripes(ssh: Ssh, stripes: number, bSock: string, aSock: string, stop: AbortSignal, adapt?: Adapt): Promise<void> {
  const loops: Promise<void>[] = [];
  const failures: string[] = [];
  /** Keeps connection `k` up until `stop` (up: its socket on B is there); resolves with whether its first attempt came up. */
  const open = (k: number, up?: () => Promise<boolean>): Promise<boolean> => {
    const remote = stripeSocket(bSock, k);
    const isUp = up ?? (async () => (await ssh.run(`test -S ${shq(remote)} && echo up`).catch(() => "")).trim() === "up");
    let reportFirst: (up: boolean) => void = () => {};
    const first = new Promise<boolean>((r) => (reportFirst = r));
    loops.push((async () => {
      for (let attempt = 0, wait = RETRY_FIRST_MS; !stop.aborted; attempt++) {
        const r = await ssh.stripe(remote, aSock, isUp, stop);
        if (typeof r === "string") {
          if (attempt === 0) {
            failures.push(r);
            reportFirst(false);
            return; // this login cannot be made without asking
          }
          await pause(wait, stop);
          wait = Math.min(RETRY_MAX_MS, wait * 2);
          continue;
        }
        if (attempt === 0) reportFirst(true);
        wait = RETRY_FIRST_MS;
        const onStop = () => r.kill("SIGTERM");
        // A connection that came up just as the session ended: the abort has already happened.
        if (stop.aborted) onStop();
        else stop.addEventListener("abort", onStop, { once: true });
        await r.status; // dropped: opened again (B dials the socket again when it is back)
        stop.removeEventListener("abort", onStop);
      }
      reportFirst(false);
    })());
    return first;
  };
  const ups = await Promise.all(Array.from({ length: Math.max(0, stripes - 1) }, (_, i) => open(i + 1)));
  if (failures.length && !stop.aborted) {
    console.error(`ussh: striping over ${stripes} connections needs ssh logins that do not ask (keys or an agent); ` +
      `using ${ups.filter(Boolean).length + 1}: ${failures[0]}`);
  }
  // Growth only where every further login works without asking.
  if (!failures.length) growStripes(stripes, adapt, stop, open);
  await allOf(loops);
}

/**
 * --notun: waits for B's port, then keeps `stripes` TCP connections to it and serves the export
 * on each; a connection that ends while the session runs is made again, with backoff, until
 * `stop` (B re-attaches it).
 */
async function connectNotun(ssh: Ssh, host: string, portFile: string, server: FileServer, stripes: number, stop: AbortSignal, adapt?: Adapt): Promise<void> {
  const g = await new Deno.Command("ssh", { args: ["-G", ...ssh.o.sshOptions, host], stdout: "piped", stderr: "null" }).output();
  const hostname = new TextDecoder().decode(g.stdout).match(/^hostname (\S+)$/m)?.[1] ?? host;
  const deadline = Date.now() + 30_000;
  let port = 0;
  while (!port && !stop.aborted) {
    if (Date.now() > deadline) throw new NetworkError(`host_B did not open a port in XUFS_PORT_RANGE within 30 s`);
    port = Number((await ssh.run(`cat ${shq(portFile)} 2>/dev/null || true`).catch(() => "")).trim());
    if (!port) await pause(200, stop);
  }
  const keep = async () => {
    for (let wait = RETRY_FIRST_MS; !stop.aborted;) {
      let conn: Deno.TcpConn;
      try {
        conn = await Deno.connect({ hostname, port });
      } catch {
        await pause(wait, stop);
        wait = Math.min(RETRY_MAX_MS, wait * 2);
        continue;
      }
      conn.setNoDelay(true);
      const onStop = () => closeQuietly(conn);
      stop.addEventListener("abort", onStop, { once: true });
      const t0 = Date.now();
      await server.serve(conn);
      stop.removeEventListener("abort", onStop);
      if (Date.now() - t0 > 5000) wait = RETRY_FIRST_MS;
      await pause(wait, stop);
      wait = Math.min(RETRY_MAX_MS, wait * 2);
    }
  };
  const loops = Array.from({ length: stripes }, keep);
  // B takes every connection that proves the secret: growing is opening more.
  growStripes(stripes, adapt && { ...adapt, announce: () => {} }, stop, () => {
    loops.push(keep());
    return Promise.resolve();
  });
  await allOf(loops);
}
