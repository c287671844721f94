/**
 * The XUFS file server on host A: serves the export to authenticated cache managers over any
 * stream (docs/XUFS.md): listings with all attributes, whole files or ranges, compare-and-swap
 * write-backs that keep both copies on conflict, and metadata changes. Confined to the export.
 */
import { chmod, link, lstat, mkdir, open, readdir, readlink, rename, rmdir, symlink, truncate, unlink, utimes } from "node:fs/promises";
import { hostname } from "node:os";
import { basename, dirname, join } from "node:path";
import { FsError, resolveInExport } from "./confine.ts";
import { ProtocolError, readMessage, serverHandshake, writeMessage } from "./messages.ts";

/** Attributes of one directory entry, as sent in a listing. */
export interface Entry {
  name: string;
  type: "f" | "d" | "l";
  size: number;
  mode: number;
  mtimeMs: number;
  version: string;
  target?: string;
}

/** The version of a file: changes whenever its content may have changed. */
export async function versionOf(path: string): Promise<string> {
  const st = await lstat(path, { bigint: true });
  return `${st.mtimeNs}-${st.size}-${st.ino}`;
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
    version: `${st.mtimeNs}-${st.size}-${st.ino}`,
  };
  if (type === "l") e.target = await readlink(path);
  return e;
}

/** Serves one export. */
export class FileServer {
  constructor(
    readonly root: string,
    readonly secret: string,
    private readonly log: (line: string) => void = (l) => console.error(`xufs server: ${l}`),
  ) {}

  /** Serves one connection until it closes; never throws. */
  async serve(conn: Deno.Conn): Promise<void> {
    try {
      if (!(await serverHandshake(conn, this.secret))) {
        this.log("refused a connection: wrong session secret");
        return;
      }
      while (true) {
        const m = await readMessage(conn);
        if (!m) return;
        const id = m.head.id;
        let reply: Record<string, unknown>, payload: Uint8Array | undefined;
        try {
          [reply, payload] = await this.handle(m.head, m.payload);
        } catch (e) {
          if (e instanceof FsError) reply = { error: e.code, message: e.message };
          else {
            const code = (e as NodeJS.ErrnoException).code;
            reply = { error: typeof code === "string" ? code : "EIO", message: (e as Error).message };
          }
        }
        await writeMessage(conn, { id, ...reply }, payload);
      }
    } catch (e) {
      if (e instanceof ProtocolError) this.log(`malformed message, connection closed: ${e.message}`);
      else if (!(e instanceof Deno.errors.BadResource || e instanceof Deno.errors.ConnectionReset)) {
        this.log(`connection ended: ${(e as Error).message}`);
      }
    } finally {
      try {
        conn.close();
      } catch { /* closed */ }
    }
  }

  // deno-lint-ignore no-explicit-any
  async handle(h: Record<string, any>, payload: Uint8Array): Promise<[Record<string, unknown>, Uint8Array?]> {
    const at = (rel: unknown, lastMayBeLink = false) => resolveInExport(this.root, rel, lastMayBeLink);
    switch (h.op) {
      case "list": {
        const dir = await at(h.path);
        const names = await readdir(dir);
        const entries = [];
        for (const name of names) {
          try {
            const e = await entryOf(join(dir, name), name);
            if (e) entries.push(e);
          } catch { /* vanished meanwhile */ }
        }
        return [{ entries }];
      }
      case "stat": {
        const p = await at(h.path, true);
        const e = await entryOf(p, basename(p));
        if (!e) throw new FsError("EACCES", `Not a file, directory or symlink: ${h.path}`);
        return [{ entry: e }];
      }
      case "read": {
        const p = await at(h.path);
        const f = await open(p, "r");
        try {
          const st = await f.stat({ bigint: true });
          if (!st.isFile()) throw new FsError("EISDIR", `Not a regular file: ${h.path}`);
          const size = Number(st.size);
          const offset = Number(h.offset ?? 0);
          const length = Math.max(0, Math.min(Number(h.length ?? size), size - offset));
          const buf = new Uint8Array(length);
          let got = 0;
          while (got < length) {
            const { bytesRead } = await f.read(buf, got, length - got, offset + got);
            if (bytesRead === 0) break;
            got += bytesRead;
          }
          return [{ version: `${st.mtimeNs}-${st.size}-${st.ino}`, size }, buf.subarray(0, got)];
        } finally {
          await f.close();
        }
      }
      case "write":
        return [await this.#write(await at(h.path), h, payload)];
      case "mkdir":
        await mkdir(await at(h.path), { mode: Number(h.mode ?? 0o755) });
        return [{}];
      case "rmdir":
        await rmdir(await at(h.path));
        return [{}];
      case "unlink": {
        const p = await at(h.path, true);
        if (h.base !== undefined && (await fileVersion(p)) !== h.base) {
          this.log(`conflict on ${h.path}: changed on A since ${h.from ?? "the remote"} saw it; not removed`);
          return [{ conflict: h.path }];
        }
        await unlink(p);
        return [{}];
      }
      case "rename": {
        const from = await at(h.path, true), to = await at(h.to, true);
        // Replacing a file that changed on A since B saw it would lose A's edit: keep both.
        if (h.toBase !== undefined && (await fileVersion(to)) !== h.toBase) {
          const conflict = conflictName(to, h.from);
          await rename(from, join(dirname(to), conflict));
          this.log(`conflict on ${h.to}: changed on A since ${h.from ?? "the remote"} saw it; B's version kept as ${conflict}`);
          return [{ conflict }];
        }
        await rename(from, to);
        return [{}];
      }
      case "symlink":
        if (typeof h.target !== "string" || h.target.includes("\0")) throw new FsError("EINVAL", "Bad symlink target");
        await symlink(h.target, await at(h.path));
        return [{}];
      case "link":
        await link(await at(h.path), await at(h.to));
        return [{}];
      case "chmod":
        await chmod(await at(h.path), Number(h.mode) & 0o7777);
        return [{}];
      case "truncate": {
        const p = await at(h.path);
        await truncate(p, Number(h.length));
        return [{ version: await versionOf(p) }];
      }
      case "utimes": {
        const p = await at(h.path);
        await utimes(p, Number(h.atimeMs) / 1000, Number(h.mtimeMs) / 1000);
        return [{ version: await versionOf(p) }];
      }
      default:
        throw new ProtocolError(`Unknown op: ${String(h.op).slice(0, 40)}`);
    }
  }

  /**
   * Whole-file write-back as a compare-and-swap on `base`: if A's file is not the version B
   * started from, the upload is kept beside it as a conflict copy and A's file is untouched.
   * The new content lands atomically (temporary file, fsync, rename): never truncated.
   */
  // deno-lint-ignore no-explicit-any
  async #write(path: string, h: Record<string, any>, payload: Uint8Array): Promise<Record<string, unknown>> {
    let current: string | null = null;
    try {
      const st = await lstat(path);
      if (!st.isFile()) throw new FsError("EISDIR", `Not a regular file: ${h.path}`);
      current = await versionOf(path);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
    }
    let target = path;
    let conflict: string | undefined;
    if (current !== null && current !== (h.base ?? null)) {
      conflict = conflictName(path, h.from);
      target = join(dirname(path), conflict);
    }
    const tmp = join(dirname(path), `.${basename(path)}.xufs-${Deno.pid}-${crypto.randomUUID().slice(0, 8)}`);
    const f = await open(tmp, "wx", Number(h.mode ?? 0o644) & 0o7777);
    try {
      let off = 0;
      while (off < payload.length) off += (await f.write(payload, off, payload.length - off)).bytesWritten;
      await f.chmod(Number(h.mode ?? 0o644) & 0o7777);
      if (typeof h.mtimeMs === "number") await f.utimes(Number(h.atimeMs ?? h.mtimeMs) / 1000, h.mtimeMs / 1000);
      await f.sync();
    } catch (e) {
      await f.close();
      await unlink(tmp).catch(() => {});
      throw e;
    }
    await f.close();
    await rename(tmp, target);
    if (conflict) {
      this.log(`conflict on ${h.path}: A's copy changed since ${h.from ?? "the remote"} fetched it; upload kept as ${conflict}`);
      return { version: current, conflict };
    }
    return { version: await versionOf(path) };
  }
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
