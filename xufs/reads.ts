/**
 * The read side of the XUFS file server (docs/XUFS.md): listings with all attributes, one
 * entry's attributes, whole files or ranges (with their SHA-256 when asked), small files in bulk
 * and whole subtrees, each path resolved inside the export (xufs/confine.ts). Also owns what a
 * file's version is.
 */
import { type FileHandle, lstat, open, readdir, readlink } from "node:fs/promises";
import { basename, join } from "node:path";
import { concat, sha256 } from "../common/bytes.ts";
import { FsError, resolveInExport } from "./confine.ts";
import type { Entry } from "./messages.ts";

/** Largest total of file bytes in one `readmany` reply. */
export const READMANY_MAX_BYTES = 16 << 20;
/** Most directory entries in one `tree` reply; the rest is listed directory by directory. */
export const TREE_MAX_ENTRIES = 50_000;

/** The version string of lstat/fstat results (bigint): modification time, size and inode. */
function versionString(st: { mtimeNs: bigint; size: bigint; ino: bigint }): string {
  return `${st.mtimeNs}-${st.size}-${st.ino}`;
}

/** The version of a file: changes whenever its content may have changed. */
export async function versionOf(path: string): Promise<string> {
  return versionString(await lstat(path, { bigint: true }));
}

async function entryOf(path: string, name: string): Promise<Entry | null> {
  const st = await lstat(path, { bigint: true });
  const type = st.isDirectory() ? "d" : st.isSymbolicLink() ? "l" : st.isFile() ? "f" : null;
  if (!type) return null; // sockets, devices, fifos are not exported
  const e: Entry = {
    name,
    type,
    size: Number(st.size),
    mode: Number(st.mode) & 0o7777,
    mtimeMs: Number(st.mtimeNs / 1_000_000n),
    version: versionString(st),
  };
  if (type === "l") e.target = await readlink(path);
  return e;
}

/** Reads into `buf` from file offset `at` until it is full or the file ends; returns the bytes read. */
async function readInto(f: FileHandle, buf: Uint8Array, at: number): Promise<number> {
  let got = 0;
  while (got < buf.length) {
    const { bytesRead } = await f.read(buf, got, buf.length - got, at + got);
    if (bytesRead === 0) break;
    got += bytesRead;
  }
  return got;
}

/** Answers the read requests of one export. */
export class ExportReader {
  constructor(readonly root: string) {}

  /** `list`: the entries of a directory, each with all its attributes. */
  async list(rel: unknown): Promise<Entry[]> {
    const dir = await resolveInExport(this.root, rel, false);
    const names = await readdir(dir);
    const entries = [];
    for (const name of names) {
      try {
        const e = await entryOf(join(dir, name), name);
        if (e) entries.push(e);
      } catch { /* vanished meanwhile */ }
    }
    return entries;
  }

  /** `stat`: the attributes of one entry (a symlink itself, not its target). */
  async stat(rel: unknown): Promise<Entry> {
    const p = await resolveInExport(this.root, rel, true);
    const e = await entryOf(p, basename(p));
    if (!e) throw new FsError("EACCES", `Not a file, directory or symlink: ${rel}`);
    return e;
  }

  /** `read`: a whole file or the range `offset`, `length` of it, with its version and size. */
  // deno-lint-ignore no-explicit-any
  async read(h: Record<string, any>): Promise<[Record<string, unknown>, Uint8Array]> {
    const p = await resolveInExport(this.root, h.path, false);
    const f = await open(p, "r");
    try {
      const st = await f.stat({ bigint: true });
      if (!st.isFile()) throw new FsError("EISDIR", `Not a regular file: ${h.path}`);
      const size = Number(st.size);
      const offset = Number(h.offset ?? 0);
      const length = Math.max(0, Math.min(Number(h.length ?? size), size - offset));
      const buf = new Uint8Array(length);
      const data = buf.subarray(0, await readInto(f, buf, offset));
      const version = versionString(st);
      return [h.hash ? { version, size, sha256: sha256(data) } : { version, size }, data];
    } finally {
      await f.close();
    }
  }

  /** `readmany`: small files in one round trip (pre-caching), each whole or its error; at most READMANY_MAX_BYTES. */
  async readMany(paths: unknown): Promise<[Record<string, unknown>, Uint8Array]> {
    if (!Array.isArray(paths) || paths.length > 10_000) throw new FsError("EINVAL", `Bad path list: ${String(paths).slice(0, 80)}`);
    const files: Record<string, unknown>[] = [];
    const chunks: Uint8Array[] = [];
    let total = 0;
    for (const path of paths) {
      try {
        const f = await open(await resolveInExport(this.root, path, false), "r");
        try {
          const st = await f.stat({ bigint: true });
          if (!st.isFile()) throw new FsError("EISDIR", `Not a regular file: ${path}`);
          if (total + Number(st.size) > READMANY_MAX_BYTES) {
            files.push({ path, error: "EFBIG" });
            continue;
          }
          const data = new Uint8Array(Number(st.size));
          const got = await readInto(f, data, 0);
          files.push({ path, version: versionString(st), size: got });
          chunks.push(data.subarray(0, got));
          total += got;
        } finally {
          await f.close();
        }
      } catch (e) {
        files.push({ path, error: (e as FsError).code ?? "EIO" });
      }
    }
    return [{ files }, concat(...chunks)];
  }

  /** `tree`: the listings of a whole subtree, breadth first, up to TREE_MAX_ENTRIES entries. */
  async tree(rel: unknown): Promise<Record<string, unknown>> {
    const dirs: { path: string; entries: Entry[] }[] = [];
    const todo = [String(rel)];
    let count = 0;
    while (todo.length && count < TREE_MAX_ENTRIES) {
      const path = todo.shift()!;
      const entries = await this.list(path);
      dirs.push({ path, entries });
      count += entries.length;
      for (const e of entries) if (e.type === "d") todo.push(path === "." ? e.name : `${path}/${e.name}`);
    }
    return { dirs, truncated: todo.length > 0 };
  }
}
