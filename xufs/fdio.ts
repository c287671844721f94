/**
 * I/O on descriptors for A's file server: what it does with a file or directory after
 * xufs/confine.ts resolved it beneath the export — reads, writes, fsync, listing a directory
 * (getdents64), making and removing names inside a directory, and changing a file's mode, size
 * and times — all through libc on the descriptor (or its parent directory's), never through a
 * path the kernel would resolve again. Failures are FsErrors with the errno's name.
 */
import { AT, AT_FDCWD, cstr, errno, libc, O } from "../ffi/libc.ts";
import { Fd, type Named } from "./confine.ts";
import { errnoName, FsError } from "./fserror.ts";

/** Largest piece of one read or write call; the event loop runs between pieces. */
const PIECE = 1 << 20;

/** Throws the FsError of the last failed call (`what` says which). */
function fail(what: string): never {
  const code = errnoName(errno());
  throw new FsError(code, `${code}: ${what}`);
}

/** Reads into `buf` from offset `at` until it is full or the file ends; the bytes read. */
export async function readAt(fd: Fd, buf: Uint8Array<ArrayBuffer>, at: number): Promise<number> {
  let got = 0;
  while (got < buf.length) {
    const n = Number(libc().pread(fd.fd, buf.subarray(got, Math.min(buf.length, got + PIECE)), BigInt(Math.min(PIECE, buf.length - got)), BigInt(at + got)));
    if (n < 0) fail("read");
    if (n === 0) break;
    got += n;
    if (got < buf.length) await new Promise((r) => setTimeout(r, 0));
  }
  return got;
}

/** Writes all of `data` at offset `at`. */
export async function writeAt(fd: Fd, data: Uint8Array, at: number): Promise<void> {
  for (let off = 0; off < data.length;) {
    const piece = new Uint8Array(data.buffer as ArrayBuffer, data.byteOffset + off, Math.min(PIECE, data.length - off));
    const n = Number(libc().pwrite(fd.fd, piece, BigInt(piece.length), BigInt(at + off)));
    if (n < 0) fail("write");
    off += n;
    if (off < data.length) await new Promise((r) => setTimeout(r, 0));
  }
}

/** fsync (off the main thread). */
export async function fsync(fd: Fd): Promise<void> {
  if ((await libc().fsync(fd.fd)) !== 0) throw new FsError("EIO", "fsync failed");
}

/** The names in directory `dir` (opened O_RDONLY | O_DIRECTORY), without "." and "..". */
export function listNames(dir: Fd): string[] {
  const names: string[] = [];
  const buf = new Uint8Array(1 << 16);
  const dec = new TextDecoder();
  for (;;) {
    const n = Number(libc().getdents64(dir.fd, buf, BigInt(buf.length)));
    if (n < 0) fail("list");
    if (n === 0) return names;
    const v = new DataView(buf.buffer);
    for (let at = 0; at < n;) {
      const reclen = v.getUint16(at + 16, true);
      const start = at + 19;
      const end = buf.indexOf(0, start);
      const name = dec.decode(buf.subarray(start, end < 0 || end > at + reclen ? at + reclen : end));
      if (name !== "." && name !== "..") names.push(name);
      at += reclen;
    }
  }
}

/** Opens the name `n` (never following a symlink there) with `flags` and `mode`. */
export function openAt(n: Named, flags: number, mode = 0o600): Fd {
  const fd = libc().openat(n.dir.fd, cstr(n.name), flags | O.NOFOLLOW | O.CLOEXEC, mode);
  if (fd < 0) fail(`open ${n.name}`);
  return new Fd(fd);
}

/** mkdir of the name `n`. */
export function mkdirAt(n: Named, mode: number): void {
  if (libc().mkdirat(n.dir.fd, cstr(n.name), mode) !== 0) fail(`mkdir ${n.name}`);
}

/** Removes the name `n` (a directory with `dir`). */
export function unlinkAt(n: Named, dir = false): void {
  if (libc().unlinkat(n.dir.fd, cstr(n.name), dir ? AT.REMOVEDIR : 0) !== 0) fail(`remove ${n.name}`);
}

/** A symlink `n` whose content is `target`. */
export function symlinkAt(target: string, n: Named): void {
  if (libc().symlinkat(cstr(target), n.dir.fd, cstr(n.name)) !== 0) fail(`symlink ${n.name}`);
}

/** The content of the symlink `n`. */
export function readlinkAt(n: Named): string {
  const buf = new Uint8Array(4096);
  const len = Number(libc().readlinkat(n.dir.fd, cstr(n.name), buf, BigInt(buf.length)));
  if (len < 0) fail(`readlink ${n.name}`);
  return new TextDecoder().decode(buf.subarray(0, len));
}

/** Sets the mode of what `fd` refers to (through its magic link: an O_PATH fd allows no fchmod). */
export function chmodFd(fd: Fd, mode: number): void {
  if (libc().chmod(cstr(fd.path), mode & 0o7777) !== 0) fail("chmod");
}

/** Sets the length of the file `fd` refers to. */
export function truncateFd(fd: Fd, length: number): void {
  if (libc().truncate(cstr(fd.path), BigInt(length)) !== 0) fail("truncate");
}

/** Sets the access and modification times (milliseconds) of what `fd` refers to. */
export function utimesFd(fd: Fd, atimeMs: number, mtimeMs: number): void {
  const ts = new BigInt64Array(4);
  const put = (i: number, ms: number) => {
    const ns = BigInt(Math.round(ms * 1e6));
    ts[i] = ns / 1_000_000_000n;
    ts[i + 1] = ns % 1_000_000_000n;
  };
  put(0, atimeMs);
  put(2, mtimeMs);
  if (libc().utimensat(AT_FDCWD, cstr(fd.path), new Uint8Array(ts.buffer), 0) !== 0) fail("utimes");
}

/** Sets the length of the file open (for writing) as `fd`. */
export function ftruncateFd(fd: Fd, length: number): void {
  if (libc().ftruncate(fd.fd, BigInt(length)) !== 0) fail("truncate");
}

/** Sets the mode of the file open as `fd`. */
export function fchmodFd(fd: Fd, mode: number): void {
  if (libc().fchmod(fd.fd, mode & 0o7777) !== 0) fail("chmod");
}
