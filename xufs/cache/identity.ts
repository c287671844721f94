/**
 * A's identity of cache files: the inode number, mtime and ctime a file has on host A, recorded
 * in the cache file's `user.xufs.id` extended attribute beside the cache file's own inode, mtime
 * and size at that moment. libxufs.so's stat wrappers (native/xufs/core/identity.h, which defines
 * the 56-byte record) report A's values while the cache file still matches, so git's index, make
 * and rsync see the same stat data on both sides; a file B changes no longer matches and shows
 * its own values until its write-back is answered and it is recorded again. The record also
 * carries this session's mark (XUFS_MARK) while the file's content is cached and trusted, so
 * libxufs.so opens it for reading without asking the manager (a FETCH round trip); anything that
 * stops trusting the content records the file again, without the mark.
 */
import { AT, AT_FDCWD, cstr, errno, libc, STATX_BASIC_STATS, STATX_SIZE } from "../../ffi/libc.ts";
import { parseStatx } from "../confine.ts";
import type { Meta } from "./state.ts";

const ATTR = cstr("user.xufs.id");
const MAGIC = new TextEncoder().encode("XUFSID1\0");
/** EOPNOTSUPP: the file system keeps no user extended attributes. */
const ENOTSUP = 95;

/** A's identity in a version string (`mtimeNs-size-ino-ctimeNs`, xufs/reads.ts), or null. */
export function parseVersion(version: string): { mtimeNs: bigint; size: number; ino: bigint; ctimeNs: bigint } | null {
  const m = /^(\d+)-(\d+)-(\d+)-(\d+)$/.exec(version);
  return m ? { mtimeNs: BigInt(m[1]), size: Number(m[2]), ino: BigInt(m[3]), ctimeNs: BigInt(m[4]) } : null;
}

/** Records A's identity of cache files; says once when the cache's file system cannot keep it. */
export class Identities {
  #unsupported = false;
  /** Cache files A announced a change of: no mark until a listing or a fetch checked them again. */
  readonly distrusted = new Set<string>();
  /** This session's mark: random, never 0 (XUFS_MARK, 16 hex digits, in the session's environment). */
  readonly mark: bigint;

  constructor(private readonly log: (line: string) => void) {
    const b = crypto.getRandomValues(new Uint8Array(8));
    b[0] |= 1;
    this.mark = new DataView(b.buffer).getBigUint64(0, true);
  }

  /** The mark as XUFS_MARK holds it. */
  get markHex(): string {
    return this.mark.toString(16).padStart(16, "0");
  }

  /** Removes the record of the cache file at `path`: stat shows its own values, and reads ask the manager. */
  forget(path: string): void {
    if (!this.#unsupported) libc().lremovexattr(cstr(path), ATTR);
  }

  /**
   * Records `m.version` as the identity of the regular file at `path` when the file still is what
   * `m` says B has (its mtime and size, not dirty); whether it did. A file B changed meanwhile is
   * left alone: its record, if any, no longer matches it. With `markOnly`, only the mark of a
   * record of this very version changes: what stat shows never changes while a program may be
   * looking (cp compares a stat with the fstat of its open).
   */
  record(path: string, m: Meta, markOnly = false): boolean {
    const mark = m.fetched && !m.racy && !m.recheck && !this.distrusted.has(path) ? this.mark : 0n;
    const key = `${m.version}|${mark.toString(16)}`;
    if (this.#unsupported || m.version === undefined || m.dirty || m.identity === key) return false;
    if (markOnly && !m.identity?.startsWith(`${m.version}|`)) return false;
    const a = parseVersion(m.version);
    if (!a || m.mtimeMs === undefined || m.size !== a.size) return false;
    const buf = new Uint8Array(STATX_SIZE);
    if (libc().statx(AT_FDCWD, cstr(path), AT.SYMLINK_NOFOLLOW, STATX_BASIC_STATS, buf) !== 0) return false;
    const b = parseStatx(buf);
    if (b.type !== "f" || b.size !== m.size || Math.abs(Number(b.mtimeNs / 1_000_000n) - m.mtimeMs) > 1) return false;
    const rec = new Uint8Array(64);
    const v = new DataView(rec.buffer);
    rec.set(MAGIC, 0);
    [a.ino, a.mtimeNs, a.ctimeNs, b.ino, b.mtimeNs, BigInt(b.size), mark].forEach((x, i) => v.setBigUint64(8 + 8 * i, x, true));
    if (libc().lsetxattr(cstr(path), ATTR, rec, BigInt(rec.length), 0) !== 0) {
      if (errno() === ENOTSUP) {
        this.#unsupported = true;
        this.log("xufs: the cache's file system keeps no user extended attributes: stat on this host shows the cache's inode numbers and ctimes, not host A's");
      }
      return false;
    }
    m.identity = key;
    return true;
  }
}
