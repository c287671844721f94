/**
 * A's identity of cache files: the inode number, mtime and ctime a file has on host A, recorded
 * in the cache file's `user.xufs.id` extended attribute beside the cache file's own inode, mtime
 * and size at that moment. libxufs.so's stat wrappers (native/xufs/core/identity.h, which defines
 * the 56-byte record) report A's values while the cache file still matches, so git's index, make
 * and rsync see the same stat data on both sides; a file B changes no longer matches and shows
 * its own values until its write-back is answered and it is recorded again.
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

  constructor(private readonly log: (line: string) => void) {}

  /**
   * Records `m.version` as the identity of the regular file at `path` when the file still is what
   * `m` says B has (its mtime and size, not dirty); whether it did. A file B changed meanwhile is
   * left alone: its record, if any, no longer matches it.
   */
  record(path: string, m: Meta): boolean {
    if (this.#unsupported || m.version === undefined || m.dirty || m.identity === m.version) return false;
    const a = parseVersion(m.version);
    if (!a || m.mtimeMs === undefined || m.size !== a.size) return false;
    const buf = new Uint8Array(STATX_SIZE);
    if (libc().statx(AT_FDCWD, cstr(path), AT.SYMLINK_NOFOLLOW, STATX_BASIC_STATS, buf) !== 0) return false;
    const b = parseStatx(buf);
    if (b.type !== "f" || b.size !== m.size || Math.abs(Number(b.mtimeNs / 1_000_000n) - m.mtimeMs) > 1) return false;
    const rec = new Uint8Array(56);
    const v = new DataView(rec.buffer);
    rec.set(MAGIC, 0);
    [a.ino, a.mtimeNs, a.ctimeNs, b.ino, b.mtimeNs, BigInt(b.size)].forEach((x, i) => v.setBigUint64(8 + 8 * i, x, true));
    if (libc().lsetxattr(cstr(path), ATTR, rec, BigInt(rec.length), 0) !== 0) {
      if (errno() === ENOTSUP) {
        this.#unsupported = true;
        this.log("xufs: the cache's file system keeps no user extended attributes: stat on this host shows the cache's inode numbers and ctimes, not host A's");
      }
      return false;
    }
    m.identity = m.version;
    return true;
  }
}
