/**
 * The XUFS cache manager on host B: keeps a local skeleton of A's export (directories listed in
 * one round trip with all attributes, files fetched whole on first open), applies changes locally
 * at once and queues them durably for A, where write-backs are compare-and-swap on the version B
 * started from. Answers libxufs.so's requests (docs/XUFS.md, "Manager protocol").
 */
import type { Stats } from "node:fs";
import { chmod, type FileHandle, link, lstat, mkdir, open, readdir, readlink, rename, rm, rmdir, stat, symlink, truncate, unlink, utimes } from "node:fs/promises";
import { dirname, join } from "node:path";
import { sha256 } from "../common/bytes.ts";
import { writeFileAtomic } from "../common/fs.ts";
import { FsError } from "./confine.ts";
import type { Entry } from "./messages.ts";
import { Progress } from "./progress.ts";
import type { Remote } from "./remote.ts";

/** What the manager knows of one path. */
interface Meta {
  /** Version of A's file that the local content (or placeholder) corresponds to. */
  version?: string;
  fetched?: boolean;
  listed?: boolean;
  /** A directory's mtime on A, restored after its placeholders are made. */
  mtimeMs?: number;
}

/** One queued change for A, journaled before the program is told it succeeded. */
interface QueueEntry {
  seq: number;
  op: string;
  path: string;
  to?: string;
  mode?: number;
  target?: string;
  atimeMs?: number;
  mtimeMs?: number;
}

/** Options of a cache manager. */
export interface CacheOptions {
  /** ~/.xufs/cache/ID */
  dir: string;
  /** This host's name, for conflict copies on A. */
  from: string;
  log?: (line: string) => void;
  /** Bytes per range of a striped transfer (XUFS_STRIPE_SIZE, default 4 MiB). */
  stripeSize?: number;
  /** Files at least this large travel as ranges over every link (XUFS_STRIPE_MIN, default 8 MiB). */
  stripeMin?: number;
  /** Files up to this size are pre-cached when their directory is listed (XUFS_PRECACHE_MAX, default 64 KiB; 0: off). */
  precacheMax?: number;
  /** Pre-cache batches in flight at once (XUFS_PRECACHE_JOBS, default 4). */
  precacheJobs?: number;
  /** Most bytes waiting to be pre-cached (XUFS_PRECACHE_BYTES, default 64 MiB); more is left for demand. */
  precacheBytes?: number;
  /** Show a progress line for long transfers. */
  progress?: boolean;
}

/** Defaults of the transfer knobs. */
export const TRANSFER_DEFAULTS = {
  stripeSize: 4 << 20,
  stripeMin: 8 << 20,
  precacheMax: 64 << 10,
  precacheJobs: 4,
  precacheBytes: 64 << 20,
};

/** Files and bytes in one pre-cache request. */
const PRECACHE_BATCH_FILES = 256, PRECACHE_BATCH_BYTES = 1 << 20;
/** Ranges in flight per link, so a link never idles for a round trip between ranges. */
const RANGES_PER_LINK = 2;
/** Attempts of a striped fetch whose file changed on A while it travelled. */
const FETCH_ATTEMPTS = 3;

const enc = new TextEncoder();

/** The cache manager of one export. */
export class CacheManager {
  readonly tree: string;
  #meta = new Map<string, Meta>();
  #queueDir: string;
  #seq = 0;
  #pending = new Map<string, number>();
  #inflight = new Map<string, Promise<void>>();
  #remote: Remote | null = null;
  #stripes: Remote[] = [];
  #t: typeof TRANSFER_DEFAULTS;
  #pre: { rel: string; size: number }[] = [];
  #preBytes = 0;
  #preActive = 0;
  #preNext = 0;
  #stale = new Set<string>();
  #preDirs: string[] = [];
  #prelisted = new Set<string>();
  /** Paths of changes A acknowledged, numbered, newest last (see #materialize). */
  #acked: { n: number; path: string }[] = [];
  #ackN = 0;
  #staleTimer?: ReturnType<typeof setTimeout>;
  #sending = false;
  #kickAgain = false;
  #saveTimer?: ReturnType<typeof setTimeout>;
  #log: (line: string) => void;
  #idle: (() => void)[] = [];

  constructor(readonly opts: CacheOptions) {
    this.tree = join(opts.dir, "tree");
    this.#queueDir = join(opts.dir, "queue");
    this.#log = opts.log ?? ((l) => console.error(`xufs: ${l}`));
    this.#t = { ...TRANSFER_DEFAULTS };
    for (const k of Object.keys(TRANSFER_DEFAULTS) as (keyof typeof TRANSFER_DEFAULTS)[]) {
      if (opts[k] !== undefined) this.#t[k] = opts[k]!;
    }
  }

  /** Loads state, marks every directory for revalidation, and reloads the write-back queue. */
  async init(): Promise<void> {
    await mkdir(this.tree, { recursive: true, mode: 0o700 });
    await mkdir(this.#queueDir, { recursive: true, mode: 0o700 });
    try {
      const saved = JSON.parse(await Deno.readTextFile(join(this.opts.dir, "meta.json")));
      for (const [k, v] of Object.entries(saved)) this.#meta.set(k, { ...(v as Meta), listed: false });
    } catch { /* first session, or lost: everything is refetched as needed */ }
    for (const e of await this.#queued()) {
      this.#seq = Math.max(this.#seq, e.seq);
      this.#markPending(e, +1);
    }
    if (this.#seq) this.#log(`${this.#pending.size} path(s) have queued write-backs from an earlier session`);
  }

  /**
   * Attaches (or replaces) the link to A, subscribes to A's change callbacks and starts sending
   * queued changes. Whatever was cached before is revalidated (relisted) before it is trusted.
   */
  attach(remote: Remote): void {
    this.#remote = remote;
    for (const m of this.#meta.values()) m.listed = false;
    this.#prelisted.clear();
    remote.onNotice = (h) => {
      if (h.op === "changed" && Array.isArray(h.paths)) this.#changed(h.paths.map(String));
    };
    remote.request({ op: "watch" }).catch(() => {});
    this.#kick();
  }

  /** Adds a further link to A (its own TCP connection) for striped transfers and pre-caching. */
  addLink(remote: Remote): void {
    this.#stripes = [...this.#stripes.filter((r) => r.up), remote];
  }

  /** Links that are up: the main one first. */
  get links(): Remote[] {
    return [this.#remote, ...this.#stripes].filter((r): r is Remote => !!r?.up);
  }

  #local(rel: string): string {
    return rel === "." ? this.tree : join(this.tree, rel);
  }

  #m(rel: string): Meta {
    let m = this.#meta.get(rel);
    if (!m) this.#meta.set(rel, (m = {}));
    return m;
  }

  #save(): void {
    clearTimeout(this.#saveTimer);
    this.#saveTimer = setTimeout(() => this.saveNow().catch(() => {}), 200);
  }

  /** Writes meta.json now. */
  async saveNow(): Promise<void> {
    clearTimeout(this.#saveTimer);
    await writeFileAtomic(join(this.opts.dir, "meta.json"), JSON.stringify(Object.fromEntries(this.#meta)));
  }

  #remoteOrEio(): Remote {
    if (!this.#remote?.up) throw new FsError("EIO", "Host A is unreachable");
    return this.#remote;
  }

  /** Runs `work` once per key at a time; concurrent callers share it. */
  #once(key: string, work: () => Promise<void>): Promise<void> {
    let p = this.#inflight.get(key);
    if (!p) {
      p = work().finally(() => this.#inflight.delete(key));
      this.#inflight.set(key, p);
    }
    return p;
  }

  // ---- listing, lookup, fetch ----

  /** Makes sure directory `rel` is listed (its entries exist in the skeleton); `via` a given link. */
  async list(rel: string, via?: Remote): Promise<void> {
    if (this.#m(rel).listed) return;
    await this.#once(`list:${rel}`, async () => {
      const since = this.#ackN;
      const reply = await (via ?? this.#remoteOrEio()).request({ op: "list", path: rel });
      await this.#listed(rel, reply.head.entries as Entry[], since);
    });
  }

  async #listed(rel: string, entries: Entry[], since: number): Promise<void> {
    await this.#materialize(rel, entries, since);
    this.#m(rel).listed = true;
    this.#save();
    this.#precache(rel, entries);
  }

  /**
   * Applies a listing of `rel`. A change acknowledged by A after the listing was requested
   * (acknowledgement number `since`) may have been applied after the listing was made, on
   * another link: its paths still count as pending here, or the listing would undo it on B.
   */
  async #materialize(rel: string, entries: Entry[], since: number): Promise<void> {
    const pendingUnder = (child: string) => this.#hasPendingUnder(child) || this.#hasPendingUnder(child, this.#ackedSince(since));
    const dir = this.#local(rel);
    await mkdir(dir, { recursive: true });
    const remoteNames = new Set(entries.map((e) => e.name));
    for (const name of await readdir(dir)) {
      const child = rel === "." ? name : `${rel}/${name}`;
      // Gone from A: drop it, unless it was made on B (no version from A) or has queued changes.
      if (!remoteNames.has(name) && this.#meta.get(child)?.version !== undefined && !pendingUnder(child)) {
        await rm(join(dir, name), { recursive: true, force: true });
        this.#forget(child);
      }
    }
    for (const e of entries) {
      const child = rel === "." ? e.name : `${rel}/${e.name}`;
      if (pendingUnder(child)) continue; // B's own change wins until it is sent
      await this.#materializeEntry(join(dir, e.name), child, e);
    }
    // Creating the placeholders touched the directory: give it back A's mtime.
    const mtimeMs = this.#meta.get(rel)?.mtimeMs;
    if (mtimeMs !== undefined) await utimes(dir, mtimeMs / 1000, mtimeMs / 1000);
  }

  async #materializeEntry(path: string, rel: string, e: Entry): Promise<void> {
    const local = await lstat(path).catch(() => null);
    const localType = local ? (local.isDirectory() ? "d" : local.isSymbolicLink() ? "l" : "f") : null;
    const m = this.#m(rel);
    if (localType && localType !== e.type) {
      await rm(path, { recursive: true, force: true });
      this.#forget(rel);
    } else if (localType === "d" && e.type === "d") {
      m.mtimeMs = e.mtimeMs;
      if ((local!.mode & 0o7777) !== (e.mode | 0o700)) await chmod(path, e.mode | 0o700);
      return;
    } else if (localType === "l" && e.type === "l" && (await readlink(path)) === e.target) return;
    else if (localType === "f" && e.type === "f" && (m.version === e.version || this.#modifiedOnB(local!, m))) return;
    else if (localType) await rm(path, { recursive: true, force: true });
    if (e.type === "d") {
      await mkdir(path, { mode: e.mode | 0o700 });
      await chmod(path, e.mode | 0o700);
      await utimes(path, e.mtimeMs / 1000, e.mtimeMs / 1000);
      m.mtimeMs = e.mtimeMs;
      m.version = e.version;
    } else if (e.type === "l") {
      await symlink(e.target ?? "", path);
    } else {
      // A placeholder with A's size, mode and mtime: stat is right before any fetch.
      const tmp = `${path}.xufs-tmp`;
      const f = await open(tmp, "w", 0o600);
      await f.truncate(e.size);
      await f.close();
      await chmod(tmp, e.mode);
      await utimes(tmp, e.mtimeMs / 1000, e.mtimeMs / 1000);
      await rename(tmp, path);
      const fresh = this.#m(rel);
      fresh.version = e.version;
      fresh.fetched = false;
      fresh.mtimeMs = e.mtimeMs;
    }
  }

  /** Makes sure every ancestor of `rel` is listed; throws ENOENT when `rel` does not exist. */
  async lookup(rel: string): Promise<void> {
    const parts = rel === "." ? [] : rel.split("/");
    let dir = ".";
    for (let i = 0; i < parts.length; i++) {
      await this.list(dir);
      dir = dir === "." ? parts[i] : `${dir}/${parts[i]}`;
      if (i < parts.length - 1) {
        const st = await stat(this.#local(dir)).catch(() => null);
        if (!st) throw new FsError("ENOENT", `No such file or directory: ${rel}`);
        if (!st.isDirectory()) throw new FsError("ENOTDIR", `Not a directory: ${dir}`);
      }
    }
    if (!(await lstat(this.#local(rel)).catch(() => null))) throw new FsError("ENOENT", `No such file or directory: ${rel}`);
  }

  /** Makes sure a file's content is cached (following symlinks that stay in the export). */
  async fetch(rel: string): Promise<void> {
    // Cached and its directory's listing still trusted: nothing to ask the disk or A.
    if (this.#meta.get(rel)?.fetched && this.#meta.get(rel.includes("/") ? dirname(rel) : ".")?.listed) return;
    await this.lookup(rel);
    const real = await Deno.realPath(this.#local(rel)).catch(() => null);
    if (!real || !(real === this.tree || real.startsWith(this.tree + "/"))) return; // outside: B's own file
    const target = real === this.tree ? "." : real.slice(this.tree.length + 1);
    if (target !== rel) await this.lookup(target);
    const st = await stat(real);
    if (st.isDirectory()) return await this.list(target);
    const m = this.#m(target);
    if (m.fetched || this.#pending.has(target) || m.version === undefined) return;
    const pre = this.#inflight.get(`pre:${target}`);
    if (pre) {
      await pre.catch(() => {});
      if (m.fetched) return;
    }
    await this.#once(`fetch:${target}`, async () => {
      if (st.size >= this.#t.stripeMin) return await this.#fetchRanges(target, real, st, m);
      const reply = await this.#remoteOrEio().request({ op: "read", path: target }, undefined, 10_000 + Math.ceil(st.size / 1e6) * 1000);
      const { version, size } = reply.head;
      if (reply.payload.length !== size) throw new FsError("EIO", `Short read of ${target}: ${reply.payload.length} of ${size} bytes`);
      await this.#fill(real, st, size, (f) => writeAt(f, reply.payload, 0));
      m.version = version;
      m.fetched = true;
      this.#save();
    });
  }

  /**
   * Fills a placeholder in place: same inode, and its directory is not touched, so programs
   * that compare stat results before and after (cp, tar) see no change.
   */
  async #fill(real: string, st: Stats, size: number, write: (f: FileHandle) => Promise<void>, onlyIfUntouched = false): Promise<boolean> {
    const mode = st.mode & 0o7777;
    if ((mode & 0o200) === 0) await chmod(real, mode | 0o200);
    try {
      const f = await open(real, "r+");
      try {
        // A background fill leaves alone a placeholder that a program opened for writing meanwhile.
        const now = onlyIfUntouched ? await f.stat() : st;
        if (now.ino !== st.ino || now.size !== st.size || now.mtimeMs !== st.mtimeMs) return false;
        await write(f);
        if (st.size !== size) await f.truncate(size);
      } finally {
        await f.close();
      }
    } finally {
      if ((mode & 0o200) === 0) await chmod(real, mode);
    }
    await utimes(real, st.atime ?? st.mtime, st.mtime);
    return true;
  }

  /**
   * A large file, fetched as ranges over every link at once. Each range carries its SHA-256 and
   * the file's version; the file counts as cached only when every range arrived, checked, of one
   * version and the listed size. A file that changes on A meanwhile is fetched again.
   */
  async #fetchRanges(target: string, real: string, st: Stats, m: Meta): Promise<void> {
    let size = st.size;
    for (let attempt = 1;; attempt++) {
      let version: string | undefined;
      let seen = size;
      try {
        await this.#fill(real, st, size, (f) =>
          this.#ranges(`fetching ${target}`, size, async (link, offset, length) => {
            const r = await link.request({ op: "read", path: target, offset, length, hash: true }, undefined, rangeTimeout(length));
            if (r.head.size !== size || (version !== undefined && r.head.version !== version)) {
              seen = Number(r.head.size);
              throw new Changed();
            }
            version = String(r.head.version);
            if (r.payload.length !== length || sha256(r.payload) !== r.head.sha256) {
              throw new FsError("EIO", `Range ${offset}+${length} of ${target} arrived corrupted`);
            }
            await writeAt(f, r.payload, offset);
          }));
      } catch (e) {
        if (!(e instanceof Changed) || attempt === FETCH_ATTEMPTS) {
          throw e instanceof Changed ? new FsError("EIO", `File kept changing on A while it was fetched: ${target}`) : e;
        }
        size = seen;
        continue;
      }
      m.version = version ?? m.version;
      m.fetched = true;
      this.#save();
      return;
    }
  }

  /**
   * Moves `size` bytes as ranges of stripeSize over every link that is up, RANGES_PER_LINK at a
   * time per link. A range whose link fails goes to another link; it fails only when none is left.
   */
  async #ranges(label: string, size: number, move: (link: Remote, offset: number, length: number) => Promise<void>): Promise<void> {
    const links = this.links;
    if (links.length === 0) throw new FsError("EIO", "Host A is unreachable");
    const progress = new Progress(label, size, this.opts.progress ?? false);
    const retry: number[] = [];
    let next = 0;
    let failure: Error | undefined;
    const take = () => {
      if (retry.length) return retry.shift()!;
      if (next >= size) return undefined;
      const o = next;
      next += this.#t.stripeSize;
      return o;
    };
    const worker = async (link: Remote) => {
      for (let offset = take(); offset !== undefined && !failure; offset = take()) {
        const length = Math.min(this.#t.stripeSize, size - offset);
        try {
          await move(link, offset, length);
          progress.add(length);
        } catch (e) {
          if (e instanceof FsError && e.code === "EIO" && !link.up) {
            retry.push(offset); // the link is gone: another one takes the range
            return;
          }
          failure = e as Error;
        }
      }
    };
    try {
      await Promise.all(links.flatMap((l) => Array.from({ length: RANGES_PER_LINK }, () => worker(l))));
    } finally {
      progress.end();
    }
    if (failure) throw failure;
    if (retry.length || next < size) throw new FsError("EIO", "Every link to host A failed during a transfer");
  }

  // ---- pre-caching ----

  /** Queues the small unfetched files of a just-listed directory for background fetching. */
  #precache(rel: string, entries: Entry[]): void {
    if (this.#t.precacheMax <= 0) return;
    for (const e of entries) {
      if (e.type !== "f" || e.size > this.#t.precacheMax) continue;
      const child = rel === "." ? e.name : `${rel}/${e.name}`;
      const m = this.#meta.get(child);
      if (!m || m.fetched || m.version !== e.version || this.#pending.has(child)) continue;
      if (this.#preBytes + e.size > this.#t.precacheBytes) break;
      this.#pre.push({ rel: child, size: e.size });
      this.#preBytes += e.size;
    }
    this.#pump();
  }

  /**
   * Entering directory `rel` (a program's LIST) lists its subdirectories in the background, one
   * level ahead of a walker, each listing pre-caching its own small files in turn.
   */
  prelist(rel: string): void {
    if (this.#t.precacheMax <= 0 || this.#prelisted.has(rel)) return;
    this.#prelisted.add(rel);
    (async () => {
      for (const e of await readdir(this.#local(rel), { withFileTypes: true })) {
        const child = rel === "." ? e.name : `${rel}/${e.name}`;
        if (e.isDirectory() && !this.#meta.get(child)?.listed) this.#preDirs.push(child);
      }
      this.#pump();
    })().catch(() => {});
  }

  /** The link for background work: a further one when there is one, so the main link stays free. */
  #backgroundLink(): Remote | undefined {
    const links = this.links;
    return links.length > 1 ? links[1 + (this.#preNext++ % (links.length - 1))] : links[0];
  }

  #pump(): void {
    while (this.#preActive < this.#t.precacheJobs && this.#preDirs.length) {
      const dir = this.#preDirs.shift()!;
      const link = this.#backgroundLink();
      if (!link) break;
      this.#preActive++;
      this.list(dir, link).catch(() => {}).finally(() => {
        this.#preActive--;
        this.#pump();
      });
    }
    while (this.#preActive < this.#t.precacheJobs && this.#pre.length) {
      const batch: { rel: string; size: number }[] = [];
      let bytes = 0;
      while (this.#pre.length && batch.length < PRECACHE_BATCH_FILES && bytes + this.#pre[0].size <= PRECACHE_BATCH_BYTES) {
        const item = this.#pre.shift()!;
        this.#preBytes -= item.size;
        const m = this.#meta.get(item.rel);
        if (!m || m.fetched || this.#pending.has(item.rel) || this.#inflight.has(`pre:${item.rel}`)) continue;
        batch.push(item);
        bytes += item.size;
      }
      if (batch.length === 0) continue;
      const link = this.#backgroundLink();
      if (!link) {
        this.#pre = [];
        this.#preBytes = 0;
        return;
      }
      this.#preActive++;
      const work = this.#precacheBatch(link, batch.map((b) => b.rel));
      for (const b of batch) this.#inflight.set(`pre:${b.rel}`, work);
      work.catch(() => {}).finally(() => {
        for (const b of batch) this.#inflight.delete(`pre:${b.rel}`);
        this.#preActive--;
        this.#pump();
      });
    }
  }

  async #precacheBatch(link: Remote, paths: string[]): Promise<void> {
    const reply = await link.request({ op: "readmany", paths });
    let off = 0;
    for (const f of reply.head.files as { path: string; version?: string; size?: number; error?: string }[]) {
      if (f.error || f.size === undefined) continue;
      const data = reply.payload.subarray(off, off + f.size);
      off += f.size;
      const m = this.#meta.get(f.path);
      // Only a placeholder still untouched and of this very version is filled.
      if (!m || m.fetched || m.version !== f.version || this.#pending.has(f.path)) continue;
      const local = this.#local(f.path);
      const st = await lstat(local).catch(() => null);
      if (!st?.isFile() || this.#modifiedOnB(st, m)) continue;
      if (await this.#fill(local, st, f.size, (h) => writeAt(h, data, 0), true)) m.fetched = true;
    }
    this.#save();
  }

  /**
   * Whether a cached file was changed on B since it was listed or fetched: its mtime moved (by
   * more than the rounding of setting a time from milliseconds).
   */
  #modifiedOnB(st: Stats, m: Meta): boolean {
    return m.mtimeMs !== undefined && Math.abs(st.mtimeMs - m.mtimeMs) > 0.01;
  }

  // ---- change callbacks ----

  /** A pushed "these paths changed on A": their listed directories are relisted at once. */
  #changed(paths: string[]): void {
    for (const p of paths) {
      for (const d of [p, p === "." ? undefined : p.includes("/") ? dirname(p) : "."]) {
        const m = d === undefined ? undefined : this.#meta.get(d);
        if (d !== undefined) this.#prelisted.delete(d);
        if (m?.listed) {
          m.listed = false;
          this.#stale.add(d!);
        }
      }
    }
    if (this.#stale.size && !this.#staleTimer) {
      this.#staleTimer = setTimeout(() => {
        this.#staleTimer = undefined;
        const dirs = [...this.#stale];
        this.#stale.clear();
        for (const d of dirs) this.list(d).catch(() => {}); // gone on A: its parent's relist drops it
      }, 20);
    }
  }

  // ---- changes ----

  /** Applies a change requested by the preload locally and queues it for A. */
  async change(op: string, args: string[]): Promise<void> {
    const [rel, a1, a2] = args;
    const need = (n: number) => {
      if (args.length !== n) throw new FsError("EINVAL", `${op} takes ${n} argument(s)`);
    };
    switch (op) {
      case "MKDIR": {
        need(2);
        await this.#parentListed(rel);
        await mkdir(this.#local(rel), { mode: parseInt(a1, 8) & 0o7777 });
        this.#m(rel).listed = true;
        return await this.#enqueue({ op: "mkdir", path: rel, mode: parseInt(a1, 8) & 0o7777 });
      }
      case "RMDIR":
        need(1);
        await this.lookup(rel);
        await this.list(rel);
        await rmdir(this.#local(rel));
        return await this.#enqueue({ op: "rmdir", path: rel });
      case "UNLINK":
        need(1);
        await this.lookup(rel);
        await unlink(this.#local(rel));
        return await this.#enqueue({ op: "unlink", path: rel });
      case "RENAME": {
        need(2);
        await this.lookup(rel);
        await this.#parentListed(a1);
        const st = await lstat(this.#local(rel));
        if (st.isDirectory()) await this.#listTree(rel);
        await rename(this.#local(rel), this.#local(a1));
        return await this.#enqueue({ op: "rename", path: rel, to: a1 });
      }
      case "SYMLINK":
        need(2);
        await this.#parentListed(a1);
        await symlink(rel, this.#local(a1));
        return await this.#enqueue({ op: "symlink", path: a1, target: rel });
      case "LINK":
        need(2);
        await this.fetch(rel);
        await this.#parentListed(a1);
        await link(this.#local(rel), this.#local(a1));
        return await this.#enqueue({ op: "link", path: rel, to: a1 });
      case "CHMOD":
        need(2);
        await this.lookup(rel);
        await chmod(this.#local(rel), parseInt(a1, 8) & 0o7777);
        return await this.#enqueue({ op: "chmod", path: rel, mode: parseInt(a1, 8) & 0o7777 });
      case "TRUNCATE":
        need(2);
        if (Number(a1) !== 0) await this.fetch(rel);
        else await this.lookup(rel);
        await truncate(this.#local(rel), Number(a1));
        return await this.#enqueue({ op: "write", path: rel });
      case "UTIMENS": {
        need(3);
        await this.lookup(rel);
        const st = await stat(this.#local(rel));
        const t = (ns: string, cur: number) => (ns === "-1" ? Date.now() : ns === "-2" ? cur : Number(BigInt(ns) / 1_000_000n));
        const atimeMs = t(a1, st.atimeMs), mtimeMs = t(a2, st.mtimeMs);
        await utimes(this.#local(rel), atimeMs / 1000, mtimeMs / 1000);
        return await this.#enqueue({ op: "utimes", path: rel, atimeMs, mtimeMs });
      }
      case "CLOSED": {
        need(1);
        const st = await lstat(this.#local(rel)).catch(() => null);
        if (!st?.isFile()) return; // already gone again
        // Never send a placeholder: an unfetched file nobody wrote (same size and mtime as listed).
        const m = this.#meta.get(rel);
        if (m && m.version !== undefined && m.mtimeMs !== undefined && !m.fetched && !this.#pending.has(rel) && !this.#modifiedOnB(st, m)) return;
        return await this.#enqueue({ op: "write", path: rel });
      }
      default:
        throw new FsError("EINVAL", `Unknown request: ${op}`);
    }
  }

  async #parentListed(rel: string): Promise<void> {
    const parent = rel.includes("/") ? dirname(rel) : ".";
    await this.lookup(parent);
    await this.list(parent);
  }

  /** Lists a whole subtree (for walkers and directory renames). */
  async #listTree(rel: string): Promise<void> {
    await this.list(rel);
    for (const e of await readdir(this.#local(rel), { withFileTypes: true })) {
      if (e.isDirectory()) await this.#listTree(rel === "." ? e.name : `${rel}/${e.name}`);
    }
  }

  /** TREE request: the whole subtree of a directory listed, in one round trip when it is not yet. */
  async listSubtree(rel: string): Promise<void> {
    await this.lookup(rel);
    if (!(await stat(this.#local(rel))).isDirectory()) return;
    if (!this.#m(rel).listed) {
      await this.#once(`tree:${rel}`, async () => {
        const since = this.#ackN;
        const reply = await this.#remoteOrEio().request({ op: "tree", path: rel });
        for (const d of reply.head.dirs as { path: string; entries: Entry[] }[]) {
          if (!this.#meta.get(d.path)?.listed && !this.#inflight.has(`list:${d.path}`)) await this.#listed(d.path, d.entries, since);
        }
      });
    }
    await this.#listTree(rel);
  }

  #forget(rel: string): void {
    for (const k of [...this.#meta.keys()]) if (k === rel || k.startsWith(rel + "/")) this.#meta.delete(k);
  }

  #moveMeta(from: string, to: string): void {
    this.#forget(to);
    for (const [k, v] of [...this.#meta.entries()]) {
      if (k === from || k.startsWith(from + "/")) {
        this.#meta.delete(k);
        this.#meta.set(to + k.slice(from.length), v);
      }
    }
    this.#save();
  }

  /** Paths acknowledged after acknowledgement number `since` (the log keeps the last 100,000). */
  #ackedSince(since: number): string[] {
    if (this.#acked.length > 100_000) this.#acked.splice(0, this.#acked.length - 100_000);
    const out: string[] = [];
    for (let i = this.#acked.length - 1; i >= 0 && this.#acked[i].n > since; i--) out.push(this.#acked[i].path);
    return out;
  }

  #hasPendingUnder(rel: string, pending: Iterable<string> = this.#pending.keys()): boolean {
    for (const k of pending) if (k === rel || k.startsWith(rel + "/")) return true;
    return false;
  }

  #markPending(e: QueueEntry, d: number): void {
    for (const p of [e.path, e.to]) {
      if (p === undefined) continue;
      if (d < 0) this.#acked.push({ n: ++this.#ackN, path: p });
      const n = (this.#pending.get(p) ?? 0) + d;
      if (n > 0) this.#pending.set(p, n);
      else this.#pending.delete(p);
    }
  }

  // ---- the durable queue ----

  async #enqueue(e: Omit<QueueEntry, "seq">): Promise<void> {
    const entry: QueueEntry = { ...e, seq: ++this.#seq };
    const name = String(entry.seq).padStart(12, "0");
    if (entry.op === "write") {
      // Snapshot the content now, so later writes cannot mix into this write-back.
      const data = join(this.#queueDir, `${name}.data`);
      await Deno.copyFile(this.#local(entry.path), data);
      const f = await Deno.open(data, { read: true });
      await f.sync();
      f.close();
      const st = await stat(this.#local(entry.path));
      entry.mode = st.mode & 0o7777;
      entry.atimeMs = st.atimeMs;
      entry.mtimeMs = st.mtimeMs;
    }
    // Counted before it is visible to the sender, which may send it at once and count it down.
    this.#markPending(entry, +1);
    try {
      await writeFileAtomic(join(this.#queueDir, `${name}.json`), JSON.stringify(entry));
    } catch (e) {
      this.#markPending(entry, -1);
      throw e;
    }
    this.#kick();
  }

  async #queued(): Promise<QueueEntry[]> {
    const out: QueueEntry[] = [];
    for await (const e of Deno.readDir(this.#queueDir)) {
      if (!e.name.endsWith(".json")) continue;
      try {
        out.push(JSON.parse(await Deno.readTextFile(join(this.#queueDir, e.name))));
      } catch (err) {
        this.#log(`unreadable queue entry kept aside: ${e.name} (${(err as Error).message})`);
        await rename(join(this.#queueDir, e.name), join(this.#queueDir, `${e.name}.bad`));
      }
    }
    return out.sort((a, b) => a.seq - b.seq);
  }

  /** Number of changes not yet acknowledged by A. */
  get queued(): number {
    let n = 0;
    for (const v of this.#pending.values()) n += v;
    return n;
  }

  #kick(): void {
    if (this.#sending) {
      this.#kickAgain = true; // an entry may have landed after the sender's last look
      return;
    }
    if (!this.#remote?.up) return;
    this.#sending = true;
    this.#kickAgain = false;
    this.#sendAll().finally(() => {
      this.#sending = false;
      if (this.#pending.size === 0) for (const f of this.#idle.splice(0)) f();
      else if (this.#kickAgain) this.#kick();
    });
  }

  async #sendAll(): Promise<void> {
    while (this.#remote?.up) {
      const entries = await this.#queued();
      if (entries.length === 0) return;
      for (const e of entries) {
        try {
          await this.#send(e);
        } catch (err) {
          if (err instanceof FsError && err.code === "EIO") return; // link down: retried on the next attach
          this.#log(`change not applied on A: ${e.op} ${e.path}${e.to ? ` -> ${e.to}` : ""}: ${(err as Error).message}`);
        }
        const name = String(e.seq).padStart(12, "0");
        await rm(join(this.#queueDir, `${name}.json`), { force: true });
        await rm(join(this.#queueDir, `${name}.data`), { force: true });
        this.#markPending(e, -1);
      }
    }
  }

  async #send(e: QueueEntry): Promise<void> {
    const remote = this.#remoteOrEio();
    const base = this.#meta.get(e.path)?.version ?? null;
    switch (e.op) {
      case "write": {
        const r = await this.#writeBack(remote, e, base);
        const m = this.#m(e.path);
        if (r.head.conflict) {
          this.#log(`conflict: ${e.path} changed on host A since this host fetched it; ` +
            `A's copy stays, this host's version is kept on A as ${r.head.conflict}`);
          m.fetched = false;
          m.version = undefined; // refetched from A on the next open
          m.mtimeMs = undefined; // B's copy is safe on A: the relisting may replace it
          const parent = e.path.includes("/") ? dirname(e.path) : ".";
          this.#m(parent).listed = false;
        } else {
          m.version = r.head.version;
          m.fetched = true;
          m.mtimeMs = e.mtimeMs;
        }
        this.#save();
        return;
      }
      case "rename": {
        // Bases are resolved now, in queue order: earlier changes to the same names are on A.
        const toBase = this.#meta.get(e.to!)?.version ?? null;
        const r = await remote.request({ op: "rename", path: e.path, to: e.to, toBase, from: this.opts.from });
        this.#moveMeta(e.path, e.to!);
        if (r.head.conflict) {
          this.#log(`conflict: ${e.to} changed on host A since this host saw it; A's copy stays, this host's version is kept on A as ${r.head.conflict}`);
          this.#m(e.to!).fetched = false;
          this.#m(e.to!).version = undefined;
          this.#m(e.to!).mtimeMs = undefined;
          this.#m(e.to!.includes("/") ? dirname(e.to!) : ".").listed = false;
        }
        return;
      }
      case "unlink": {
        const r = await remote.request({ op: "unlink", path: e.path, base, from: this.opts.from });
        if (r.head.conflict) {
          this.#log(`conflict: ${e.path} changed on host A since this host saw it; it was not removed there`);
          this.#m(e.path.includes("/") ? dirname(e.path) : ".").listed = false;
        } else this.#forget(e.path);
        return;
      }
      case "utimes": {
        const r = await remote.request({ op: "utimes", path: e.path, atimeMs: e.atimeMs, mtimeMs: e.mtimeMs });
        const m = this.#meta.get(e.path);
        if (m?.version === base && base !== null) {
          m.version = r.head.version;
          m.mtimeMs = e.mtimeMs;
        }
        return;
      }
      case "link":
        await remote.request({ op: "link", path: e.path, to: e.to });
        this.#m(e.to!).version = this.#meta.get(e.path)?.version;
        this.#m(e.to!).fetched = true;
        return;
      default:
        await remote.request({ op: e.op, path: e.path, mode: e.mode, target: e.target });
        if (e.op === "rmdir") this.#forget(e.path);
    }
  }

  /**
   * One write-back: the snapshot whole, or (from stripeMin on) as checked ranges over every link
   * into an upload on A, then committed with the same compare-and-swap as a whole file.
   */
  async #writeBack(remote: Remote, e: QueueEntry, base: string | null) {
    const dataPath = join(this.#queueDir, `${String(e.seq).padStart(12, "0")}.data`);
    const head = { op: "write", path: e.path, base, mode: e.mode, atimeMs: e.atimeMs, mtimeMs: e.mtimeMs, from: this.opts.from };
    const size = (await stat(dataPath)).size;
    if (size < this.#t.stripeMin) return await remote.request(head, await Deno.readFile(dataPath));
    const { upload } = (await remote.request({ op: "wbegin", path: e.path, size })).head;
    const f = await open(dataPath, "r");
    try {
      await this.#ranges(`writing back ${e.path}`, size, async (link, offset, length) => {
        const buf = new Uint8Array(length);
        let got = 0;
        while (got < length) {
          const { bytesRead } = await f.read(buf, got, length - got, offset + got);
          if (bytesRead === 0) throw new FsError("EIO", `Write-back snapshot shrank: ${e.path}`);
          got += bytesRead;
        }
        await link.request({ op: "wpart", upload, offset, sha256: sha256(buf) }, buf, rangeTimeout(length));
      });
    } finally {
      await f.close();
    }
    return await remote.request({ ...head, upload }, undefined, 10_000 + Math.ceil(size / 1e6) * 1000);
  }

  /** Waits until the queue is empty or `timeoutMs` passed; returns what is still queued. */
  async flush(timeoutMs: number): Promise<number> {
    this.#kick();
    if (this.#pending.size > 0) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, timeoutMs);
        this.#idle.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    await this.saveNow().catch(() => {});
    return this.queued;
  }

  // ---- the preload's socket ----

  /** Answers one request line from libxufs.so; returns the reply line. */
  async answer(line: string): Promise<string> {
    const [op, ...args] = line.split("\t");
    try {
      const paths = op === "SYMLINK" ? args.slice(1) : args; // a symlink's target is free text
      for (const a of paths) if (a.split("/").some((c) => c === ".." || c === "")) throw new FsError("EINVAL", `Bad path: ${a}`);
      switch (op) {
        case "LOOKUP":
          await this.lookup(args[0]);
          break;
        case "LIST":
          await this.lookup(args[0]);
          await this.list(args[0]);
          this.prelist(args[0]);
          break;
        case "TREE":
          await this.listSubtree(args[0]);
          break;
        case "FETCH":
          await this.fetch(args[0]);
          break;
        default:
          await this.change(op, args);
      }
      return "OK\n";
    } catch (e) {
      const code = e instanceof FsError ? e.code : ((e as NodeJS.ErrnoException).code ?? "EIO");
      if (code === "EIO" || !(e instanceof FsError || (e as NodeJS.ErrnoException).code)) {
        this.#log(`${op} ${args.join(" ")}: ${(e as Error).message}`);
      }
      return `ERR ${/^E[A-Z0-9]+$/.test(code) ? code : "EIO"}\n`;
    }
  }

  /** Serves libxufs.so on a Unix socket (mode 0600) until the listener is closed. */
  async servePreload(listener: Deno.Listener): Promise<void> {
    for await (const conn of listener) {
      (async () => {
        try {
          const buf = new Uint8Array(8192);
          let line = "";
          while (!line.includes("\n")) {
            const n = await conn.read(buf);
            if (n === null) return;
            line += new TextDecoder().decode(buf.subarray(0, n));
            if (line.length > 8192) return;
          }
          const reply = await this.answer(line.slice(0, line.indexOf("\n")));
          await conn.write(enc.encode(reply));
        } catch { /* the program went away */ } finally {
          try {
            conn.close();
          } catch { /* closed */ }
        }
      })();
    }
  }
}

/** Deadline of one range: the ranges queued before it on its link travel first (at ≥ 1 MB/s). */
function rangeTimeout(length: number): number {
  return 10_000 + Math.ceil((RANGES_PER_LINK * length) / 1e6) * 1000;
}

/** A striped fetch met a file that changed on A. */
class Changed extends Error {}

/** Writes all of `data` at `offset`. */
async function writeAt(f: FileHandle, data: Uint8Array, offset: number): Promise<void> {
  let off = 0;
  while (off < data.length) off += (await f.write(data, off, data.length - off, offset + off)).bytesWritten;
}
