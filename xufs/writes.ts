/**
 * The write side of the XUFS file server (docs/XUFS.md): write-backs as an atomic
 * compare-and-swap on the version B started from (whole in one message, or a ranged upload
 * assembled in a temporary file beside its target), and metadata changes (mkdir, rmdir, unlink,
 * rename, symlink, link, chmod, truncate, utimes). The check of A's version and the replacement
 * happen under one lock — in this process and, with flock on the directory, against every other
 * XUFS server on A — and the replacement is a renameat2(RENAME_EXCHANGE) whose result is checked
 * again, so an edit slipped in between is never overwritten. A change that would lose an edit
 * made on A keeps both copies (a conflict copy NAME.conflict-HOST-YYYYMMDD-HHMMSS-N) or leaves
 * A's file alone. A change A already has (a request sent again after a link was lost) succeeds
 * without being applied twice. Every path is resolved beneath the export (xufs/confine.ts).
 */
import { hostname } from "node:os";
import { sha256 } from "../common/bytes.ts";
import { AT, AT_FDCWD, cstr, E, errno, libc, LOCK, O, RENAME } from "../ffi/libc.ts";
import { components, type ExportRoot, type Fd, type FileStat, type Named, statAt } from "./confine.ts";
import { errnoName, errnoOf, FsError } from "./fserror.ts";
import { chmodFd, fchmodFd, fsync, ftruncateFd, mkdirAt, openAt, readlinkAt, symlinkAt, truncateFd, unlinkAt, utimesFd, writeAt } from "./fdio.ts";
import { hashFd, isRacy, versionString } from "./reads.ts";

/** An upload that sees no part for this long is dropped with its temporary file. */
const UPLOAD_IDLE_MS = 10 * 60_000;
/** How long a compare-and-swap waits for another XUFS server's lock on the same directory. */
const LOCK_WAIT_MS = 10_000;
/** Racy versions of files up to this size come with their content's SHA-256. */
const HASH_RACY_MAX = 16 << 20;

/** A request header (JSON) as it came from the peer. */
// deno-lint-ignore no-explicit-any
type Head = Record<string, any>;

/** A ranged write-back being assembled in a temporary file beside its target. */
interface Upload {
  path: string;
  tmp: string;
  dir: Fd;
  file: Fd;
  size: number;
  parts: [number, number][];
  timer: ReturnType<typeof setTimeout>;
}

/** The stat of a name in a directory (not following a symlink), or null when there is none. */
function lstatAt(n: Named): FileStat | null {
  return statAt(n.dir, n.name);
}

/**
 * Whether `now` is the file `was` described, untouched (a rename changes ctime, so mtime, size
 * and inode are compared): the check after a RENAME_EXCHANGE.
 */
function sameFile(now: FileStat | null, was: FileStat): boolean {
  return now !== null && now.ino === was.ino && now.size === was.size && now.mtimeNs === was.mtimeNs;
}

/** renameat2 within and between directories; throws FsError. */
function renameAt(from: Named, to: Named, flags = 0): void {
  if (libc().renameat2(from.dir.fd, cstr(from.name), to.dir.fd, cstr(to.name), flags) !== 0) {
    const code = errnoName(errno());
    throw new FsError(code, `${code}: rename ${from.name} to ${to.name}`);
  }
}

/** The SHA-256 of the regular file `n` (for a content comparison). */
async function hashAt(n: Named): Promise<string> {
  using fd = openAt(n, O.RDONLY | O.NONBLOCK);
  return await hashFd(fd);
}

/** Runs `work` under the in-process lock of compare-and-swaps. */
class Mutex {
  #tail: Promise<void> = Promise.resolve();
  run<T>(work: () => Promise<T>): Promise<T> {
    const p = this.#tail.then(work);
    this.#tail = p.then(() => {}, () => {});
    return p;
  }
}

/** Answers the write and metadata requests of one export. */
export class ExportWriter {
  #uploads = new Map<string, Upload>();
  #cas = new Mutex();

  constructor(readonly root: ExportRoot, private readonly log: (line: string) => void) {}

  /**
   * Runs `work` with the directory of `n` locked against every XUFS server on A (flock) and the
   * other compare-and-swaps of this one.
   */
  #locked<T>(dir: Fd, work: () => Promise<T>): Promise<T> {
    return this.#cas.run(async () => {
      const end = Date.now() + LOCK_WAIT_MS;
      while (libc().flock(dir.fd, LOCK.EX | LOCK.NB) !== 0) {
        const e = errno();
        if (e !== E.EAGAIN && e !== E.EINTR) throw new FsError(errnoName(e), "Cannot lock a directory of the export");
        if (Date.now() > end) throw new FsError("EAGAIN", "Another XUFS server keeps a directory of the export locked");
        await new Promise((r) => setTimeout(r, 2));
      }
      try {
        return await work();
      } finally {
        libc().flock(dir.fd, LOCK.UN);
      }
    });
  }

  /** The reply fields of a file's version: racy ones carry their content's SHA-256 (`known`, or computed when small). */
  async #versionOf(n: Named, known?: string): Promise<Record<string, unknown>> {
    const st = lstatAt(n);
    if (!st) throw new FsError("ENOENT", `Gone from A meanwhile: ${n.name}`);
    const out: Record<string, unknown> = { version: versionString(st) };
    if (st.type === "f" && isRacy(st)) {
      out.racy = true;
      if (known) out.contentSha256 = known;
      else if (st.size <= HASH_RACY_MAX) out.contentSha256 = await hashAt(n);
    }
    return out;
  }

  /** Whether A's file `n` (stat `st`) is still the version B based its change on (`base`, and for a racy base its content). */
  async #isBase(n: Named, st: FileStat | null, base: unknown, baseSha256: unknown): Promise<boolean> {
    if (st === null) return base === null || base === undefined;
    if (versionString(st) !== base) return false;
    return typeof baseSha256 !== "string" || st.type !== "f" || (await hashAt(n)) === baseSha256;
  }

  /** `wbegin`: starts a ranged write-back, a temporary file of `size` bytes beside the target. */
  beginUpload(h: Head): Record<string, unknown> {
    const { dir, name } = this.root.parent(h.path);
    const size = Number(h.size);
    if (!Number.isSafeInteger(size) || size < 0) {
      dir.close();
      throw new FsError("EINVAL", `Bad upload size: ${h.size}`);
    }
    const tmp = tmpName(name);
    let file: Fd;
    try {
      file = openAt({ dir, name: tmp }, O.RDWR | O.CREAT | O.EXCL, 0o600);
      ftruncateFd(file, size);
    } catch (e) {
      dir.close();
      throw e;
    }
    const upload = crypto.randomUUID();
    const timer = setTimeout(() => this.#dropUpload(upload), UPLOAD_IDLE_MS);
    this.#uploads.set(upload, { path: String(h.path), tmp, dir, file, size, parts: [], timer });
    return { upload };
  }

  /** `wpart`: one range of an upload, checked against its SHA-256 before it is written. */
  async part(h: Head, payload: Uint8Array): Promise<Record<string, unknown>> {
    const u = this.#uploads.get(String(h.upload));
    if (!u) throw new FsError("ENOENT", `No such upload: ${String(h.upload).slice(0, 40)}`);
    const offset = Number(h.offset);
    if (!Number.isSafeInteger(offset) || offset < 0 || offset + payload.length > u.size) {
      throw new FsError("EINVAL", `Range outside the upload of ${u.size} bytes: ${h.offset}+${payload.length}`);
    }
    if (sha256(payload) !== h.sha256) throw new FsError("EIO", `Range ${offset}+${payload.length} of ${u.path} arrived corrupted`);
    await writeAt(u.file, payload, offset);
    u.parts.push([offset, payload.length]);
    clearTimeout(u.timer);
    u.timer = setTimeout(() => this.#dropUpload(String(h.upload)), UPLOAD_IDLE_MS);
    return {};
  }

  #dropUpload(id: string): void {
    const u = this.#uploads.get(id);
    if (!u) return;
    this.#uploads.delete(id);
    clearTimeout(u.timer);
    u.file.close();
    try {
      unlinkAt({ dir: u.dir, name: u.tmp });
    } catch { /* gone */ }
    u.dir.close();
  }

  /**
   * `write`: a write-back as a compare-and-swap on `base` (`baseSha256` for a racy base): if A's
   * file is not the version B started from, the upload is kept beside it as a conflict copy and
   * A's file is untouched; if A's file already holds exactly this content (`sha256`), nothing is
   * written. The content is the payload (whole file) or a finished ranged upload (`upload`, every
   * byte received and checked). It lands atomically (temporary file, fsync, exchange): never
   * truncated.
   */
  async write(h: Head, payload: Uint8Array): Promise<Record<string, unknown>> {
    let tmp: string, f: Fd, dir: Fd, name: string;
    if (h.upload !== undefined) {
      const u = this.#uploads.get(String(h.upload));
      if (!u || u.path !== h.path) throw new FsError("ENOENT", `No such upload for ${h.path}: ${String(h.upload).slice(0, 40)}`);
      this.#uploads.delete(String(h.upload));
      clearTimeout(u.timer);
      ({ tmp, file: f, dir } = u);
      name = components(h.path).at(-1)!;
      let covered = 0;
      for (const [off, len] of u.parts.sort((x, y) => x[0] - y[0])) {
        if (off !== covered) break;
        covered += len;
      }
      if (covered !== u.size) {
        f.close();
        try {
          unlinkAt({ dir, name: tmp });
        } catch { /* gone */ }
        dir.close();
        throw new FsError("EIO", `Upload of ${h.path} is incomplete: ${covered} of ${u.size} bytes in order`);
      }
    } else {
      if (typeof h.sha256 === "string" && sha256(payload) !== h.sha256) throw new FsError("EIO", `Write-back of ${h.path} arrived corrupted`);
      ({ dir, name } = this.root.parent(h.path));
      tmp = tmpName(name);
      try {
        f = openAt({ dir, name: tmp }, O.WRONLY | O.CREAT | O.EXCL, 0o600);
      } catch (e) {
        dir.close();
        throw e;
      }
    }
    const tmpAt = { dir, name: tmp }, target = { dir, name };
    try {
      try {
        if (h.upload === undefined) await writeAt(f, payload, 0);
        fchmodFd(f, Number(h.mode ?? 0o644));
        if (typeof h.mtimeMs === "number") utimesFd(f, Number(h.atimeMs ?? h.mtimeMs), h.mtimeMs);
        await fsync(f);
      } finally {
        f.close();
      }
      return await this.#locked(dir, () => this.#swap(h, tmpAt, target));
    } catch (e) {
      try {
        unlinkAt(tmpAt);
      } catch { /* moved or gone */ }
      throw e;
    } finally {
      dir.close();
    }
  }

  /** The compare-and-swap of a write-back (lock held): the temporary file `tmp` replaces `target`, or becomes a conflict copy. */
  async #swap(h: Head, tmp: Named, target: Named): Promise<Record<string, unknown>> {
    const known = typeof h.sha256 === "string" ? h.sha256 : undefined;
    for (let attempt = 0; attempt < 3; attempt++) {
      const st = lstatAt(target);
      if (st?.type === "l") throw new FsError("EACCES", `Symlink not followed: ${h.path}`);
      if (st && st.type !== "f") throw new FsError("EISDIR", `Not a regular file: ${h.path}`);
      if (!(await this.#isBase(target, st, h.base ?? null, h.baseSha256))) {
        if (st && known && (await hashAt(target)) === known) {
          unlinkAt(tmp); // A already has exactly this content
          return { ...(await this.#versionOf(target, known)), same: true };
        }
        const conflict = this.#keepAside(tmp, target, h.from);
        this.log(`conflict on ${h.path}: A's copy changed since ${h.from ?? "the remote"} opened it; upload kept as ${conflict}`);
        return { ...(await this.#versionOf(target)), conflict };
      }
      if (st === null) {
        try {
          renameAt(tmp, target, RENAME.NOREPLACE);
        } catch (e) {
          if (errnoOf(e) === "EEXIST") continue; // made on A meanwhile: compare again
          throw e;
        }
        return await this.#versionOf(target, known);
      }
      // Exchange, then check that what left is what was compared; if not, undo and compare again.
      renameAt(tmp, target, RENAME.EXCHANGE);
      if (sameFile(lstatAt(tmp), st)) {
        unlinkAt(tmp);
        return await this.#versionOf(target, known);
      }
      renameAt(tmp, target, RENAME.EXCHANGE);
    }
    throw new FsError("EAGAIN", `${h.path} keeps changing on A`);
  }

  /** Moves `from` beside `beside` under a conflict name not taken yet; returns the name. */
  #keepAside(from: Named, beside: Named, host: unknown): string {
    const stem = conflictStem(beside.name, host);
    for (let n = 1;; n++) {
      try {
        renameAt(from, { dir: beside.dir, name: `${stem}-${n}` }, RENAME.NOREPLACE);
        return `${stem}-${n}`;
      } catch (e) {
        if (errnoOf(e) !== "EEXIST" || n >= 10_000) throw e;
      }
    }
  }

  /** `mkdir`; a directory that is already there counts (a request sent again). */
  mkdir(h: Head): Record<string, unknown> {
    const n = this.root.parent(h.path);
    using _ = n.dir;
    try {
      mkdirAt(n, Number(h.mode ?? 0o755) & 0o7777);
    } catch (e) {
      if (errnoOf(e) !== "EEXIST" || lstatAt(n)?.type !== "d") throw e;
    }
    return { version: versionString(lstatAt(n)!) };
  }

  /** `rmdir`; a directory already gone counts. */
  rmdir(h: Head): Record<string, unknown> {
    const n = this.root.parent(h.path);
    using _ = n.dir;
    try {
      unlinkAt(n, true);
    } catch (e) {
      if (errnoOf(e) !== "ENOENT") throw e;
    }
    return {};
  }

  /** `unlink`; with `base`, only if A's file is still that version (else a conflict, nothing removed). */
  async unlink(h: Head): Promise<Record<string, unknown>> {
    const n = this.root.parent(h.path);
    using _ = n.dir;
    return await this.#locked(n.dir, async () => {
      const st = lstatAt(n);
      if (st === null) return {}; // gone already
      if (h.base !== undefined && st.type === "f" && !(await this.#isBase(n, st, h.base, h.baseSha256))) {
        this.log(`conflict on ${h.path}: changed on A since ${h.from ?? "the remote"} saw it; not removed`);
        return { conflict: h.path };
      }
      unlinkAt(n);
      return {};
    });
  }

  /**
   * `rename`; with `toBase`, a target file that changed on A since B saw it is kept and B's file
   * lands beside it as a conflict copy. A source already gone while the target is there counts
   * as done (a request sent again).
   */
  async rename(h: Head): Promise<Record<string, unknown>> {
    const from = this.root.parent(h.path);
    using _f = from.dir;
    const to = this.root.parent(h.to);
    using _t = to.dir;
    return await this.#locked(to.dir, async () => {
      const src = lstatAt(from);
      const dst = lstatAt(to);
      if (src === null) {
        if (dst !== null) return { version: versionString(dst), same: true };
        throw new FsError("ENOENT", `No such file or directory: ${h.path}`);
      }
      if (h.toBase !== undefined && dst !== null && dst.type === "f" && !(await this.#isBase(to, dst, h.toBase, h.toBaseSha256))) {
        const conflict = this.#keepAside(from, to, h.from);
        this.log(`conflict on ${h.to}: changed on A since ${h.from ?? "the remote"} saw it; B's version kept as ${conflict}`);
        return { conflict };
      }
      if (dst === null) renameAt(from, to, RENAME.NOREPLACE);
      else if (src.type === "d" || dst.type !== "f") renameAt(from, to);
      else {
        renameAt(from, to, RENAME.EXCHANGE);
        if (!sameFile(lstatAt(from), dst)) {
          renameAt(from, to, RENAME.EXCHANGE);
          throw new FsError("EAGAIN", `${h.to} changed on A during the rename`);
        }
        unlinkAt(from);
      }
      return await this.#versionOf(to);
    });
  }

  /** `symlink`; the same symlink already there counts. */
  symlink(h: Head): Record<string, unknown> {
    if (typeof h.target !== "string" || h.target.includes("\0")) throw new FsError("EINVAL", "Bad symlink target");
    const n = this.root.parent(h.path);
    using _ = n.dir;
    try {
      symlinkAt(h.target, n);
    } catch (e) {
      let there: string | null = null;
      try {
        there = readlinkAt(n);
      } catch { /* not a symlink */ }
      if (errnoOf(e) !== "EEXIST" || there !== h.target) throw e;
    }
    return { version: versionString(lstatAt(n)!) };
  }

  /** `link`: a hard link; the same link already there counts. */
  async link(h: Head): Promise<Record<string, unknown>> {
    using src = this.root.open(h.path);
    const n = this.root.parent(h.to);
    using _ = n.dir;
    // linkat through the descriptor's magic link (AT_SYMLINK_FOLLOW), the unprivileged way.
    if (libc().linkat(AT_FDCWD, cstr(src.path), n.dir.fd, cstr(n.name), AT.SYMLINK_FOLLOW) !== 0) {
      const code = errnoName(errno());
      if (code !== "EEXIST" || lstatAt(n)?.ino !== statAt(src)?.ino) throw new FsError(code, `${code}: link ${h.path} to ${h.to}`);
    }
    return await this.#versionOf(n);
  }

  /** `chmod` (never through a symlink). */
  chmod(h: Head): Record<string, unknown> {
    using fd = this.root.open(h.path);
    chmodFd(fd, Number(h.mode));
    return this.#fdVersion(fd);
  }

  /** `truncate` (never through a symlink); answers the new version. */
  truncate(h: Head): Record<string, unknown> {
    using fd = this.root.open(h.path);
    truncateFd(fd, Number(h.length));
    return this.#fdVersion(fd);
  }

  /** `utimes` (never through a symlink); answers the new version. */
  utimes(h: Head): Record<string, unknown> {
    using fd = this.root.open(h.path);
    utimesFd(fd, Number(h.atimeMs), Number(h.mtimeMs));
    return this.#fdVersion(fd);
  }

  /** The version of what `fd` refers to (its magic link followed to the file itself). */
  #fdVersion(fd: Fd): Record<string, unknown> {
    const st = statAt(fd)!;
    return isRacy(st) ? { version: versionString(st), racy: true } : { version: versionString(st) };
  }
}

/** Whether a path in the export is one of our temporary files (they come and go with every write-back). */
export function isTempFile(rel: string): boolean {
  return /\.xufs-[0-9]+-[0-9a-f]{8}$/.test(rel);
}

/** A temporary name beside `name`, named so that change callbacks ignore it (see `isTempFile`). */
function tmpName(name: string): string {
  return `.${name.slice(0, 200)}.xufs-${Deno.pid}-${crypto.randomUUID().slice(0, 8)}`;
}

/** A conflict copy's name without its number: NAME.conflict-HOST-YYYYMMDD-HHMMSS. */
export function conflictStem(name: string, from: unknown): string {
  const t = new Date().toISOString(); // 2026-12-01T22:22:11.123Z
  const stamp = `${t.slice(0, 10).replace(/-/g, "")}-${t.slice(11, 19).replace(/:/g, "")}`;
  return `${name}.conflict-${String(from ?? "remote").replace(/[^A-Za-z0-9.-]/g, "_")}-${stamp}`;
}

/** This host's short name, for conflict copy names. */
export function shortHost(): string {
  return hostname().split(".")[0];
}
