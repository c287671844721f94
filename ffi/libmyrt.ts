/**
 * The typed Deno FFI table of libmyrt.so (native/supervisor/), MyRT's seccomp supervisor (its ABI
 * check), and where MyRT's native files are found: $MYRT_LIBDIR, then beside the installed
 * commands (PREFIX/bin), then native/build of a source tree — libuvpn.so, libmyrt.so and the
 * launcher uvpn_supervise, which runs programs under the supervisor. libmyrt.so is opened only
 * here.
 */
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/** The exported functions of libmyrt.so that Deno calls (the supervisor itself runs in the
 * launcher uvpn_supervise, a C main over libmyrt.so's myrt_main). */
const SYMBOLS = {
  myrt_abi: { parameters: [], result: "i32" },
} as const satisfies Deno.ForeignLibraryInterface;

/** The ABI version this table matches (MYRT_ABI in native/supervisor/supervisor.c). */
const ABI = 2;

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

  /** Unloads the library. */
  close(): void {
    this.#lib.close();
  }
}
