/**
 * An XUFS session on host B: connects to A's file server (through the ssh-forwarded Unix
 * sockets, or raw TCP with --notun, or an in-process export for local use) and keeps connecting
 * as links are lost, runs the cache manager on a cache directory no other session holds, creates
 * the mount point, runs the shell or command under libxufs.so inside the mount, then waits until
 * every change reached A (with a progress line; an interrupt or a lost link leaves them for the
 * next session, which it says), unmounts and returns the shell's exit status.
 */
import { dirname, join } from "node:path";
import { sha256 } from "../common/bytes.ts";
import { ConfigError, NetworkError } from "../common/errors.ts";
import { closeQuietly, withTimeout } from "../common/io.ts";
import { CacheManager, type CacheOptions, lockCache, TRANSFER_DEFAULTS } from "./cache/mod.ts";
import { DrainProgress, progressWanted } from "./progress.ts";
import { DEFAULT_TIMEOUT_MS, Remote } from "./remote.ts";
import { FileServer } from "./server.ts";
import { shortHost } from "./writes.ts";
import { isDynamic } from "../cli/overlay_run.ts";

/** How a session reaches A. */
export type Link =
  | { kind: "unix"; path: string }
  | { kind: "notun"; portFile: string }
  | { kind: "local"; exportDir: string };

/** Options of a session. */
export interface SessionOptions {
  id: string;
  mount: string;
  /** Directory to start in, relative to the export root ("." for the root). */
  cwd: string;
  secret: string;
  link: Link;
  command: string[];
  home: string;
  /** TCP connections to A for striped transfers, the main one included (default 1). */
  stripes?: number;
}

/** Handshakes with strangers on the --notun port wait at most this long, this many at once. */
const NOTUN_HANDSHAKE_MS = 5000, NOTUN_HANDSHAKES = 64;

/** A positive integer from the environment, or `fallback` when unset. */
export function envCount(name: string, fallback: number, min = 1): number {
  const text = Deno.env.get(name);
  if (text === undefined || text === "") return fallback;
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < min) throw new ConfigError(`${name} must be an integer of at least ${min}: ${text}`);
  return n;
}

/** The transfer knobs of a cache manager, from XUFS_STRIPE_SIZE, XUFS_STRIPE_MIN, XUFS_PRECACHE_*. */
export function transferOptions(): Partial<CacheOptions> {
  const d = TRANSFER_DEFAULTS;
  return {
    stripeSize: envCount("XUFS_STRIPE_SIZE", d.stripeSize),
    stripeMin: envCount("XUFS_STRIPE_MIN", d.stripeMin),
    precacheMax: envCount("XUFS_PRECACHE_MAX", d.precacheMax, 0),
    precacheJobs: envCount("XUFS_PRECACHE_JOBS", d.precacheJobs),
    precacheBytes: envCount("XUFS_PRECACHE_BYTES", d.precacheBytes, 0),
    progress: progressWanted(),
  };
}

/** Milliseconds without progress before a link to A counts as lost (XUFS_TIMEOUT, in seconds). */
export function linkTimeoutMs(): number {
  return envCount("XUFS_TIMEOUT", DEFAULT_TIMEOUT_MS / 1000) * 1000;
}

/** Stable cache id of an export: A's host and the export path. */
export function cacheId(host: string, exportDir: string): string {
  return `${host.replace(/[^A-Za-z0-9.-]/g, "_")}-${sha256(`${host}:${exportDir}`).slice(0, 12)}`;
}

/** A native library of XUFS beside the installed commands, else in the build tree. */
function nativeLib(name: string, variable: string): string {
  const src = dirname(dirname(new URL(import.meta.url).pathname));
  for (const p of [join(src, `../../../bin/${name}`), join(src, `native/build/${name}`)]) {
    try {
      Deno.statSync(p);
      return p;
    } catch { /* next */ }
  }
  throw new ConfigError(`${name} not found beside ${src}: reinstall MyRT or set ${variable}`);
}

/** libxufs.so: $XUFS_PRELOAD, else beside the installed commands, else the build tree. */
export function preloadPath(): string {
  return Deno.env.get("XUFS_PRELOAD") || nativeLib("libxufs.so", "XUFS_PRELOAD");
}

/**
 * libxufs_audit.so, the dynamic loader's half (LD_AUDIT: libraries under the mount are fetched
 * before the loader opens them): $XUFS_AUDIT, else found as libxufs.so is; "" when XUFS_AUDIT
 * is "none".
 */
export function auditPath(): string {
  const env = Deno.env.get("XUFS_AUDIT");
  if (env === "none") return "";
  return env || nativeLib("libxufs_audit.so", "XUFS_AUDIT");
}

/**
 * The launcher that runs a static `shell` under the seccomp supervisor's XUFS mode
 * (`uvpn_supervise --xufs`, beside libxufs.so; docs/XUFS.md, "Static programs"), or undefined
 * for a dynamic shell (libxufs.so serves it and starts static programs that way itself), with
 * XUFS_STATIC=off, or without a launcher.
 */
export function staticLauncher(shell: string): string | undefined {
  if (Deno.env.get("XUFS_STATIC") === "off") return undefined;
  try {
    if (isDynamic(shell)) return undefined;
    const lib = preloadPath().split(/[: ]/).filter(Boolean).at(-1)!;
    const launcher = join(dirname(lib), "uvpn_supervise");
    Deno.statSync(launcher);
    return launcher;
  } catch {
    return undefined; /* unreadable shell or no launcher: started as it is */
  }
}

/** Parses XUFS_PORT_RANGE ("50000,51000"). */
export function portRange(text: string | undefined): [number, number] {
  const m = /^\s*(\d+)\s*[,-]\s*(\d+)\s*$/.exec(text ?? "");
  if (!m) throw new ConfigError(`XUFS_PORT_RANGE must be "LOW,HIGH" on this host for --notun: ${text ?? "(unset)"}`);
  const lo = Number(m[1]), hi = Number(m[2]);
  if (lo < 1 || hi > 65535 || lo > hi) throw new ConfigError(`XUFS_PORT_RANGE out of range: ${text}`);
  return [lo, hi];
}

/** The socket of extra link `i` (1 ≤ i < stripes) beside the main tunnel socket. */
export function stripeSocket(main: string, i: number): string {
  return `${main}-${i}`;
}

/** Dials a Unix socket that ssh (or the local server) may not have made yet, for `ms`. */
async function dialUnix(path: string, secret: string, timeoutMs: number, ms: number): Promise<Remote> {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      const conn = await Deno.connect({ transport: "unix", path });
      return await withTimeout(Remote.open(conn, secret, timeoutMs), timeoutMs, "session handshake", () => closeQuietly(conn));
    } catch (e) {
      if (Date.now() > deadline) throw new NetworkError(`Cannot reach host A through ${path}: ${(e as Error).message}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

/** The links of a session: the first one, and how the rest (and replacements) come. */
interface Links {
  first: Remote;
  /** Dials link `slot` again (when this side dials). */
  dial?: (slot: number) => Promise<Remote>;
  /** Starts bringing the further links (and, for --notun, every link A opens later) to `add`. */
  more: (add: (r: Remote, slot?: number) => void) => void;
  /** A offers `count` links now (adaptive striping): the new ones are dialled and brought too. */
  grow?: (count: number) => void;
  cleanup: () => void;
}

/**
 * --notun: listens on a free port of XUFS_PORT_RANGE for the whole session and writes it to the
 * port file; every connection gets its own short handshake (several at once, bounded), so idle
 * strangers cannot hold up host A's connections, and only peers that prove the secret are kept.
 */
async function notunLinks(portFile: string, secret: string, timeoutMs: number, log: (l: string) => void): Promise<Links> {
  const [lo, hi] = portRange(Deno.env.get("XUFS_PORT_RANGE"));
  let listener: Deno.TcpListener | undefined;
  for (let port = lo; port <= hi && !listener; port++) {
    try {
      listener = Deno.listen({ hostname: "0.0.0.0", port });
    } catch { /* in use */ }
  }
  if (!listener) throw new NetworkError(`No free port in XUFS_PORT_RANGE: ${lo},${hi}`);
  const l = listener;
  const port = (l.addr as Deno.NetAddr).port;
  await Deno.writeTextFile(portFile, `${port}\n`, { mode: 0o600 });
  let add: ((r: Remote) => void) | undefined;
  const early: Remote[] = [];
  let first: ((r: Remote) => void) | undefined;
  const firstLink = new Promise<Remote>((r) => (first = r));
  let handshaking = 0;
  let dropped = 0;
  (async () => {
    for await (const conn of l) {
      if (handshaking >= NOTUN_HANDSHAKES) {
        closeQuietly(conn);
        continue;
      }
      handshaking++;
      (conn as Deno.TcpConn).setNoDelay(true);
      withTimeout(Remote.open(conn, secret, timeoutMs), NOTUN_HANDSHAKE_MS, "session handshake", () => closeQuietly(conn)).then((r) => {
        if (first) {
          first(r);
          first = undefined;
          log(`host A connected on port ${port}`);
        } else if (add) add(r);
        else early.push(r);
      }, (e) => {
        if (dropped++ < 3) log(`dropped a connection that did not prove the session secret: ${(e as Error).message}`);
      }).finally(() => handshaking--);
    }
  })().catch(() => {});
  let timer: ReturnType<typeof setTimeout> | undefined;
  const r = await Promise.race([
    firstLink,
    new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new NetworkError("Host A did not connect within 30 s")), 30_000))),
  ]).catch((e) => {
    l.close();
    throw e;
  }).finally(() => clearTimeout(timer));
  return {
    first: r,
    more: (a) => {
      add = a;
      for (const x of early.splice(0)) a(x);
    },
    cleanup: () => closeQuietly(l),
  };
}

/** Connects the first link to A and says how the others come. */
async function connectLinks(link: Link, secret: string, stripes: number, timeoutMs: number, log: (l: string) => void): Promise<Links> {
  if (link.kind === "notun") return await notunLinks(link.portFile, secret, timeoutMs, log);
  let path: string, cleanup = () => {};
  if (link.kind === "unix") path = link.path;
  else {
    // Local export: the file server runs in this process behind a private Unix socket.
    const dir = await Deno.makeTempDir({ prefix: "xufs-local-" });
    path = join(dir, "s");
    const l = Deno.listen({ transport: "unix", path });
    const server = new FileServer(await Deno.realPath(link.exportDir), secret);
    (async () => {
      for await (const c of l) server.serve(c);
    })().catch(() => {});
    cleanup = () => {
      closeQuietly(l);
      server.close();
      Deno.removeSync(dir, { recursive: true });
    };
  }
  const sock = (slot: number) => (slot === 0 ? path : stripeSocket(path, slot));
  const dial = (slot: number) => dialUnix(sock(slot), secret, timeoutMs, 0);
  let known = Math.max(1, stripes), add: (r: Remote, slot?: number) => void = (r) => r.close();
  return {
    first: await dialUnix(path, secret, timeoutMs, 15_000),
    dial,
    // ussh on A says so when an extra ssh connection cannot be made; then that one never comes.
    more: (a) => {
      add = a;
      for (let i = 1; i < stripes; i++) dialUnix(sock(i), secret, timeoutMs, 20_000).then((r) => a(r, i), () => {});
    },
    grow: (count) => {
      for (; known < count; known++) {
        const i = known;
        dialUnix(sock(i), secret, timeoutMs, 20_000).then((r) => add(r, i), () => {});
      }
    },
    cleanup,
  };
}

/** Runs a session to the end; returns the exit status of the shell or command. */
export async function runSession(o: SessionOptions): Promise<number> {
  const mount = join(o.home, o.mount);
  const runDir = join(o.home, ".xufs", "run", `session-${Deno.pid}`);
  await Deno.mkdir(runDir, { recursive: true, mode: 0o700 });
  let createdMount = false;
  try {
    const entries = [...Deno.readDirSync(mount)];
    if (entries.length > 0) throw new ConfigError(`Mount point is not empty: ${mount}`);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
    try {
      Deno.mkdirSync(mount, { mode: 0o700 });
      createdMount = true;
    } catch (e2) {
      // Another session on this B made it between our look and our mkdir: it is the mount point.
      if (!(e2 instanceof Deno.errors.AlreadyExists)) throw e2;
    }
  }
  const held = await lockCache(join(o.home, ".xufs", "cache"), o.id);
  const logFile = join(held.dir, "log");
  const log = (l: string) => {
    console.error(`xufs: ${l}`);
    appendLog(logFile, l);
  };
  if (!held.dir.endsWith(o.id)) log(`another session uses the cache of this export; this one uses ${held.dir}`);
  const timeoutMs = linkTimeoutMs();
  const links = await connectLinks(o.link, o.secret, o.stripes ?? 1, timeoutMs, log);
  const cache = new CacheManager({ dir: held.dir, from: shortHost(), log, dial: links.dial, onLinks: (n) => links.grow?.(n), ...transferOptions() });
  await cache.init();
  cache.attach(links.first);
  links.more((r, slot) => cache.addLink(r, slot));
  const sock = join(runDir, "manager.sock");
  const listener = Deno.listen({ transport: "unix", path: sock });
  Deno.chmodSync(sock, 0o600);
  cache.servePreload(listener).catch(() => {});
  let code = 1;
  try {
    let rel = o.cwd;
    try {
      await cache.lookup(rel);
      if (!Deno.statSync(join(cache.tree, rel)).isDirectory) rel = ".";
    } catch {
      rel = ".";
    }
    await cache.list(rel);
    cache.prelist(rel);
    const shell = Deno.env.get("SHELL") || "/bin/sh";
    const args = o.command.length ? ["-c", o.command.join(" ")] : ["-l"];
    const preload = [preloadPath(), Deno.env.get("LD_PRELOAD")].filter(Boolean).join(" ");
    const audit = [auditPath(), Deno.env.get("LD_AUDIT")].filter(Boolean).join(":");
    const launcher = staticLauncher(shell);
    const child = new Deno.Command(launcher ?? shell, {
      args: launcher ? ["--xufs", "--nested", "exec", "--", shell, shell, ...args] : args,
      cwd: join(cache.tree, rel),
      env: {
        LD_PRELOAD: preload,
        ...(audit ? { LD_AUDIT: audit } : {}),
        XUFS_MOUNT: mount,
        XUFS_CACHE: cache.tree,
        XUFS_SOCK: sock,
        XUFS_MARK: cache.mark,
        PWD: rel === "." ? mount : join(mount, rel),
        ...(launcher ? { XUFS_SUPERVISED: "1" } : {}),
      },
      stdin: "inherit",
      stdout: "inherit",
      stderr: "inherit",
    }).spawn();
    const ignore = () => {};
    Deno.addSignalListener("SIGINT", ignore); // the shell handles ^C; we must survive to write back
    const status = await child.status;
    Deno.removeSignalListener("SIGINT", ignore);
    code = status.signal ? 128 + (Deno.build.os === "linux" ? signalNumber(status.signal) : 1) : status.code;
  } finally {
    await drain(cache, join(held.dir, "queue"), log);
    listener.close();
    await cache.close();
    links.cleanup();
    held.release();
    if (createdMount) Deno.removeSync(mount);
    Deno.removeSync(runDir, { recursive: true });
  }
  return code;
}

/**
 * The end of a session: waits until every change reached A, with a progress line; ^C (or a link
 * lost for good) leaves what is left for the next session, and says so.
 */
async function drain(cache: CacheManager, queue: string, log: (l: string) => void): Promise<void> {
  let interrupted = false;
  const stop = () => (interrupted = true);
  Deno.addSignalListener("SIGINT", stop);
  const progress = new DrainProgress();
  try {
    const left = await cache.drain({ stop: () => interrupted, progress: (n, bytes) => progress.show(n, bytes) });
    progress.end(left === 0);
    if (left > 0) {
      const why = interrupted ? "interrupted" : "host A is unreachable";
      log(`${left} change(s) not written back yet (${why}); they are kept in ${queue} and sent by the next session to this export`);
    }
  } finally {
    Deno.removeSignalListener("SIGINT", stop);
  }
}

/** Past this size the log is moved to `log.1` (one older log kept). */
const LOG_MAX = 1 << 20;

/** Appends a line of the session's stderr, with the time, to the cache's log (best effort). */
function appendLog(file: string, line: string): void {
  try {
    if ((Deno.statSync(file).size ?? 0) > LOG_MAX) Deno.renameSync(file, `${file}.1`);
  } catch { /* no log yet */ }
  try {
    Deno.writeTextFileSync(file, `${new Date().toISOString()} ${line}\n`, { append: true, mode: 0o600 });
  } catch { /* stderr has it */ }
}

function signalNumber(sig: Deno.Signal): number {
  const table: Partial<Record<Deno.Signal, number>> = { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGKILL: 9, SIGTERM: 15, SIGPIPE: 13 };
  return table[sig] ?? 1;
}
