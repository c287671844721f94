/**
 * The table of MyRT's commands: entry point and the Deno permissions each one runs with, used
 * alike by the installer (scripts/install.ts) and by `deno task compile` (scripts/compile.ts).
 */

/** One installable command. */
export interface Tool {
  name: string;
  /** Entry module, relative to the repository root. */
  entry: string;
  /** Deno permission flags, the narrowest that work. */
  permissions: string[];
  /** Files embedded into a compiled binary (relative to the root). */
  include: string[];
}

const KEY_ENV = "HOME,UVPN_KEY_FILE";

/** Every command MyRT installs into PREFIX/bin. */
export const TOOLS: Tool[] = [
  {
    name: "uvpn_proxy",
    entry: "cli/uvpn_proxy.ts",
    // The router reads its route file and key and writes its key, lease state and spool files,
    // wherever the user's flags put them; it runs nothing.
    // FFI: its data plane, libuvpnrouter.so (ffi/librouter.ts), found like the other native
    // libraries (MYRT_LIBDIR, beside the command); libc's setsockopt (router/reset.ts).
    // UVPN_TRACE_FILE: the set-up timestamps of router/trace.ts (benchmarks).
    permissions: ["--allow-net", `--allow-env=${KEY_ENV},TMPDIR,MYRT_LIBDIR,UVPN_TRACE_FILE`, "--allow-read", "--allow-write", "--allow-ffi"],
    include: ["native/build/libuvpnrouter.so"],
  },
  {
    name: "uvpn_register",
    entry: "cli/uvpn_register.ts",
    // The register client talks to its home router and reads the key; it writes nothing. With
    // `-- CMD` it runs CMD (any command: --allow-run, PATH to find it, LD_PRELOAD to keep the
    // user's) under libuvpn.so or under the seccomp supervisor of libmyrt.so, run by the
    // launcher uvpn_supervise (--allow-ffi checks the library's ABI; its path depends on where
    // PREFIX is, so it cannot be named).
    permissions: [
      "--allow-net",
      `--allow-env=${KEY_ENV},UVPN_HOME_PROXY,UVPN_HOME_PROXY_PORT,UVPN_HOLDER,UVPN_NETWORKS,MYRT_LIBDIR,PATH,LD_PRELOAD`,
      "--allow-read",
      "--allow-run",
      "--allow-ffi",
    ],
    include: ["native/build/libuvpn.so", "native/build/libmyrt.so", "native/build/uvpn_supervise"],
  },
  {
    name: "ussh",
    entry: "cli/ussh.ts",
    // ussh serves the export (read/write inside it, enforced by xufs/confine.ts with libc's
    // openat2, renameat2 and flock: FFI), runs ssh and tar, and connects out for --notun. Any
    // program may be run (not only ssh and tar): Deno refuses to spawn anything under a run
    // allowlist while LD_LIBRARY_PATH or LD_PRELOAD is set, as environment modules set them.
    permissions: ["--allow-net", "--allow-env", "--allow-read", "--allow-write", "--allow-run", "--allow-sys=hostname", "--allow-ffi"],
    include: [],
  },
  {
    name: "xufs_session",
    entry: "cli/xufs_session.ts",
    // Host B's half: the cache under ~/.xufs, the mount point, the user's shell, a port for --notun;
    // FFI for the in-process file server of --local-export (xufs/confine.ts).
    permissions: ["--allow-net", "--allow-env", "--allow-read", "--allow-write", "--allow-run", "--allow-sys=hostname", "--allow-ffi"],
    include: ["native/build/libxufs.so", "native/build/libxufs_audit.so"],
  },
];

/** Native libraries installed beside the commands, in PREFIX/bin (the seed's paths), and the
 * launcher uvpn_supervise, which libuvpn.so and uvpn_register find beside libmyrt.so. */
export const NATIVE_LIBS = [
  "native/build/libuvpn.so",
  "native/build/libmyrt.so",
  "native/build/uvpn_supervise",
  "native/build/libxufs.so",
  "native/build/libuvpnrouter.so",
  "native/build/libxufs_audit.so",
];

/** Source directories a wrapper-based install carries. */
export const SOURCE_DIRS = ["cli", "common", "router", "ffi", "xufs"];
