/**
 * Confinement of XUFS paths to the export on host A. A relative path from the wire is checked
 * lexically, then resolved beneath the export's directory descriptor with
 * openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS) — on kernels before
 * 5.6, component by component with openat(O_NOFOLLOW) — and used only through the descriptor
 * from then on (xufs/fdio.ts), however the tree changes meanwhile, so a symlink swapped in after
 * the check leads nowhere. Operations on a name itself (unlink, rename, stat, creating) go
 * through the descriptor of its parent directory.
 */
import { AT, AT_FDCWD, cstr, E, errno, libc, O, RESOLVE, STATX_BASIC_STATS, STATX_SIZE, SYS_OPENAT2 } from "../ffi/libc.ts";
import { errnoName, FsError } from "./fserror.ts";

/** Splits and checks a wire path ("." is the root). */
export function components(rel: unknown): string[] {
  if (typeof rel !== "string" || rel.length === 0 || rel.length > 4096) {
    throw new FsError("EINVAL", `Bad path: ${String(rel).slice(0, 80)}`);
  }
  if (rel === ".") return [];
  if (rel.includes("\0") || rel.startsWith("/")) throw new FsError("EACCES", `Path outside the export: ${rel}`);
  const parts = rel.split("/");
  for (const p of parts) {
    if (p === "" || p === "." || p === "..") throw new FsError("EACCES", `Path outside the export: ${rel}`);
  }
  return parts;
}

/** An open descriptor; `path` (`/proc/self/fd/N`) reaches exactly what it refers to. */
export class Fd {
  #open = true;
  constructor(readonly fd: number) {}

  /** The descriptor's magic link, for libc calls that take a path: it names exactly the resolved file. */
  get path(): string {
    return `/proc/self/fd/${this.fd}`;
  }

  close(): void {
    if (this.#open) libc().close(this.fd);
    this.#open = false;
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/** What statx tells of a file, with nanosecond times (Deno's stat has milliseconds at best). */
export interface FileStat {
  type: "f" | "d" | "l" | "other";
  mode: number;
  size: number;
  ino: bigint;
  mtimeNs: bigint;
  ctimeNs: bigint;
}

const S_IFMT = 0o170000, S_IFREG = 0o100000, S_IFDIR = 0o40000, S_IFLNK = 0o120000;

/**
 * statx of `name` in directory `dir` (never following a final symlink), or of `dir` itself when
 * `name` is omitted; null when there is no such entry.
 */
export function statAt(dir: Fd, name?: string): FileStat | null {
  const buf = new Uint8Array(STATX_SIZE);
  const flags = name === undefined ? AT.EMPTY_PATH | AT.SYMLINK_NOFOLLOW : AT.SYMLINK_NOFOLLOW;
  if (libc().statx(dir.fd, cstr(name ?? ""), flags, STATX_BASIC_STATS, buf) !== 0) {
    const e = errno();
    if (e === E.ENOENT || e === E.ENOTDIR) return null;
    const code = errnoName(e);
    throw new FsError(code, `${code}: stat ${name ?? "."}`);
  }
  return parseStatx(buf);
}

/** The fields of a statx(2) result in `buf` (STATX_SIZE bytes). */
export function parseStatx(buf: Uint8Array<ArrayBuffer>): FileStat {
  const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const mode = v.getUint16(28, true);
  const fmt = mode & S_IFMT;
  const ns = (at: number) => v.getBigInt64(at, true) * 1_000_000_000n + BigInt(v.getUint32(at + 8, true));
  return {
    type: fmt === S_IFREG ? "f" : fmt === S_IFDIR ? "d" : fmt === S_IFLNK ? "l" : "other",
    mode: mode & 0o7777,
    size: Number(v.getBigUint64(40, true)),
    ino: v.getBigUint64(32, true),
    mtimeNs: ns(112),
    ctimeNs: ns(96),
  };
}

/** A directory and one name in it. */
export interface Named {
  dir: Fd;
  name: string;
}

let haveOpenat2 = true;

/** The export root: every path of the wire is resolved beneath it. */
export class ExportRoot {
  readonly #root: Fd;

  constructor(readonly root: string) {
    const fd = libc().openat(AT_FDCWD, cstr(root), O.PATH | O.DIRECTORY | O.CLOEXEC, 0);
    if (fd < 0) throw new FsError(errnoName(errno()), `Cannot open the export: ${root}`);
    this.#root = new Fd(fd);
  }

  /**
   * Opens `rel` (no symlink anywhere on the way, the last component included) with `flags`
   * (O_PATH by default). Fails with EACCES for a symlink or a path leading out, ENOENT, ENOTDIR.
   */
  open(rel: unknown, flags = O.PATH): Fd {
    const parts = components(rel);
    const f = flags | O.CLOEXEC;
    if (parts.length === 0) return this.#openat(this.#root.fd, ".", f, String(rel));
    if (haveOpenat2) {
      const how = new BigUint64Array([BigInt(f), 0n, BigInt(RESOLVE.BENEATH | RESOLVE.NO_SYMLINKS | RESOLVE.NO_MAGICLINKS)]);
      const fd = Number(libc().syscall(BigInt(SYS_OPENAT2), BigInt(this.#root.fd), cstr(parts.join("/")), new Uint8Array(how.buffer), 24n));
      if (fd >= 0) return new Fd(fd);
      const e = errno();
      if (e !== E.ENOSYS && e !== E.E2BIG) throw resolveError(e, String(rel));
      haveOpenat2 = false; // Linux before 5.6
    }
    // Component by component: each directory opened O_NOFOLLOW relative to the one before.
    let dir = this.#root.fd;
    const opened: Fd[] = [];
    try {
      for (let i = 0; i < parts.length - 1; i++) {
        const d = this.#openat(dir, parts[i], O.PATH | O.DIRECTORY | O.NOFOLLOW | O.CLOEXEC, String(rel));
        opened.push(d);
        dir = d.fd;
      }
      // O_PATH | O_NOFOLLOW would open a final symlink itself; a real open refuses it (ELOOP).
      const last = (f & O.PATH) ? (f & ~O.PATH) | O.NONBLOCK : f;
      return this.#openat(dir, parts[parts.length - 1], last | O.NOFOLLOW, String(rel));
    } finally {
      for (const d of opened) d.close();
    }
  }

  #openat(dir: number, name: string, flags: number, rel: string): Fd {
    const fd = libc().openat(dir, cstr(name), flags, 0);
    if (fd < 0) throw resolveError(errno(), rel);
    return new Fd(fd);
  }

  /** The parent directory of `rel` (opened for reading, so it can be locked) and its last name. */
  parent(rel: unknown): Named {
    const parts = components(rel);
    if (parts.length === 0) throw new FsError("EINVAL", "The export root has no parent");
    const dir = this.open(parts.length === 1 ? "." : parts.slice(0, -1).join("/"), O.RDONLY | O.DIRECTORY);
    return { dir, name: parts[parts.length - 1] };
  }

  close(): void {
    this.#root.close();
  }
}

/** The FsError of a failed resolution. */
function resolveError(e: number, rel: string): FsError {
  if (e === E.ELOOP) return new FsError("EACCES", `Symlink not followed: ${rel}`);
  if (e === E.EXDEV) return new FsError("EACCES", `Path outside the export: ${rel}`);
  const code = errnoName(e);
  return new FsError(code, `${code}: ${rel}`);
}
