/**
 * An XUFS session on host B: connects to A's file server (through the ssh-forwarded Unix socket,
 * or raw TCP with --notun, or an in-process export for local use), runs the cache manager,
 * creates the mount point, runs the shell or command under libxufs.so inside the mount, then
 * writes back everything, unmounts and returns the shell's exit status.
 */
import { dirname, join } from "node:path";
import { sha256 } from "../common/bytes.ts";
import { ConfigError, NetworkError } from "../common/errors.ts";
import { closeQuietly, withTimeout } from "../common/io.ts";
import { CacheManager, type CacheOptions, TRANSFER_DEFAULTS } from "./cache.ts";
import { progressWanted } from "./progress.ts";
import { Remote } from "./remote.ts";
import { FileServer } from "./server.ts";
import { shortHost } from "./writes.ts";

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

/** Default number of connections per session (XUFS_STRIPES on host A). */
export const DEFAULT_STRIPES = 4;

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

/** Stable cache id of an export: A's host and the export path. */
export function cacheId(host: string, exportDir: string): string {
  return `${host.replace(/[^A-Za-z0-9.-]/g, "_")}-${sha256(`${host}:${exportDir}`).slice(0, 12)}`;
}

/** libxufs.so: $XUFS_PRELOAD, else beside the installed commands, else the build tree. */
export function preloadPath(): string {
  const env = Deno.env.get("XUFS_PRELOAD");
  if (env) return env;
  const src = dirname(dirname(new URL(import.meta.url).pathname));
  for (const p of [join(src, "../../../bin/libxufs.so"), join(src, "native/build/libxufs.so")]) {
    try {
      Deno.statSync(p);
      return p;
    } catch { /* next */ }
  }
  throw new ConfigError(`libxufs.so not found beside ${src}: reinstall MyRT or set XUFS_PRELOAD`);
}

/** Parses XUFS_PORT_RANGE ("50000,51000"). */
export function portRange(text: string | undefined): [number, number] {
  const m = /^\s*(\d+)\s*[,-]\s*(\d+)\s*$/.exec(text ?? "");
  if (!m) throw new ConfigError(`XUFS_PORT_RANGE must be "LOW,HIGH" on this host for --notun: ${text ?? "(unset)"}`);
  const lo = Number(m[1]), hi = Number(m[2]);
  if (lo < 1 || hi > 65535 || lo > hi) throw new ConfigError(`XUFS_PORT_RANGE out of range: ${text}`);
  return [lo, hi];
}

/** Connects to a Unix socket that ssh may not have made yet; retries for `ms`. */
async function connectUnix(path: string, secret: string, ms: number): Promise<Remote> {
  const deadline = Date.now() + ms;
  while (true) {
    try {
      return await Remote.open(await Deno.connect({ transport: "unix", path }), secret);
    } catch (e) {
      if (Date.now() > deadline) throw new NetworkError(`Cannot reach host A through the ssh tunnel: ${path} (${(e as Error).message})`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

/** The socket of extra link `i` (1 ≤ i < stripes) beside the main tunnel socket. */
export function stripeSocket(main: string, i: number): string {
  return `${main}-${i}`;
}

/**
 * Connects the main link to A, then (in the background) up to `stripes - 1` further links, each
 * its own TCP connection to A, handed to `extra` as they come up.
 */
async function connectLink(
  link: Link,
  secret: string,
  log: (l: string) => void,
  stripes: number,
  extra: (r: Remote) => void,
): Promise<{ remote: Remote; cleanup: () => void }> {
  if (link.kind === "unix") {
    const remote = await connectUnix(link.path, secret, 15_000);
    for (let i = 1; i < stripes; i++) {
      // ussh on A says so when an extra ssh connection cannot be made; then this one never comes.
      connectUnix(stripeSocket(link.path, i), secret, 20_000).then(extra, () => {});
    }
    return { remote, cleanup: () => {} };
  }
  if (link.kind === "notun") {
    const [lo, hi] = portRange(Deno.env.get("XUFS_PORT_RANGE"));
    let listener: Deno.TcpListener | undefined;
    for (let port = lo; port <= hi && !listener; port++) {
      try {
        listener = Deno.listen({ hostname: "0.0.0.0", port });
      } catch { /* in use */ }
    }
    if (!listener) throw new NetworkError(`No free port in XUFS_PORT_RANGE: ${lo},${hi}`);
    const port = (listener.addr as Deno.NetAddr).port;
    await Deno.writeTextFile(link.portFile, `${port}\n`, { mode: 0o600 });
    // Only a peer that proves the session secret is served; anyone else is dropped.
    const deadline = Date.now() + 30_000;
    const accept = async (): Promise<Remote> => {
      while (true) {
        const conn = await withTimeout(listener.accept(), Math.max(1, deadline - Date.now()), "waiting for host A to connect");
        try {
          (conn as Deno.TcpConn).setNoDelay(true);
          return await withTimeout(Remote.open(conn, secret), 10_000, "session handshake");
        } catch (e) {
          log(`dropped a connection that did not prove the session secret: ${(e as Error).message}`);
          closeQuietly(conn);
        }
      }
    };
    let remote: Remote;
    try {
      remote = await accept();
    } catch (e) {
      listener.close();
      throw e;
    }
    log(`host A connected on port ${port}`);
    // Host A opens its further connections to the same port: accepted until all came or 30 s.
    (async () => {
      for (let i = 1; i < stripes; i++) extra(await accept());
    })().catch(() => {}).finally(() => listener.close());
    return { remote, cleanup: () => {} };
  }
  // Local export: the file server runs in this process behind a private Unix socket.
  const dir = await Deno.makeTempDir({ prefix: "xufs-local-" });
  const path = join(dir, "s");
  const l = Deno.listen({ transport: "unix", path });
  const server = new FileServer(await Deno.realPath(link.exportDir), secret);
  (async () => {
    for await (const c of l) server.serve(c);
  })().catch(() => {});
  for (let i = 1; i < stripes; i++) extra(await Remote.open(await Deno.connect({ transport: "unix", path }), secret));
  return {
    remote: await Remote.open(await Deno.connect({ transport: "unix", path }), secret),
    cleanup: () => {
      closeQuietly(l);
      Deno.removeSync(dir, { recursive: true });
    },
  };
}

/** Runs a session to the end; returns the exit status of the shell or command. */
export async function runSession(o: SessionOptions): Promise<number> {
  const log = (l: string) => console.error(`xufs: ${l}`);
  const mount = join(o.home, o.mount);
  const cacheDir = join(o.home, ".xufs", "cache", o.id);
  const runDir = join(o.home, ".xufs", "run", `session-${Deno.pid}`);
  await Deno.mkdir(runDir, { recursive: true, mode: 0o700 });
  let createdMount = false;
  try {
    const entries = [...Deno.readDirSync(mount)];
    if (entries.length > 0) throw new ConfigError(`Mount point is not empty: ${mount}`);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
    Deno.mkdirSync(mount, { mode: 0o700 });
    createdMount = true;
  }
  const cache = new CacheManager({ dir: cacheDir, from: shortHost(), log, ...transferOptions() });
  const extras: Remote[] = [];
  let attached = false;
  const { remote, cleanup } = await connectLink(o.link, o.secret, log, o.stripes ?? 1, (r) => {
    extras.push(r);
    if (attached) cache.addLink(r);
  });
  await cache.init();
  cache.attach(remote);
  attached = true;
  for (const r of extras) cache.addLink(r);
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
    const child = new Deno.Command(shell, {
      args,
      cwd: join(cache.tree, rel),
      env: {
        LD_PRELOAD: preload,
        XUFS_MOUNT: mount,
        XUFS_CACHE: cache.tree,
        XUFS_SOCK: sock,
        PWD: rel === "." ? mount : join(mount, rel),
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
    const left = await cache.flush(remote.up ? 60_000 : 0);
    if (left > 0) log(`${left} change(s) could not be written back yet; they are kept in ${cacheDir}/queue and sent by the next session to this export`);
    listener.close();
    remote.close();
    for (const r of extras) r.close();
    cleanup();
    if (createdMount) Deno.removeSync(mount);
    Deno.removeSync(runDir, { recursive: true });
  }
  return code;
}

function signalNumber(sig: Deno.Signal): number {
  const table: Partial<Record<Deno.Signal, number>> = { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGKILL: 9, SIGTERM: 15, SIGPIPE: 13 };
  return table[sig] ?? 1;
}
