/**
 * The write side of the XUFS file server (docs/XUFS.md): write-backs as a compare-and-swap on
 * the version B started from (whole in one message, or a ranged upload assembled in a temporary
 * file beside its target), and metadata changes (mkdir, rmdir, unlink, rename, symlink, link,
 * chmod, truncate, utimes). A change that would lose an edit made on A keeps both copies
 * (a clearly named conflict copy) or leaves A's file alone. Every path is resolved inside the
 * export (xufs/confine.ts).
 */
import { chmod, type FileHandle, link, lstat, mkdir, open, rename, rmdir, symlink, truncate, unlink, utimes } from "node:fs/promises";
import { hostname } from "node:os";
import { basename, dirname, join } from "node:path";
import { sha256 } from "../common/bytes.ts";
import { FsError, resolveInExport } from "./confine.ts";
import { versionOf } from "./reads.ts";

/** An upload that sees no part for this long is dropped with its temporary file. */
const UPLOAD_IDLE_MS = 10 * 60_000;

/** A request header (JSON) as it came from the peer. */
// deno-lint-ignore no-explicit-any
type Head = Record<string, any>;

/** A ranged write-back being assembled in a temporary file beside its target. */
interface Upload {
  path: string;
  tmp: string;
  file: FileHandle;
  size: number;
  parts: [number, number][];
  timer: ReturnType<typeof setTimeout>;
}

/** Writes all of `data` to `f`, at file offset `at` (or at the current position when omitted). */
async function writeInto(f: FileHandle, data: Uint8Array, at?: number): Promise<void> {
  let off = 0;
  while (off < data.length) {
    off += (await f.write(data, off, data.length - off, at === undefined ? undefined : at + off)).bytesWritten;
  }
}

/** Answers the write and metadata requests of one export. */
export class ExportWriter {
  #uploads = new Map<string, Upload>();

  constructor(readonly root: string, private readonly log: (line: string) => void) {}

  #at(rel: unknown, lastMayBeLink = false): Promise<string> {
    return resolveInExport(this.root, rel, lastMayBeLink);
  }

  /** `wbegin`: starts a ranged write-back, a temporary file of `size` bytes beside the target. */
  async beginUpload(h: Head): Promise<Record<string, unknown>> {
    const path = await this.#at(h.path);
    const size = Number(h.size);
    if (!Number.isSafeInteger(size) || size < 0) throw new FsError("EINVAL", `Bad upload size: ${h.size}`);
    const tmp = tmpName(path);
    const file = await open(tmp, "wx", 0o600);
    await file.truncate(size);
    const upload = crypto.randomUUID();
    const timer = setTimeout(() => this.#dropUpload(upload), UPLOAD_IDLE_MS);
    this.#uploads.set(upload, { path: String(h.path), tmp, file, size, parts: [], timer });
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
    await writeInto(u.file, payload, offset);
    u.parts.push([offset, payload.length]);
    clearTimeout(u.timer);
    u.timer = setTimeout(() => this.#dropUpload(String(h.upload)), UPLOAD_IDLE_MS);
    return {};
  }

  async #dropUpload(id: string): Promise<void> {
    const u = this.#uploads.get(id);
    if (!u) return;
    this.#uploads.delete(id);
    clearTimeout(u.timer);
    await u.file.close().catch(() => {});
    await unlink(u.tmp).catch(() => {});
  }

  /**
   * `write`: a write-back as a compare-and-swap on `base`: if A's file is not the version B
   * started from, the upload is kept beside it as a conflict copy and A's file is untouched. The
   * content is the payload (whole file) or a finished ranged upload (`upload`, every byte
   * received and checked). It lands atomically (temporary file, fsync, rename): never truncated.
   */
  async write(h: Head, payload: Uint8Array): Promise<Record<string, unknown>> {
    const path = await this.#at(h.path);
    let tmp: string, f: FileHandle;
    if (h.upload !== undefined) {
      const u = this.#uploads.get(String(h.upload));
      if (!u || u.path !== h.path) throw new FsError("ENOENT", `No such upload for ${h.path}: ${String(h.upload).slice(0, 40)}`);
      this.#uploads.delete(String(h.upload));
      clearTimeout(u.timer);
      ({ tmp, file: f } = u);
      let covered = 0;
      for (const [off, len] of u.parts.sort((x, y) => x[0] - y[0])) {
        if (off !== covered) break;
        covered += len;
      }
      if (covered !== u.size) {
        await f.close();
        await unlink(tmp).catch(() => {});
        throw new FsError("EIO", `Upload of ${h.path} is incomplete: ${covered} of ${u.size} bytes in order`);
      }
    } else {
      tmp = tmpName(path);
      f = await open(tmp, "wx", Number(h.mode ?? 0o644) & 0o7777);
    }
    try {
      await writeInto(f, payload);
      await f.chmod(Number(h.mode ?? 0o644) & 0o7777);
      if (typeof h.mtimeMs === "number") await f.utimes(Number(h.atimeMs ?? h.mtimeMs) / 1000, h.mtimeMs / 1000);
      await f.sync();
    } catch (e) {
      await f.close();
      await unlink(tmp).catch(() => {});
      throw e;
    }
    await f.close();
    let current: string | null = null;
    try {
      const st = await lstat(path);
      if (!st.isFile()) throw new FsError("EISDIR", `Not a regular file: ${h.path}`);
      current = await versionOf(path);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "ENOENT") {
        await unlink(tmp).catch(() => {});
        throw e;
      }
    }
    let target = path;
    let conflict: string | undefined;
    if (current !== null && current !== (h.base ?? null)) {
      conflict = conflictName(path, h.from);
      target = join(dirname(path), conflict);
    }
    await rename(tmp, target);
    if (conflict) {
      this.log(`conflict on ${h.path}: A's copy changed since ${h.from ?? "the remote"} fetched it; upload kept as ${conflict}`);
      return { version: current, conflict };
    }
    return { version: await versionOf(path) };
  }

  /** `mkdir`. */
  async mkdir(h: Head): Promise<Record<string, unknown>> {
    await mkdir(await this.#at(h.path), { mode: Number(h.mode ?? 0o755) });
    return {};
  }

  /** `rmdir`. */
  async rmdir(h: Head): Promise<Record<string, unknown>> {
    await rmdir(await this.#at(h.path));
    return {};
  }

  /** `unlink`; with `base`, only if A's file is still that version (else a conflict, nothing removed). */
  async unlink(h: Head): Promise<Record<string, unknown>> {
    const p = await this.#at(h.path, true);
    if (h.base !== undefined && (await fileVersion(p)) !== h.base) {
      this.log(`conflict on ${h.path}: changed on A since ${h.from ?? "the remote"} saw it; not removed`);
      return { conflict: h.path };
    }
    await unlink(p);
    return {};
  }

  /** `rename`; with `toBase`, a target that changed on A since is kept and B's file lands as a conflict copy. */
  async rename(h: Head): Promise<Record<string, unknown>> {
    const from = await this.#at(h.path, true), to = await this.#at(h.to, true);
    // Replacing a file that changed on A since B saw it would lose A's edit: keep both.
    if (h.toBase !== undefined && (await fileVersion(to)) !== h.toBase) {
      const conflict = conflictName(to, h.from);
      await rename(from, join(dirname(to), conflict));
      this.log(`conflict on ${h.to}: changed on A since ${h.from ?? "the remote"} saw it; B's version kept as ${conflict}`);
      return { conflict };
    }
    await rename(from, to);
    return {};
  }

  /** `symlink`. */
  async symlink(h: Head): Promise<Record<string, unknown>> {
    if (typeof h.target !== "string" || h.target.includes("\0")) throw new FsError("EINVAL", "Bad symlink target");
    await symlink(h.target, await this.#at(h.path));
    return {};
  }

  /** `link`: a hard link. */
  async link(h: Head): Promise<Record<string, unknown>> {
    await link(await this.#at(h.path), await this.#at(h.to));
    return {};
  }

  /** `chmod`. */
  async chmod(h: Head): Promise<Record<string, unknown>> {
    await chmod(await this.#at(h.path), Number(h.mode) & 0o7777);
    return {};
  }

  /** `truncate`; answers the new version. */
  async truncate(h: Head): Promise<Record<string, unknown>> {
    const p = await this.#at(h.path);
    await truncate(p, Number(h.length));
    return { version: await versionOf(p) };
  }

  /** `utimes`; answers the new version. */
  async utimes(h: Head): Promise<Record<string, unknown>> {
    const p = await this.#at(h.path);
    await utimes(p, Number(h.atimeMs) / 1000, Number(h.mtimeMs) / 1000);
    return { version: await versionOf(p) };
  }
}

/** Whether a path in the export is one of our temporary files (they come and go with every write-back). */
export function isTempFile(rel: string): boolean {
  return /\.xufs-[0-9]+-[0-9a-f]{8}$/.test(rel);
}

/** A temporary file beside `path`, named so that change callbacks ignore it (see `isTempFile`). */
function tmpName(path: string): string {
  return join(dirname(path), `.${basename(path)}.xufs-${Deno.pid}-${crypto.randomUUID().slice(0, 8)}`);
}

/** The version of a regular file at `path`, or null when there is none (or not a file). */
async function fileVersion(path: string): Promise<string | null> {
  try {
    const st = await lstat(path);
    return st.isFile() ? await versionOf(path) : null;
  } catch {
    return null;
  }
}

/** A clearly named conflict copy beside `path`: NAME.conflict-HOST-YYYYMMDDTHHMMSS. */
function conflictName(path: string, from: unknown): string {
  const stamp = new Date().toISOString().replace(/[-:]/g, "").replace(/\..*/, "");
  return `${basename(path)}.conflict-${String(from ?? "remote").replace(/[^A-Za-z0-9.-]/g, "_")}-${stamp}`;
}

/** This host's short name, for conflict copy names. */
export function shortHost(): string {
  return hostname().split(".")[0];
}
