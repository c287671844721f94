/**
 * The one hand-written, typed Deno.dlopen table of MyRT's TypeScript side for libc: what Deno
 * has no API for. Loaded lazily, only by code paths that need it: a router resetting a socket,
 * XUFS's file server resolving paths beneath its export and working on descriptors (openat2,
 * renameat2, flock, statx, pread, getdents64, …), which Deno's file API cannot do, and XUFS's
 * cache manager watching the processes that hold files open (pidfd_open, poll: Deno refuses
 * /proc) and recording A's identity of cache files (lsetxattr). Also the few Linux constants those
 * calls take, per architecture, the calling thread's errno, and the process helpers built on them.
 */

const SYMBOLS = {
  setsockopt: { parameters: ["i32", "i32", "i32", "buffer", "u32"], result: "i32" },
  connect: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  // syscall(SYS_openat2, dirfd, path, &how, sizeof how): glibc has no openat2 wrapper.
  syscall: { name: "syscall", parameters: ["i64", "i64", "buffer", "buffer", "usize"], result: "i64" },
  // syscall(SYS_pidfd_open, pid, 0): a descriptor that becomes readable when the process ends.
  syscall2: { name: "syscall", parameters: ["i64", "i64", "i64"], result: "i64" },
  poll: { parameters: ["buffer", "u64", "i32"], result: "i32" },
  openat: { parameters: ["i32", "buffer", "i32", "u32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  renameat2: { parameters: ["i32", "buffer", "i32", "buffer", "u32"], result: "i32" },
  linkat: { parameters: ["i32", "buffer", "i32", "buffer", "i32"], result: "i32" },
  flock: { parameters: ["i32", "i32"], result: "i32" },
  statx: { parameters: ["i32", "buffer", "i32", "u32", "buffer"], result: "i32" },
  pread: { name: "pread64", parameters: ["i32", "buffer", "usize", "i64"], result: "isize" },
  pwrite: { name: "pwrite64", parameters: ["i32", "buffer", "usize", "i64"], result: "isize" },
  // fsync may take long: off the main thread (its errno is not readable there).
  fsync: { parameters: ["i32"], result: "i32", nonblocking: true },
  getdents64: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  mkdirat: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  unlinkat: { parameters: ["i32", "buffer", "i32"], result: "i32" },
  symlinkat: { parameters: ["buffer", "i32", "buffer"], result: "i32" },
  readlinkat: { parameters: ["i32", "buffer", "buffer", "usize"], result: "isize" },
  fchmod: { parameters: ["i32", "u32"], result: "i32" },
  ftruncate: { name: "ftruncate64", parameters: ["i32", "i64"], result: "i32" },
  utimensat: { parameters: ["i32", "buffer", "buffer", "i32"], result: "i32" },
  chmod: { parameters: ["buffer", "u32"], result: "i32" },
  truncate: { name: "truncate64", parameters: ["buffer", "i64"], result: "i32" },
  lsetxattr: { parameters: ["buffer", "buffer", "buffer", "usize", "i32"], result: "i32" },
  lremovexattr: { parameters: ["buffer", "buffer"], result: "i32" },
  __errno_location: { parameters: [], result: "pointer" },
} as const;

let lib: Deno.DynamicLibrary<typeof SYMBOLS> | undefined;

/** libc's functions, opened on first use. */
export function libc(): Deno.DynamicLibrary<typeof SYMBOLS>["symbols"] {
  lib ??= Deno.dlopen("libc.so.6", SYMBOLS);
  return lib.symbols;
}

/** The errno of the last failed libc call on this thread (read right after the call). */
export function errno(): number {
  const p = libc().__errno_location();
  return p === null ? 0 : new Deno.UnsafePointerView(p).getInt32();
}

/** A NUL-terminated C string. */
export function cstr(s: string): Uint8Array<ArrayBuffer> {
  return new TextEncoder().encode(`${s}\0`);
}

/** SOL_SOCKET on Linux. */
export const SOL_SOCKET = 1;
/** SO_LINGER on Linux. */
export const SO_LINGER = 13;
/** AF_UNSPEC: `connect` to it disconnects a TCP socket, with a reset when it was established. */
export const AF_UNSPEC = 0;

const arm = Deno.build.arch === "aarch64";
/** open(2) flags on Linux (x86_64 and aarch64 differ in O_DIRECTORY and O_NOFOLLOW). */
export const O = {
  RDONLY: 0,
  PATH: 0o10000000,
  DIRECTORY: arm ? 0o40000 : 0o200000,
  NOFOLLOW: arm ? 0o100000 : 0o400000,
  CLOEXEC: 0o2000000,
  NONBLOCK: 0o4000,
  WRONLY: 1,
  RDWR: 2,
  CREAT: 0o100,
  EXCL: 0o200,
};
/** openat2(2) resolve flags. */
export const RESOLVE = { NO_MAGICLINKS: 0x02, NO_SYMLINKS: 0x04, BENEATH: 0x08 };
/** The openat2 and pidfd_open system call numbers (the same on every Linux architecture). */
export const SYS_OPENAT2 = 437, SYS_PIDFD_OPEN = 434;
/** The *at calls' "current directory". */
export const AT_FDCWD = -100;
/** *at(2) flags. */
export const AT = { SYMLINK_NOFOLLOW: 0x100, REMOVEDIR: 0x200, SYMLINK_FOLLOW: 0x400, EMPTY_PATH: 0x1000 };
/** statx(2): the basic fields, and the size of struct statx. */
export const STATX_BASIC_STATS = 0x7ff, STATX_SIZE = 256;
/** renameat2(2) flags. */
export const RENAME = { NOREPLACE: 1, EXCHANGE: 2 };
/** flock(2) operations. */
export const LOCK = { EX: 2, NB: 4, UN: 8 };
/** errno values on Linux that callers tell apart. */
export const E = { ENOENT: 2, EINTR: 4, EAGAIN: 11, EEXIST: 17, ENOTDIR: 20, EINVAL: 22, ENOSYS: 38, ELOOP: 40, EXDEV: 18, E2BIG: 7 };

/** A descriptor of process `pid` that becomes readable when it ends (pidfd_open), or -1 when it is gone. */
export function pidfd(pid: number): number {
  return Number(libc().syscall2(BigInt(SYS_PIDFD_OPEN), BigInt(pid), 0n));
}

/** Whether the process of pidfd `fd` has ended (poll without waiting). */
export function pidfdEnded(fd: number): boolean {
  const pfd = new Uint8Array(8);
  const v = new DataView(pfd.buffer);
  v.setInt32(0, fd, true);
  v.setInt16(4, 1, true); // POLLIN
  return libc().poll(pfd, 1n, 0) > 0 && (v.getInt16(6, true) & 1) !== 0;
}
