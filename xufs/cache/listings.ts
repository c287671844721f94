/**
 * Metadata and listings of B's cache: a directory is listed in one request whose reply streams
 * in parts (any number of entries), and each part is applied to the local skeleton at once:
 * directories made, symlinks made, files as sparse placeholders with A's size, mode and mtime
 * (empty files count as fetched). What A no longer has is removed — unless it is busy on B
 * (changes not yet applied on A, or open for writing), since B's own change wins until it is
 * sent. Lookups list every ancestor first; TREE lists a whole subtree in one request.
 */
import type { Stats } from "node:fs";
import { chmodSync, existsSync, lstatSync, mkdirSync, readdirSync, readlinkSync, rmSync, symlinkSync, utimesSync } from "node:fs";
import { lstat, stat } from "node:fs/promises";
import { join } from "node:path";
import { FsError } from "../fserror.ts";
import type { Entry } from "../messages.ts";
import type { Remote } from "../remote.ts";
import type { LinkPool } from "./links.ts";
import { type CacheState, childOf, parentOf } from "./state.ts";

/** What listings tell the rest of the cache. */
export interface ListingHooks {
  /** A directory was listed: its small files may be pre-cached. */
  listed: (rel: string, entries: Entry[]) => void;
  /** A busy entry was left alone although A's version differs: applied when it is no longer busy. */
  skipped: (rel: string) => void;
  /** A watched file B has cached changed on A: its content is replaced in place (same inode). */
  refresh: (rel: string, e: Entry) => void;
}

/** Lists directories into the skeleton. */
export class Listings {
  #inflight = new Map<string, Promise<void>>();

  constructor(private readonly state: CacheState, private readonly pool: LinkPool, private readonly hooks: ListingHooks) {}

  /** Runs `work` once per key at a time; concurrent callers share it. */
  once(key: string, work: () => Promise<void>): Promise<void> {
    let p = this.#inflight.get(key);
    if (!p) {
      p = work().finally(() => this.#inflight.delete(key));
      this.#inflight.set(key, p);
    }
    return p;
  }

  /** Runs `work`, known under every key of `keys` until it ends (a fetch of one of them waits for it). */
  under(keys: string[], work: () => Promise<void>): Promise<void> {
    const p: Promise<void> = work().finally(() => {
      for (const k of keys) if (this.#inflight.get(k) === p) this.#inflight.delete(k);
    });
    for (const k of keys) this.#inflight.set(k, p);
    return p;
  }

  /** The work in flight under `key`, if any. */
  inflight(key: string): Promise<void> | undefined {
    return this.#inflight.get(key);
  }

  /**
   * Makes sure directory `rel` is listed (its entries exist in the skeleton); `via` a given link;
   * `background`: pre-listing (A answers it after foreground requests), else a foreground request.
   */
  async list(rel: string, via?: Remote, background = false): Promise<void> {
    const m = this.state.meta.get(rel);
    if (m?.listed) return;
    // A unreachable: a directory the cache knows is served as it is (revalidated once A is back).
    if (!via && !this.pool.main && m?.known && existsSync(this.state.local(rel))) return;
    await this.once(`list:${rel}`, async () => {
      const since = this.state.ackMark;
      const names = new Set<string>();
      const all: Entry[] = [];
      let touched = false;
      mkdirSync(this.state.local(rel), { recursive: true });
      const here = new Set(readdirSync(this.state.local(rel)));
      const apply = (entries: Entry[]) => {
        for (const e of entries) names.add(e.name);
        touched = this.#apply(rel, entries, since, here) || touched;
        if (all.length < 100_000) all.push(...entries);
      };
      const reply = await (via ?? this.pool.remoteOrEio()).request({ op: "list", path: rel, ...(background ? { bg: true } : {}) }, undefined, {
        onPart: (h) => apply(h.entries as Entry[]),
      });
      apply(reply.head.entries as Entry[]);
      this.#finish(rel, names, since, all, touched);
    });
  }

  /**
   * Applies entries of a listing of `rel` requested at acknowledgement mark `since`; whether it
   * changed the directory. `here` holds the names the local directory had (only those are looked at).
   */
  #apply(rel: string, entries: Entry[], since: number, here: Set<string>): boolean {
    const dir = this.state.local(rel);
    let touched = false;
    for (const e of entries) {
      if (typeof e?.name !== "string" || e.name === "" || e.name === "." || e.name === ".." || e.name.includes("/")) continue;
      const child = childOf(rel, e.name);
      if (this.state.busyUnder(child) || this.state.ackedSince(since, child)) {
        if (this.state.meta.get(child)?.version !== e.version) this.hooks.skipped(child);
        continue; // B's own change wins until it is sent
      }
      touched = this.#entry(join(dir, e.name), child, e, here.has(e.name)) || touched;
    }
    return touched;
  }

  /**
   * The end of a listing: what A no longer has goes — unless it is busy, or was made on B a moment
   * ago and is not even journaled yet (nothing is known of it) — and a directory the listing
   * changed gets A's mtime back (one it left alone keeps its times: a program reading it, tar,
   * sees no change).
   */
  #finish(rel: string, names: Set<string>, since: number, entries: Entry[], touched: boolean): void {
    const dir = this.state.local(rel);
    for (const name of readdirSync(dir)) {
      const child = childOf(rel, name);
      if (names.has(name) || !this.state.meta.get(child) || this.state.busyUnder(child) || this.state.ackedSince(since, child)) continue;
      rmSync(join(dir, name), { recursive: true, force: true });
      this.state.forget(child);
      touched = true;
    }
    const m = this.state.m(rel);
    if (touched && m.mtimeMs !== undefined) utimesSync(dir, m.mtimeMs / 1000, m.mtimeMs / 1000);
    m.listed = true;
    m.known = true;
    this.state.listedInSession.add(rel);
    this.state.save();
    this.hooks.listed(rel, entries);
  }

  /** Makes the local entry at `path` (export path `rel`) match A's entry `e`; whether it made or removed one. */
  #entry(path: string, rel: string, e: Entry, mayExist: boolean): boolean {
    const local: Stats | null = mayExist ? lstatSync(path, { throwIfNoEntry: false }) ?? null : null;
    const localType = local ? (local.isDirectory() ? "d" : local.isSymbolicLink() ? "l" : "f") : null;
    const m = this.state.m(rel);
    if (localType === "d" && e.type === "d") {
      m.mtimeMs = e.mtimeMs;
      m.version = e.version;
      if ((local!.mode & 0o7777) !== (e.mode | 0o700)) chmodSync(path, e.mode | 0o700);
      return false;
    }
    if (localType === "l" && e.type === "l" && readlinkSync(path) === e.target) {
      m.version = e.version;
      return false;
    }
    if (localType === "f" && e.type === "f" && m.version === e.version) {
      if (m.racy && m.fetched) m.recheck = true;
      // A's identity appears only in the directory's first listing of the session, before any
      // program of the session looked at the file; later listings change only the mark.
      this.state.trust(rel);
      if (!this.state.modifiedOnB(local!, m)) this.state.recordIdentity(rel, this.state.listedInSession.has(parentOf(rel)));
      return false;
    }
    if (localType === "f" && e.type === "f" && this.state.modifiedOnB(local!, m)) return false;
    if (localType === "f" && e.type === "f" && m.fetched && this.state.watched.has(rel)) {
      // A program watches it (tail -f): the new content goes into the same inode, so the watch
      // sees IN_MODIFY and a reader's descriptor reads on, as for a local file.
      this.hooks.refresh(rel, e);
      return false;
    }
    if (localType) {
      rmSync(path, { recursive: true, force: true });
      this.state.forget(rel);
    }
    const fresh = this.state.m(rel);
    fresh.version = e.version;
    fresh.mtimeMs = e.mtimeMs;
    if (e.type === "d") {
      mkdirSync(path, { mode: e.mode | 0o700 });
      chmodSync(path, e.mode | 0o700);
      utimesSync(path, e.mtimeMs / 1000, e.mtimeMs / 1000);
    } else if (e.type === "l") {
      symlinkSync(e.target ?? "", path);
    } else {
      // A placeholder with A's size, mode and mtime: stat is right before any fetch.
      const f = Deno.openSync(path, { createNew: true, write: true, mode: 0o600 });
      try {
        if (e.size > 0) f.truncateSync(e.size);
        const t = new Date(e.mtimeMs); // whole milliseconds: what B's stat shows back
        f.utimeSync(t, t);
      } finally {
        f.close();
      }
      Deno.chmodSync(path, e.mode);
      fresh.size = e.size;
      fresh.fetched = e.size === 0;
      this.state.recordIdentity(rel);
    }
    return true;
  }

  /** Makes sure every ancestor of `rel` is listed; throws ENOENT when `rel` does not exist. */
  async lookup(rel: string): Promise<void> {
    // Its directory listed in this session: every ancestor was, on the way to it.
    if (rel !== "." && this.state.meta.get(parentOf(rel))?.listed) {
      if (!lstatSync(this.state.local(rel), { throwIfNoEntry: false })) throw new FsError("ENOENT", `No such file or directory: ${rel}`);
      return;
    }
    const parts = rel === "." ? [] : rel.split("/");
    let dir = ".";
    for (let i = 0; i < parts.length; i++) {
      await this.list(dir);
      dir = childOf(dir, parts[i]);
      if (i < parts.length - 1) {
        const st = await stat(this.state.local(dir)).catch(() => null);
        if (!st) throw new FsError("ENOENT", `No such file or directory: ${rel}`);
        if (!st.isDirectory()) throw new FsError("ENOTDIR", `Not a directory: ${dir}`);
      }
    }
    if (!(await lstat(this.state.local(rel)).catch(() => null))) throw new FsError("ENOENT", `No such file or directory: ${rel}`);
  }

  /** Makes sure the parent of `rel` exists and is listed (before a change that makes `rel`). */
  async parentListed(rel: string): Promise<void> {
    const parent = parentOf(rel);
    await this.lookup(parent);
    await this.list(parent);
  }

  /** Lists a whole subtree locally, directory by directory (for directory renames). */
  async listTree(rel: string): Promise<void> {
    await this.list(rel);
    for (const e of readdirSync(this.state.local(rel), { withFileTypes: true })) {
      if (e.isDirectory()) await this.listTree(childOf(rel, e.name));
    }
  }

  /** TREE request: the whole subtree of a directory listed, in one streamed request when it is not yet. */
  async listSubtree(rel: string): Promise<void> {
    await this.lookup(rel);
    if (!(await stat(this.state.local(rel))).isDirectory()) return;
    if (!this.state.meta.get(rel)?.listed) {
      await this.once(`tree:${rel}`, async () => {
        const since = this.state.ackMark;
        let cur: { dir: string; names: Set<string>; entries: Entry[]; touched: boolean; here: Set<string> } | undefined;
        const close = () => {
          if (cur) this.#finish(cur.dir, cur.names, since, cur.entries, cur.touched);
          cur = undefined;
        };
        const part = (h: Record<string, unknown>) => {
          const dir = String(h.dir), entries = h.entries as Entry[];
          if (h.first === true || cur?.dir !== dir) {
            close();
            // Listed already, or being listed on its own: left to that.
            if (this.state.meta.get(dir)?.listed || this.#inflight.has(`list:${dir}`)) return;
            try {
              mkdirSync(this.state.local(dir), { recursive: true });
            } catch {
              return;
            }
            cur = { dir, names: new Set(), entries: [], touched: false, here: new Set(readdirSync(this.state.local(dir))) };
          }
          if (!cur) return;
          for (const e of entries) cur.names.add(e.name);
          if (cur.entries.length < 100_000) cur.entries.push(...entries);
          cur.touched = this.#apply(dir, entries, since, cur.here) || cur.touched;
        };
        await this.pool.remoteOrEio().request({ op: "tree", path: rel }, undefined, { onPart: part });
        close();
      });
    }
    await this.listTree(rel);
  }
}
