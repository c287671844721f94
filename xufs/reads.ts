/**
 * The read side of the XUFS file server (docs/XUFS.md): listings with all attributes (streamed
 * in parts, so a directory of any size travels), one entry's attributes, whole files or ranges
 * (with their SHA-256 when asked), small files in bulk and whole subtrees, each path resolved
 * beneath the export (xufs/confine.ts) and read through its descriptor (xufs/fdio.ts). Also owns
 * what a file's version is: mtime, size, inode and ctime, and — when the file changed so recently
 * that another change within the same timestamp tick could leave all four alike ("racy") — the
 * SHA-256 of the content it describes.
 */
import { createHash } from "node:crypto";
import { concat, sha256 } from "../common/bytes.ts";
import { O } from "../ffi/libc.ts";
import { type ExportRoot, type Fd, type FileStat, statAt } from "./confine.ts";
import { listNames, readAt, readlinkAt } from "./fdio.ts";
import { FsError } from "./fserror.ts";
import type { Entry } from "./messages.ts";

/** Largest total of file bytes in one `readmany` reply. */
export const READMANY_MAX_BYTES = 16 << 20;
/** Most directory entries in one `tree` request; the rest is listed directory by directory. */
export const TREE_MAX_ENTRIES = 50_000;
/** Entries per part of a streamed listing (each part's header stays far below MAX_HEADER). */
export const LIST_PART_ENTRIES = 2000;
/**
 * A file changed less than this long before it was looked at is "racy": a further change within
 * the same timestamp tick (a few ms; generously bounded here) might leave mtime and ctime alike.
 */
export const RACY_NS = 100_000_000n;

/** A streamed reply: parts (each a header), then the final header as the generator's return value. */
export type Parts = AsyncGenerator<Record<string, unknown>, Record<string, unknown>>;

/** The version string of a stat: modification time, size, inode and change time (nanoseconds). */
export function versionString(st: FileStat): string {
  return `${st.mtimeNs}-${st.size}-${st.ino}-${st.ctimeNs}`;
}

/** Whether `st`, observed just now, is racy (see RACY_NS). */
export function isRacy(st: FileStat): boolean {
  return st.ctimeNs > BigInt(Date.now()) * 1_000_000n - RACY_NS;
}

/** The version of the file `fd` refers to, with whether it is racy. */
export function versionOf(fd: Fd): { version: string; racy: boolean; st: FileStat } {
  const st = statAt(fd)!;
  return { version: versionString(st), racy: isRacy(st), st };
}

/** SHA-256 (hex) of the whole file open as `fd`, read in 1 MiB pieces. */
export async function hashFd(fd: Fd): Promise<string> {
  const h = createHash("sha256");
  const buf = new Uint8Array(1 << 20);
  for (let at = 0;;) {
    const n = await readAt(fd, buf, at);
    if (n === 0) break;
    h.update(buf.subarray(0, n));
    at += n;
  }
  return h.digest("hex");
}

/** The listing entry of `name` in directory `dir` (null for sockets, devices, fifos, or vanished). */
function entryOf(dir: Fd, name: string): Entry | null {
  let st: FileStat | null;
  try {
    st = statAt(dir, name);
  } catch {
    return null;
  }
  if (!st || st.type === "other") return null; // vanished meanwhile; sockets, devices, fifos
  const e: Entry = { name, type: st.type, size: st.size, mode: st.mode, mtimeMs: Number(st.mtimeNs / 1_000_000n), version: versionString(st) };
  if (e.type === "l") {
    try {
      e.target = readlinkAt({ dir, name });
    } catch {
      return null;
    }
  }
  return e;
}

/** Opens the regular file `rel` beneath the export for reading (a fifo never blocks the open). */
export function openFile(root: ExportRoot, rel: unknown): Fd {
  const fd = root.open(rel, O.RDONLY | O.NONBLOCK);
  if (statAt(fd)?.type !== "f") {
    fd.close();
    throw new FsError("EISDIR", `Not a regular file: ${rel}`);
  }
  return fd;
}

/** Answers the read requests of one export. */
export class ExportReader {
  constructor(readonly root: ExportRoot) {}

  /** The entries of directory `rel`, LIST_PART_ENTRIES at a time, yielding to the event loop between. */
  async *entries(rel: unknown): AsyncGenerator<Entry[]> {
    using dir = this.root.open(rel, O.RDONLY | O.DIRECTORY);
    const names = listNames(dir);
    for (let i = 0; i < names.length || i === 0; i += LIST_PART_ENTRIES) {
      const part: Entry[] = [];
      for (const name of names.slice(i, i + LIST_PART_ENTRIES)) {
        const e = entryOf(dir, name);
        if (e) part.push(e);
      }
      yield part;
      await new Promise((r) => setTimeout(r, 0));
    }
  }

  /** `list`: the entries of a directory, each with all its attributes, streamed in parts. */
  async *list(rel: unknown): Parts {
    for await (const entries of this.entries(rel)) yield { entries };
    return { entries: [] };
  }

  /** `stat`: the attributes of one entry (a symlink itself, not its target); with `hash`, a file's SHA-256 and raciness. */
  async stat(rel: unknown, hash = false): Promise<Record<string, unknown>> {
    if (rel === ".") {
      using root = this.root.open(".");
      const st = statAt(root)!;
      return { entry: { name: ".", type: "d", size: st.size, mode: st.mode, mtimeMs: Number(st.mtimeNs / 1_000_000n), version: versionString(st) } };
    }
    const { dir, name } = this.root.parent(rel);
    using _ = dir;
    const entry = entryOf(dir, name);
    if (!entry) throw new FsError("ENOENT", `No such file, directory or symlink: ${rel}`);
    if (!hash || entry.type !== "f") return { entry };
    using fd = openFile(this.root, rel);
    const { version, racy } = versionOf(fd);
    return { entry: { ...entry, version }, sha256: await hashFd(fd), racy };
  }

  /**
   * `read`: a whole file or the range `offset`, `length` of it, with its version and size (and,
   * with `hash`, the SHA-256 of exactly the payload). A racy version of a whole file comes with
   * the SHA-256 of the content; a range of a racy file waits for the tick to pass first. A file
   * that changed while it was read says so (`changed`): B reads it again.
   */
  // deno-lint-ignore no-explicit-any
  async read(h: Record<string, any>): Promise<[Record<string, unknown>, Uint8Array]> {
    using fd = openFile(this.root, h.path);
    const ranged = h.offset !== undefined || h.length !== undefined;
    let v = versionOf(fd);
    for (let i = 0; ranged && v.racy && i < 3; i++) {
      await new Promise((r) => setTimeout(r, Number(RACY_NS / 1_000_000n)));
      v = versionOf(fd);
    }
    const size = v.st.size;
    const offset = Number(h.offset ?? 0);
    const length = Math.max(0, Math.min(Number(h.length ?? size), size - offset));
    const buf = new Uint8Array(length);
    const data = buf.subarray(0, await readAt(fd, buf, offset));
    const after = versionOf(fd);
    const head: Record<string, unknown> = { version: after.version, size: after.st.size };
    if (after.version !== v.version) head.changed = true;
    if (h.hash) head.sha256 = sha256(data);
    if (after.racy) {
      head.racy = true;
      if (!ranged) head.contentSha256 = h.hash ? head.sha256 : sha256(data);
    }
    return [head, data];
  }

  /** `readmany`: small files in one round trip (pre-caching), each whole or its error; at most READMANY_MAX_BYTES. */
  async readMany(paths: unknown): Promise<[Record<string, unknown>, Uint8Array]> {
    if (!Array.isArray(paths) || paths.length > 10_000) throw new FsError("EINVAL", `Bad path list: ${String(paths).slice(0, 80)}`);
    const files: Record<string, unknown>[] = [];
    const chunks: Uint8Array[] = [];
    let total = 0;
    for (const path of paths) {
      try {
        using fd = openFile(this.root, path);
        const v = versionOf(fd);
        if (total + v.st.size > READMANY_MAX_BYTES) {
          files.push({ path, error: "EFBIG" });
          continue;
        }
        const data = new Uint8Array(v.st.size);
        const file = data.subarray(0, await readAt(fd, data, 0));
        const after = versionOf(fd);
        // Changed while read: left for a foreground fetch. A racy one carries its content's hash.
        if (after.version !== v.version) files.push({ path, error: "EAGAIN" });
        else {
          files.push(after.racy ? { path, version: v.version, size: file.length, racy: true, contentSha256: sha256(file) } : { path, version: v.version, size: file.length });
          chunks.push(file);
          total += file.length;
        }
      } catch (e) {
        files.push({ path, error: (e as FsError).code ?? "EIO" });
      }
    }
    return [{ files }, concat(...chunks)];
  }

  /** `tree`: the listings of a whole subtree, breadth first, streamed as parts `{dir, entries}`, up to TREE_MAX_ENTRIES entries. */
  async *tree(rel: unknown): Parts {
    const todo = [String(rel)];
    let count = 0;
    while (todo.length && count < TREE_MAX_ENTRIES) {
      const path = todo.shift()!;
      let first = true;
      for await (const entries of this.entries(path)) {
        yield { dir: path, entries, first };
        first = false;
        count += entries.length;
        for (const e of entries) if (e.type === "d") todo.push(path === "." ? e.name : `${path}/${e.name}`);
      }
    }
    return { truncated: todo.length > 0 };
  }
}
