/**
 * Test fixtures: temp dirs, free ports, processes started and stopped by pid with their output
 * collected, and a two-subnet UVPN overlay on loopback (routers on 127.0.0.2 and 127.0.0.3).
 * Everything here is bounded in time; tests run inside a loopback-only network namespace
 * (scripts/test.sh), so virtual 100.64.0.0/10 addresses can never reach a real network.
 */
import { join } from "node:path";

/**
 * Whether the tests run as the real root: uid 0 with the whole uid range mapped. Inside
 * `unshare -rn` (how scripts/test.sh runs an unprivileged user's suite) the uid also reads 0,
 * but nothing that needs root (ip netns, sshd's privilege separation) works there.
 */
export const IS_ROOT = Deno.uid() === 0 && isInitialUserNamespace();

function isInitialUserNamespace(): boolean {
  try {
    return /^\s*0\s+0\s+4294967295\s*$/.test(Deno.readTextFileSync("/proc/self/uid_map"));
  } catch {
    return false;
  }
}

/**
 * The suite refuses to run where a bug could send a packet out: a test (a main module under
 * tests/) must run in a network namespace whose only interface is loopback, as
 * scripts/test.sh arranges (virtual 100.64.0.0/10 addresses must never meet a real route).
 */
function refuseRealNetwork(): void {
  if (!new URL(Deno.mainModule).pathname.startsWith(new URL(".", import.meta.url).pathname)) return; // benchmarks and scripts use these fixtures too
  // /proc/self/net shows this process's namespace (/sys/class/net shows the one sysfs was mounted in).
  const ifaces = Deno.readTextFileSync("/proc/self/net/dev").split("\n").slice(2)
    .map((l) => l.split(":")[0].trim()).filter((n) => n && n !== "lo");
  if (ifaces.length) {
    throw new Error(`Tests run only in a loopback-only network namespace (./scripts/test.sh); this one has: ${ifaces.sort().join(", ")}`);
  }
}
refuseRealNetwork();

/** The repository root. */
export const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
/** The deno running the tests. */
export const DENO = Deno.execPath();
/**
 * Where the native files under test are: native/build (`make -C native`), or $MYRT_LIBDIR — the
 * sanitizer build when `scripts/test.sh --sanitize` runs the suite.
 */
export const NATIVE_BUILD = Deno.env.get("MYRT_LIBDIR") ?? join(ROOT, "native/build");
/** The UVPN preload library. */
export const LIBUVPN = join(NATIVE_BUILD, "libuvpn.so");
/** The XUFS preload library. */
export const LIBXUFS = join(NATIVE_BUILD, "libxufs.so");
/** The launcher that runs programs under the seccomp supervisor. */
export const UVPN_SUPERVISE = join(NATIVE_BUILD, "uvpn_supervise");
/**
 * The ASan runtime, in the sanitizer pass of `scripts/test.sh` (MYRT_SANITIZE_RT): preloaded in
 * front of the instrumented libraries, so that their allocations and libc calls are checked too.
 */
export const SANITIZE_RT = Deno.env.get("MYRT_SANITIZE_RT") ?? "";
/** LD_PRELOAD for a program in the overlay: libuvpn.so (behind the ASan runtime when sanitizing). */
export const PRELOAD_UVPN = [SANITIZE_RT, LIBUVPN].filter(Boolean).join(":");
/** LD_PRELOAD for a program under XUFS: libxufs.so (behind the ASan runtime when sanitizing). */
export const PRELOAD_XUFS = [SANITIZE_RT, LIBXUFS].filter(Boolean).join(":");

/** A fresh temporary directory, removed by `using`. */
export function tempDir(prefix = "myrt-test-"): { path: string; [Symbol.dispose](): void } {
  const path = Deno.makeTempDirSync({ prefix });
  return {
    path,
    [Symbol.dispose]() {
      Deno.removeSync(path, { recursive: true });
    },
  };
}

/** A TCP port free right now on `hostname`. */
export function freePort(hostname = "127.0.0.1"): number {
  const l = Deno.listen({ hostname, port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** Sleeps `ms`. */
export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Result of a finished command. */
export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Options for starting a process. */
export interface SpawnOptions {
  env?: Record<string, string>;
  cwd?: string;
  stdin?: string | Uint8Array;
  timeoutMs?: number;
}

/** A started process whose output is collected; stopped by pid. */
export class Proc {
  stdout = "";
  stderr = "";
  readonly child: Deno.ChildProcess;
  readonly done: Promise<Deno.CommandStatus>;
  #readers: Promise<void>[];

  constructor(readonly cmd: string, readonly args: string[], opts: SpawnOptions = {}) {
    this.child = new Deno.Command(cmd, {
      args,
      env: opts.env,
      cwd: opts.cwd,
      stdin: opts.stdin === undefined ? "null" : "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    if (opts.stdin !== undefined) {
      const w = this.child.stdin.getWriter();
      const data = typeof opts.stdin === "string" ? new TextEncoder().encode(opts.stdin) : opts.stdin;
      w.write(data).then(() => w.close()).catch(() => {});
    }
    this.#readers = [
      collect(this.child.stdout, (s) => (this.stdout += s)),
      collect(this.child.stderr, (s) => (this.stderr += s)),
    ];
    this.done = this.child.status;
  }

  get pid(): number {
    return this.child.pid;
  }

  /** Waits until `re` matches stdout+stderr; throws with the output after `timeoutMs`. */
  async waitFor(re: RegExp, timeoutMs = 15_000): Promise<RegExpMatchArray> {
    const deadline = Date.now() + timeoutMs;
    let exited = false;
    this.done.then(() => (exited = true));
    while (Date.now() < deadline) {
      const m = (this.stdout + this.stderr).match(re);
      if (m) return m;
      if (exited) {
        await this.#outputs();
        const m2 = (this.stdout + this.stderr).match(re);
        if (m2) return m2;
        break;
      }
      await sleep(25);
    }
    throw new Error(`${this.cmd}: no ${re} within ${timeoutMs} ms; output:\n${this.stdout}\n${this.stderr}`);
  }

  /**
   * The output readers, given at most 5 s after the process ended: a grandchild left running
   * (an ssh a killed ussh started) may hold the pipes open forever.
   */
  async #outputs(): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([Promise.all(this.#readers), new Promise((r) => (timer = setTimeout(r, 5000)))]);
    clearTimeout(timer);
  }

  /** Sends `signal` to the pid, escalating to SIGKILL after 3 s; waits for exit and output. */
  async stop(signal: Deno.Signal = "SIGTERM"): Promise<Deno.CommandStatus> {
    try {
      this.child.kill(signal);
    } catch { /* already exited */ }
    const timer = setTimeout(() => {
      try {
        this.child.kill("SIGKILL");
      } catch { /* exited */ }
    }, 3000);
    const status = await this.done;
    clearTimeout(timer);
    await this.#outputs();
    return status;
  }

  /** Waits for exit (killing after `timeoutMs`) and returns code and output. */
  async result(timeoutMs = 30_000): Promise<RunResult> {
    const timer = setTimeout(() => {
      try {
        this.child.kill("SIGKILL");
      } catch { /* exited */ }
    }, timeoutMs);
    const status = await this.done;
    clearTimeout(timer);
    await this.#outputs();
    return { code: status.code, stdout: this.stdout, stderr: this.stderr };
  }
}

async function collect(stream: ReadableStream<Uint8Array>, sink: (s: string) => void): Promise<void> {
  const dec = new TextDecoder();
  for await (const chunk of stream) sink(dec.decode(chunk, { stream: true }));
}

/** Runs a command to completion (bounded by `timeoutMs`). */
export function run(cmd: string, args: string[], opts: SpawnOptions = {}): Promise<RunResult> {
  return new Proc(cmd, args, opts).result(opts.timeoutMs ?? 30_000);
}

/** Runs a MyRT CLI from source with the test deno. */
export function cli(name: string, args: string[], opts: SpawnOptions = {}): Promise<RunResult> {
  return run(DENO, ["run", "-A", "--no-prompt", join(ROOT, "cli", `${name}.ts`), ...args], sanitizing(opts));
}

/** Starts a MyRT CLI from source in the background. */
export function spawnCli(name: string, args: string[], opts: SpawnOptions = {}): Proc {
  return new Proc(DENO, ["run", "-A", "--no-prompt", join(ROOT, "cli", `${name}.ts`), ...args], sanitizing(opts));
}

/** When sanitizing, a command of ours runs with the ASan runtime preloaded, and passes it on. */
function sanitizing(opts: SpawnOptions): SpawnOptions {
  if (!SANITIZE_RT || opts.env?.LD_PRELOAD !== undefined) return opts;
  return { ...opts, env: { ...opts.env, LD_PRELOAD: SANITIZE_RT } };
}

/**
 * Connects to host:port (an IPv4 address as a number), writes bytes(the connection's local
 * port) and returns what came back within 3 s: "" when the peer closed or reset it, or sent
 * nothing (how a ticket check refuses).
 */
export async function ticketAttempt(ip: number, port: number, bytes: (localPort: number) => Uint8Array): Promise<string> {
  const c = await Deno.connect({ hostname: `${ip >>> 24}.${(ip >> 16) & 255}.${(ip >> 8) & 255}.${ip & 255}`, port });
  try {
    await c.write(bytes((c.localAddr as Deno.NetAddr).port));
    const buf = new Uint8Array(256);
    const n = await Promise.race([c.read(buf), sleep(3000).then(() => null)]);
    return n ? new TextDecoder().decode(buf.subarray(0, n)) : "";
  } catch {
    return ""; // reset
  } finally {
    try {
      c.close();
    } catch { /* closed */ }
  }
}

/** Waits until something accepts TCP connections at host:port. */
export async function waitForPort(hostname: string, port: number, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      (await Deno.connect({ hostname, port })).close();
      return;
    } catch {
      await sleep(50);
    }
  }
  throw new Error(`Nothing listens on ${hostname}:${port} after ${timeoutMs} ms`);
}

/** One subnet of a test overlay. */
export interface TestSubnet {
  prefix: string;
  host: string;
  port: number;
  router?: Proc;
}

/** A two-subnet overlay on loopback: routers, key, route file, and helpers to join it. */
export class Overlay {
  readonly routes: string;
  readonly keyFile: string;
  readonly a: TestSubnet;
  readonly b: TestSubnet;

  /**
   * `opts.bVia`: the address peer routers use for subnet B (e.g. a WAN emulator in front of B's
   * router); `opts.routerArgs`: extra uvpn_proxy flags for both routers. The routers' own ports
   * are free ports picked here (freePort): the route file must name both before either starts,
   * and a router reads it once, so it cannot bind port 0 and tell its peer afterwards.
   */
  constructor(readonly dir: string, readonly opts: { bVia?: { host: string; port: number }; routerArgs?: string[] } = {}) {
    this.routes = join(dir, "routes");
    this.keyFile = join(dir, "key");
    this.a = { prefix: "100.64.0.0/16", host: "127.0.0.2", port: freePort("127.0.0.2") };
    this.b = { prefix: "100.65.0.0/16", host: "127.0.0.3", port: freePort("127.0.0.3") };
    this.routeBVia(opts.bVia ?? { host: this.b.host, port: this.b.port });
  }

  /**
   * Routes subnet B through `via` (rewrites the route file: before start(), before any route is
   * appended). For a relay in front of B's router that bound port 0 and returned its port:
   * `o.routeBVia({ host, port: relay.start() })`, the relay built with target `o.b`.
   */
  routeBVia(via: { host: string; port: number }): void {
    Deno.writeTextFileSync(
      this.routes,
      `# test overlay\n${this.a.prefix} ${this.a.host}:${this.a.port}\n${this.b.prefix} ${via.host}:${via.port}\n`,
    );
  }

  /** Environment shared by every process of this overlay. */
  get baseEnv(): Record<string, string> {
    return { HOME: this.dir, UVPN_KEY_FILE: this.keyFile };
  }

  /** Starts (or restarts) the router of a subnet and waits until it serves. */
  async startRouter(s: TestSubnet): Promise<Proc> {
    const p = spawnCli("uvpn_proxy", [
      "--routes",
      this.routes,
      "--subnet",
      s.prefix,
      "--listen",
      `${s.host}:${s.port}`,
      "--state",
      join(this.dir, `state-${s.port}.json`),
      ...(this.opts.routerArgs ?? []),
    ], { env: this.baseEnv });
    s.router = p;
    await p.waitFor(/serving subnet/);
    return p;
  }

  /** Starts both routers (the first creates the key). */
  async start(): Promise<void> {
    await this.startRouter(this.a);
    await this.startRouter(this.b);
  }

  /** Leases a virtual address in a subnet with `uvpn_register -s -r`. */
  async register(s: TestSubnet): Promise<string> {
    const r = await cli("uvpn_register", ["-s", "-r"], { env: this.homeEnv(s) });
    if (r.code !== 0) throw new Error(`uvpn_register failed: ${r.stderr}`);
    return r.stdout.trim();
  }

  /** The seed's wrapper variables for a node of subnet `s`. */
  homeEnv(s: TestSubnet): Record<string, string> {
    return { ...this.baseEnv, UVPN_HOME_PROXY: s.host, UVPN_HOME_PROXY_PORT: String(s.port) };
  }

  /** Full environment of an overlay program with virtual address `addr` in subnet `s`. */
  env(s: TestSubnet, addr: string): Record<string, string> {
    return { ...this.homeEnv(s), UVPN_SRC_ADDR: addr, LD_PRELOAD: PRELOAD_UVPN, UVPN_DEBUG: "1" };
  }

  /** Stops both routers by pid. */
  async stop(): Promise<void> {
    for (const s of [this.a, this.b]) {
      await s.router?.stop();
      // In the sanitizer pass a router's report (its data plane is instrumented) goes to the
      // test's output, where scripts/test.sh counts reports.
      if (SANITIZE_RT && s.router && /ERROR: (Address|Leak)Sanitizer|runtime error:/.test(s.router.stderr)) {
        console.error(`router ${s.prefix}:\n${s.router.stderr}`);
      }
    }
  }
}
