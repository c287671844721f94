/**
 * The typed Deno FFI table of libmyrt.so (native/supervisor.c), MyRT's native library, and where
 * MyRT's native libraries are found: $MYRT_LIBDIR, then beside the installed commands
 * (PREFIX/bin), then native/build of a source tree. libmyrt.so is opened only here.
 */
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/** The exported functions of libmyrt.so. Only myrt_run blocks (it runs a program to its end). */
const SYMBOLS = {
  myrt_abi: { parameters: [], result: "i32" },
  myrt_run: {
    // path, argv block, argc, env block, envc, pid out (i32), exit code out (i32), error, error cap
    parameters: ["buffer", "buffer", "u32", "buffer", "u32", "buffer", "buffer", "buffer", "u32"],
    result: "i32",
    nonblocking: true,
  },
} as const satisfies Deno.ForeignLibraryInterface;

/** The ABI version this table matches (MYRT_ABI in native/supervisor.c). */
const ABI = 1;

const here = dirname(fileURLToPath(import.meta.url));

/** Directories searched for native libraries, in order. */
export function libraryDirs(): string[] {
  const dirs: string[] = [];
  const env = Deno.env.get("MYRT_LIBDIR");
  if (env) dirs.push(env);
  // Installed wrapper: sources in PREFIX/lib/myrt/src/ffi, libraries in PREFIX/bin.
  if (/\/lib\/myrt\/src\/ffi$/.test(here)) dirs.push(join(here, "../../../../bin"));
  // Compiled binary: the libraries sit beside it.
  dirs.push(dirname(Deno.execPath()));
  dirs.push(join(here, "../native/build"));
  return dirs;
}

/** The path of native library `name` (e.g. "libuvpn.so"), or an Error naming where it looked. */
export function findLibrary(name: string): string {
  const dirs = libraryDirs();
  for (const d of dirs) {
    const p = join(d, name);
    try {
      if (Deno.statSync(p).isFile) return p;
    } catch { /* not here */ }
  }
  throw new Error(`Cannot find ${name} (set MYRT_LIBDIR or run make -C native): ${dirs.join(", ")}`);
}

/** How a supervised program ended. */
export interface SupervisedExit {
  /** The exit status to report: the program's own, or 128 + signal when it was killed. */
  code: number;
  signal?: number;
}

/** A failure to start or supervise; `code` is 126 (cannot supervise or execute) or 127 (not found). */
export class SupervisorError extends Error {
  constructor(message: string, readonly code: number) {
    super(message);
  }
}

const enc = new TextEncoder();

function block(strings: string[]): Uint8Array<ArrayBuffer> {
  return enc.encode(strings.map((s) => s + "\0").join(""));
}

/** libmyrt.so, opened. */
export class LibMyrt {
  readonly #lib: Deno.DynamicLibrary<typeof SYMBOLS>;

  private constructor(lib: Deno.DynamicLibrary<typeof SYMBOLS>) {
    this.#lib = lib;
  }

  /** Opens libmyrt.so from `path` (default: findLibrary) and checks its ABI version. */
  static open(path = findLibrary("libmyrt.so")): LibMyrt {
    const lib = Deno.dlopen(path, SYMBOLS);
    const abi = lib.symbols.myrt_abi();
    if (abi !== ABI) {
      lib.close();
      throw new Error(`libmyrt.so has ABI ${abi}, this MyRT needs ${ABI}: ${path}`);
    }
    return new LibMyrt(lib);
  }

  /**
   * Runs `path` with `argv` (argv[0] included) under the seccomp supervisor, with this process's
   * environment overridden by `env`. `onPid` gets the child's pid once it runs (for forwarding
   * signals). Resolves when the program exits; rejects with a SupervisorError when it cannot run.
   */
  async run(path: string, argv: string[], env: Record<string, string>, onPid?: (pid: number) => void): Promise<SupervisedExit> {
    const pathBuf = block([path]);
    const argvBuf = block(argv);
    const envList = Object.entries(env).map(([k, v]) => `${k}=${v}`);
    const envBuf = block(envList);
    const pid = new Int32Array(1);
    const code = new Int32Array(1);
    const err = new Uint8Array(1024);
    const pending = this.#lib.symbols.myrt_run(pathBuf, argvBuf, argv.length, envBuf, envList.length, pid, code, err, err.length);
    let reported = false;
    const poll = setInterval(() => {
      if (!reported && pid[0] > 0) {
        reported = true;
        onPid?.(pid[0]);
      }
    }, 20);
    let status: number;
    try {
      status = await pending;
    } finally {
      clearInterval(poll);
    }
    if (status < 0) {
      const text = new TextDecoder().decode(err.subarray(0, Math.max(0, err.indexOf(0))));
      throw new SupervisorError(text || "The supervisor failed", code[0]);
    }
    const sig = status & 0x7f;
    return sig === 0 ? { code: (status >> 8) & 0xff } : { code: 128 + sig, signal: sig };
  }

  /** Unloads the library. */
  close(): void {
    this.#lib.close();
  }
}
