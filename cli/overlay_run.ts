/**
 * `uvpn_register -r -- CMD [ARGS…]`: runs CMD inside the overlay with a leased virtual address,
 * either under libuvpn.so (LD_PRELOAD, for dynamically linked executables; static programs they
 * start join through the launcher themselves) or under the seccomp supervisor of libmyrt.so,
 * run by the launcher uvpn_supervise (for static ones, which LD_PRELOAD cannot reach). Owns
 * choosing the mode (ELF inspection), resolving CMD on PATH, forwarding signals and the exit
 * status.
 */
import { join } from "node:path";
import { MyrtError } from "../common/errors.ts";
import { findLibrary, LibMyrt } from "../ffi/libmyrt.ts";

/** How CMD is put into the overlay. */
export type Mode = "auto" | "preload" | "seccomp";
/** Every Mode, for --mode checks. */
export const MODES: readonly Mode[] = ["auto", "preload", "seccomp"];

/** CMD could not be started or supervised: exits 126 (cannot run) or 127 (not found). */
export class CommandError extends MyrtError {
  override readonly name = "CommandError";
  constructor(message: string, override readonly exitCode: number) {
    super(message);
  }
}

/** The file `cmd` names: as given when it contains a slash, else the first executable on PATH. */
export function resolveCommand(cmd: string): string {
  const isExe = (p: string) => {
    try {
      const s = Deno.statSync(p);
      return s.isFile && ((s.mode ?? 0o111) & 0o111) !== 0;
    } catch {
      return false;
    }
  };
  if (cmd.includes("/")) {
    if (!isExe(cmd)) throw new CommandError(`No executable file: ${cmd}`, 127);
    return cmd;
  }
  for (const dir of (Deno.env.get("PATH") ?? "/usr/local/bin:/usr/bin:/bin").split(":")) {
    const p = join(dir || ".", cmd);
    if (isExe(p)) return p;
  }
  throw new CommandError(`Command not found: ${cmd}`, 127);
}

/**
 * True when `path` is a dynamically linked ELF executable (it has a PT_INTERP program header),
 * false for a static one. A "#!" script is judged by its interpreter. Unknown formats count as
 * dynamic (the preload library is harmless where it does not apply).
 */
export function isDynamic(path: string, depth = 0): boolean {
  let head: Uint8Array;
  try {
    const f = Deno.openSync(path, { read: true });
    try {
      head = new Uint8Array(4096);
      const n = f.readSync(head) ?? 0;
      head = head.subarray(0, n);
    } finally {
      f.close();
    }
  } catch (e) {
    throw new CommandError(`Cannot read the command: ${path} (${(e as Error).message})`, 126);
  }
  if (head[0] === 0x23 && head[1] === 0x21 && depth < 4) {
    const line = new TextDecoder().decode(head.subarray(2, head.indexOf(10) < 0 ? head.length : head.indexOf(10)));
    const interp = line.trim().split(/\s+/)[0];
    return interp ? isDynamic(interp, depth + 1) : true;
  }
  if (head.length < 52 || head[0] !== 0x7f || head[1] !== 0x45 || head[2] !== 0x4c || head[3] !== 0x46) return true;
  const is64 = head[4] === 2, le = head[5] === 1;
  const dv = new DataView(head.buffer, head.byteOffset, head.byteLength);
  const phoff = is64 ? Number(dv.getBigUint64(32, le)) : dv.getUint32(28, le);
  const phentsize = dv.getUint16(is64 ? 54 : 42, le);
  const phnum = dv.getUint16(is64 ? 56 : 44, le);
  let table = head;
  if (phoff + phentsize * phnum > head.length) {
    const f = Deno.openSync(path, { read: true });
    try {
      table = new Uint8Array(phoff + phentsize * phnum);
      f.seekSync(0, Deno.SeekMode.Start);
      let got = 0;
      while (got < table.length) {
        const n = f.readSync(table.subarray(got));
        if (!n) break;
        got += n;
      }
    } finally {
      f.close();
    }
  }
  const tv = new DataView(table.buffer, table.byteOffset, table.byteLength);
  for (let i = 0; i < phnum; i++) {
    const off = phoff + i * phentsize;
    if (off + 4 > table.length) break;
    if (tv.getUint32(off, le) === 3 /* PT_INTERP */) return true;
  }
  return false;
}

const FORWARDED: Deno.Signal[] = ["SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT"];

/** Forwards FORWARDED signals to `send` until the returned function is called. */
function forwardSignals(send: (sig: Deno.Signal) => void): () => void {
  const handlers = FORWARDED.map((sig) => {
    const h = () => send(sig);
    Deno.addSignalListener(sig, h);
    return [sig, h] as const;
  });
  return () => handlers.forEach(([sig, h]) => Deno.removeSignalListener(sig, h));
}

/** Spawns path with args and environment env, forwarding FORWARDED signals; CMD's status. */
async function spawnForwarding(path: string, args: string[], env: Record<string, string>, what: string): Promise<number> {
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(path, { args, env, stdin: "inherit", stdout: "inherit", stderr: "inherit" }).spawn();
  } catch (e) {
    throw new CommandError(`Cannot execute (${(e as Error).message}): ${what}`, 126);
  }
  const stop = forwardSignals((sig) => {
    try {
      child.kill(sig);
    } catch { /* exited */ }
  });
  try {
    return (await child.status).code; // Deno reports 128 + signal for a killed child
  } finally {
    stop();
  }
}

/** Options of runInOverlay beyond the mode. */
export interface RunOptions {
  /** Say on stderr when processes CMD started outlive it under the supervisor (not with -s). */
  notice?: boolean;
}

/**
 * Runs argv (argv[0] = CMD) in the overlay with the overlay variables `env` (UVPN_SRC_ADDR,
 * UVPN_HOME_PROXY, …) added to this process's environment. Returns CMD's exit status (128 +
 * signal number when a signal killed it). Under the supervisor, CMD runs through the launcher
 * uvpn_supervise, whose supervisor stays while processes CMD started (daemons) live.
 */
export async function runInOverlay(mode: Mode, argv: string[], env: Record<string, string>, opts: RunOptions = {}): Promise<number> {
  const path = resolveCommand(argv[0]);
  const useSeccomp = mode === "seccomp" || (mode === "auto" && !isDynamic(path));
  if (useSeccomp) {
    let launcher: string;
    try {
      LibMyrt.open().close(); // the library the launcher runs on is this MyRT's
      launcher = findLibrary("uvpn_supervise");
    } catch (e) {
      throw new CommandError(`Cannot load the seccomp supervisor: ${(e as Error).message}`, 126);
    }
    const flags = ["--as", "uvpn_register", "--nested", "fail", ...(opts.notice ? ["--notice"] : [])];
    return await spawnForwarding(launcher, [...flags, "--", path, ...argv], env, launcher);
  }
  let preload: string;
  try {
    preload = findLibrary("libuvpn.so");
  } catch (e) {
    throw new CommandError((e as Error).message, 126);
  }
  const prior = Deno.env.get("LD_PRELOAD");
  // --mode preload: LD_PRELOAD alone, also for static programs CMD starts (UVPN_STATIC=off).
  const extra: Record<string, string> = mode === "preload" ? { UVPN_STATIC: "off" } : {};
  return await spawnForwarding(path, argv.slice(1), { ...env, ...extra, LD_PRELOAD: prior ? `${preload}:${prior}` : preload }, path);
}
