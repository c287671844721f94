/**
 * Pre-caching on B: listing a directory queues its small unfetched files for background
 * fetching in batches (`readmany`), and entering a directory lists its subdirectories in the
 * background, one level ahead of walkers; both on the further links when there are any, so a
 * program's own requests never queue behind them, within XUFS_PRECACHE_* bounds. Its requests
 * are of the background class (A answers them after foreground requests and ranges), and no new
 * one starts while a program's fetch is in flight: a foreground read preempts pre-caching (a
 * program's listings do not: pre-listing runs ahead of a walker while it waits for them).
 */
import { lstat, readdir } from "node:fs/promises";
import type { Entry } from "../messages.ts";
import type { Remote } from "../remote.ts";
import type { LinkPool } from "./links.ts";
import type { Listings } from "./listings.ts";
import { type CacheState, childOf } from "./state.ts";
import { type Transfers, writeAt } from "./transfers.ts";

/** Files and bytes in one pre-cache request. */
const PRECACHE_BATCH_FILES = 256, PRECACHE_BATCH_BYTES = 1 << 20;

/** The pre-caching knobs (XUFS_PRECACHE_MAX, _JOBS, _BYTES). */
export interface PrecacheKnobs {
  precacheMax: number;
  precacheJobs: number;
  precacheBytes: number;
}

/** Background fetching of small files and listing of subdirectories. */
export class Precacher {
  #files: { rel: string; size: number }[] = [];
  #bytes = 0;
  #active = 0;
  #dirs: string[] = [];
  #prelisted = new Set<string>();

  constructor(
    private readonly state: CacheState,
    private readonly pool: LinkPool,
    private readonly listings: Listings,
    private readonly transfers: Transfers,
    private readonly knobs: PrecacheKnobs,
  ) {
    pool.onForegroundIdle(() => this.#pump());
  }

  /** Forgets which directories were pre-listed (after a re-attach, or a change in `rel`). */
  reset(rel?: string): void {
    if (rel === undefined) this.#prelisted.clear();
    else this.#prelisted.delete(rel);
  }

  /** Queues the small unfetched files of a just-listed directory for background fetching. */
  listed(rel: string, entries: Entry[]): void {
    if (this.knobs.precacheMax <= 0) return;
    for (const e of entries) {
      if (e.type !== "f" || e.size === 0 || e.size > this.knobs.precacheMax) continue;
      const child = childOf(rel, e.name);
      const m = this.state.meta.get(child);
      if (!m || m.fetched || m.version !== e.version || this.state.isBusy(child)) continue;
      if (this.#bytes + e.size > this.knobs.precacheBytes) break;
      this.#files.push({ rel: child, size: e.size });
      this.#bytes += e.size;
    }
    this.#pump();
  }

  /**
   * Entering directory `rel` (a program's LIST) lists its subdirectories in the background, one
   * level ahead of a walker, each listing pre-caching its own small files in turn.
   */
  prelist(rel: string): void {
    if (this.knobs.precacheMax <= 0 || this.#prelisted.has(rel)) return;
    this.#prelisted.add(rel);
    (async () => {
      for (const e of await readdir(this.state.local(rel), { withFileTypes: true })) {
        const child = childOf(rel, e.name);
        if (e.isDirectory() && !this.state.meta.get(child)?.listed) this.#dirs.push(child);
      }
      this.#pump();
    })().catch(() => {});
  }

  #pump(): void {
    if (this.pool.foregroundBusy) return; // resumed when the last foreground fetch ends
    while (this.#active < this.knobs.precacheJobs && this.#dirs.length) {
      const dir = this.#dirs.shift()!;
      const link = this.pool.background();
      if (!link) break;
      this.#active++;
      this.listings.list(dir, link, true).catch(() => {}).finally(() => {
        this.#active--;
        this.#pump();
      });
    }
    while (this.#active < this.knobs.precacheJobs && this.#files.length) {
      const batch: { rel: string; size: number }[] = [];
      let bytes = 0;
      while (this.#files.length && batch.length < PRECACHE_BATCH_FILES && bytes + this.#files[0].size <= PRECACHE_BATCH_BYTES) {
        const item = this.#files.shift()!;
        this.#bytes -= item.size;
        const m = this.state.meta.get(item.rel);
        if (!m || m.fetched || this.state.isBusy(item.rel) || this.listings.inflight(`pre:${item.rel}`)) continue;
        batch.push(item);
        bytes += item.size;
      }
      if (batch.length === 0) continue;
      const link = this.pool.background();
      if (!link) {
        this.#files = [];
        this.#bytes = 0;
        return;
      }
      this.#active++;
      const work = this.listings.under(batch.map((b) => `pre:${b.rel}`), () => this.#batch(link, batch.map((b) => b.rel)));
      work.catch(() => {}).finally(() => {
        this.#active--;
        this.#pump();
      });
    }
  }

  async #batch(link: Remote, paths: string[]): Promise<void> {
    const reply = await link.request({ op: "readmany", paths, bg: true });
    let off = 0;
    for (const f of reply.head.files as { path: string; version?: string; size?: number; error?: string; racy?: boolean; contentSha256?: string }[]) {
      if (f.error || f.size === undefined) continue;
      const data = reply.payload.subarray(off, off + f.size);
      off += f.size;
      const m = this.state.meta.get(f.path);
      // Only a placeholder still untouched and of this very version is filled.
      if (!m || m.fetched || m.version !== f.version || this.state.isBusy(f.path)) continue;
      const local = this.state.local(f.path);
      const st = await lstat(local).catch(() => null);
      if (!st?.isFile() || this.state.modifiedOnB(st, m)) continue;
      if (await this.transfers.fill(local, st, f.size, (h) => writeAt(h, data, 0), true)) {
        const now = await lstat(local);
        Object.assign(m, { fetched: true, mtimeMs: now.mtimeMs, size: now.size, racy: f.racy || undefined, sha256: f.contentSha256 });
        this.state.identities.record(local, m, true);
      }
    }
    this.state.save();
  }
}
