/**
 * The XUFS file server on host A: serves the export to authenticated cache managers over any
 * stream (docs/XUFS.md): listings with all attributes, whole files or ranges, compare-and-swap
 * write-backs that keep both copies on conflict, and metadata changes. Confined to the export.
 */
import { chmod, type FileHandle, link, lstat, mkdir, open, readdir, readlink, rename, rmdir, symlink, truncate, unlink, utimes } from "node:fs/promises";
import { hostname } from "node:os";
import { basename, dirname, join, relative } from "node:path";
import { concat, sha256 } from "../common/bytes.ts";
import { closeQuietly, writeAll } from "../common/io.ts";
import { FsError, resolveInExport } from "./confine.ts";
import { encodeMessage, ProtocolError, readMessage, serverHandshake } from "./messages.ts";

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

/** Largest total of file bytes in one `readmany` reply. */
export const READMANY_MAX_BYTES = 16 << 20;
/** Most directory entries in one `tree` reply; the rest is listed directory by directory. */
export const TREE_MAX_ENTRIES = 50_000;
/** An upload that sees no part for this long is dropped with its temporary file. */
const UPLOAD_IDLE_MS = 10 * 60_000;

/** A ranged write-back being assembled in a temporary file beside its target. */
interface Upload {
  path: string;
  tmp: string;
  file: FileHandle;
  size: number;
  parts: [number, number][];
  timer: ReturnType<typeof setTimeout>;
}

/** One served connection: replies and pushed notices go out one whole message at a time. */
class Peer {
  #writing: Promise<void> = Promise.resolve();
  constructor(readonly conn: Deno.Conn) {}
  send(head: Record<string, unknown>, payload?: Uint8Array): Promise<void> {
    const bytes = encodeMessage(head, payload);
    const p = this.#writing.then(() => writeAll(this.conn, bytes));
    this.#writing = p.catch(() => {});
    return p;
  }
}

/** Serves one export. */
export class FileServer {
  #uploads = new Map<string, Upload>();
  #watchers = new Set<Peer>();
  #watch?: Deno.FsWatcher;
  #changed = new Set<string>();
  #changeTimer?: ReturnType<typeof setTimeout>;

  constructor(
    readonly root: string,
    readonly secret: string,
    private readonly log: (line: string) => void = (l) => console.error(`xufs server: ${l}`),
  ) {}

  /** Serves one connection until it closes; never throws. */
  async serve(conn: Deno.Conn): Promise<void> {
    const peer = new Peer(conn);
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
          if (m.head.op === "watch") {
            this.#subscribe(peer);
            [reply, payload] = [{}, undefined];
          } else [reply, payload] = await this.handle(m.head, m.payload);
        } catch (e) {
          if (e instanceof FsError) reply = { error: e.code, message: e.message };
          else {
            const code = (e as NodeJS.ErrnoException).code;
            reply = { error: typeof code === "string" ? code : "EIO", message: (e as Error).message };
          }
        }
        await peer.send({ id, ...reply }, payload);
      }
    } catch (e) {
      if (e instanceof ProtocolError) this.log(`malformed message, connection closed: ${e.message}`);
      else if (!(e instanceof Deno.errors.BadResource || e instanceof Deno.errors.ConnectionReset)) {
        this.log(`connection ended: ${(e as Error).message}`);
      }
    } finally {
      this.#unsubscribe(peer);
      closeQuietly(conn);
    }
  }

  // ---- change callbacks ----

  /** Starts pushing `{op:"changed", paths}` to `peer` whenever something in the export changes. */
  #subscribe(peer: Peer): void {
    this.#watchers.add(peer);
    if (this.#watch) return;
    try {
      this.#watch = Deno.watchFs(this.root, { recursive: true });
    } catch (e) {
      this.log(`change callbacks unavailable, caches revalidate only when they reconnect: ${(e as Error).message}`);
      return;
    }
    (async () => {
      for await (const ev of this.#watch!) {
        for (const p of ev.paths) {
          const rel = relative(this.root, p);
          // Our own temporary files come and go with every write-back: not news.
          if (rel.startsWith("..") || /\.xufs-[0-9]+-[0-9a-f]{8}$/.test(rel)) continue;
          this.#changed.add(rel === "" ? "." : rel);
        }
        if (this.#changed.size && !this.#changeTimer) this.#changeTimer = setTimeout(() => this.#pushChanges(), 50);
      }
    })().catch((e) => this.log(`change callbacks stopped: ${(e as Error).message}`));
  }

  #unsubscribe(peer: Peer): void {
    this.#watchers.delete(peer);
    if (this.#watchers.size === 0 && this.#watch) {
      this.#watch.close();
      this.#watch = undefined;
    }
  }

  #pushChanges(): void {
    this.#changeTimer = undefined;
    const paths = [...this.#changed];
    this.#changed.clear();
    for (const peer of this.#watchers) peer.send({ op: "changed", paths }).catch(() => {});
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
          const data = buf.subarray(0, got);
          const version = `${st.mtimeNs}-${st.size}-${st.ino}`;
          return [h.hash ? { version, size, sha256: sha256(data) } : { version, size }, data];
        } finally {
          await f.close();
        }
      }
      case "readmany":
        return await this.#readMany(h.paths);
      case "tree":
        return [await this.#tree(h.path)];
      case "wbegin":
        return [await this.#beginUpload(await at(h.path), h)];
      case "wpart":
        return [await this.#part(h, payload)];
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

  /** Small files in one round trip (pre-caching): each whole, or its error; at most READMANY_MAX_BYTES. */
  async #readMany(paths: unknown): Promise<[Record<string, unknown>, Uint8Array]> {
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
          let got = 0;
          while (got < data.length) {
            const { bytesRead } = await f.read(data, got, data.length - got, got);
            if (bytesRead === 0) break;
            got += bytesRead;
          }
          files.push({ path, version: `${st.mtimeNs}-${st.size}-${st.ino}`, size: got });
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

  /** Listings of a whole subtree in one round trip, breadth first, up to TREE_MAX_ENTRIES entries. */
  async #tree(rel: unknown): Promise<Record<string, unknown>> {
    const dirs: { path: string; entries: Entry[] }[] = [];
    const todo = [String(rel)];
    let count = 0;
    while (todo.length && count < TREE_MAX_ENTRIES) {
      const path = todo.shift()!;
      const [reply] = await this.handle({ op: "list", path }, new Uint8Array(0));
      const entries = reply.entries as Entry[];
      dirs.push({ path, entries });
      count += entries.length;
      for (const e of entries) if (e.type === "d") todo.push(path === "." ? e.name : `${path}/${e.name}`);
    }
    return { dirs, truncated: todo.length > 0 };
  }

  /** Starts a ranged write-back: a temporary file of `size` bytes beside the target. */
  // deno-lint-ignore no-explicit-any
  async #beginUpload(path: string, h: Record<string, any>): Promise<Record<string, unknown>> {
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

  /** One range of an upload, checked against its SHA-256 before it is written. */
  // deno-lint-ignore no-explicit-any
  async #part(h: Record<string, any>, payload: Uint8Array): Promise<Record<string, unknown>> {
    const u = this.#uploads.get(String(h.upload));
    if (!u) throw new FsError("ENOENT", `No such upload: ${String(h.upload).slice(0, 40)}`);
    const offset = Number(h.offset);
    if (!Number.isSafeInteger(offset) || offset < 0 || offset + payload.length > u.size) {
      throw new FsError("EINVAL", `Range outside the upload of ${u.size} bytes: ${h.offset}+${payload.length}`);
    }
    if (sha256(payload) !== h.sha256) throw new FsError("EIO", `Range ${offset}+${payload.length} of ${u.path} arrived corrupted`);
    let off = 0;
    while (off < payload.length) off += (await u.file.write(payload, off, payload.length - off, offset + off)).bytesWritten;
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
   * Write-back as a compare-and-swap on `base`: if A's file is not the version B started from,
   * the upload is kept beside it as a conflict copy and A's file is untouched. The content is the
   * payload (whole file) or a finished ranged upload (`upload`, every byte received and checked).
   * It lands atomically (temporary file, fsync, rename): never truncated.
   */
  // deno-lint-ignore no-explicit-any
  async #write(path: string, h: Record<string, any>, payload: Uint8Array): Promise<Record<string, unknown>> {
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
}

/** A temporary file beside `path`, named so that change callbacks ignore it. */
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
