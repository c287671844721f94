/**
 * The XUFS cache manager on host B (docs/XUFS.md): a local skeleton of A's export, B's changes
 * journaled durably and sent to A in order, answering libxufs.so. This module composes the parts,
 * one job each: what is known of each path (state.ts), listings (listings.ts), transfers
 * (transfers.ts), pre-caching (precache.ts), change callbacks (callbacks.ts), B's changes and
 * the files open for writing (changes.ts), the durable journal (journal.ts) and its sender
 * (sender.ts), the links to A and their re-attachment (links.ts), and the socket for libxufs.so
 * (preload.ts). It also owns the cache directory: one session at a time holds it (a lock), and a
 * session finds the journals that other sessions to the same export left behind and sends them.
 */
import { join } from "node:path";
import { copyFile, mkdir } from "node:fs/promises";
import type { Remote } from "../remote.ts";
import { ChangeCallbacks } from "./callbacks.ts";
import { Changes } from "./changes.ts";
import { type Ack, INLINE_MAX, Journal, type Op } from "./journal.ts";
import { LinkPool } from "./links.ts";
import { Listings } from "./listings.ts";
import { Precacher } from "./precache.ts";
import { answer, servePreload } from "./preload.ts";
import { JournalSender } from "./sender.ts";
import { CacheState, parentOf } from "./state.ts";
import { Transfers } from "./transfers.ts";

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
  /** Dials link `slot` again after it was lost (tunnel and local sessions; with --notun A dials). */
  dial?: (slot: number) => Promise<Remote>;
  /** A says it now offers `count` links in all (adaptive striping): the new ones are to be connected. */
  onLinks?: (count: number) => void;
}

/** Defaults of the transfer knobs. */
export const TRANSFER_DEFAULTS = {
  stripeSize: 4 << 20,
  stripeMin: 8 << 20,
  precacheMax: 64 << 10,
  precacheJobs: 4,
  precacheBytes: 64 << 20,
};

/** How long the end of a session waits for a lost link before it leaves the journal for the next one. */
const DRAIN_GIVE_UP_MS = 30_000;

/** A cache directory held by this session (see lockCache). */
export interface HeldCache {
  dir: string;
  release(): void;
}

/**
 * The cache directory of export `id` under `base` for this session: ID itself, or — while other
 * sessions on this host hold it — ID.2, ID.3, …; each held with a lock until released.
 */
export async function lockCache(base: string, id: string): Promise<HeldCache> {
  for (let n = 1; n <= 64; n++) {
    const dir = join(base, n === 1 ? id : `${id}.${n}`);
    const held = await holdIfFree(dir);
    if (held) return held;
  }
  throw new Error(`Too many sessions hold the caches of ${id}`);
}

/** Locks `dir` (making it) unless another session holds it. */
async function holdIfFree(dir: string): Promise<HeldCache | null> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const f = await Deno.open(join(dir, "lock"), { read: true, write: true, create: true, mode: 0o600 });
  if (!(await f.tryLock(true))) {
    f.close();
    return null;
  }
  return { dir, release: () => f.close() };
}

/** The cache manager of one export. */
export class CacheManager {
  readonly state: CacheState;
  readonly pool: LinkPool;
  readonly listings: Listings;
  readonly transfers: Transfers;
  readonly precacher: Precacher;
  readonly callbacks: ChangeCallbacks;
  changes!: Changes;
  journal!: Journal;
  sender!: JournalSender;
  #adopted: { sender: JournalSender; held: HeldCache }[] = [];
  #log: (line: string) => void;
  #t: typeof TRANSFER_DEFAULTS;

  constructor(readonly opts: CacheOptions) {
    this.#log = opts.log ?? ((l) => console.error(`xufs: ${l}`));
    this.#t = { ...TRANSFER_DEFAULTS };
    for (const k of Object.keys(TRANSFER_DEFAULTS) as (keyof typeof TRANSFER_DEFAULTS)[]) {
      if (opts[k] !== undefined) this.#t[k] = opts[k]!;
    }
    this.state = new CacheState(opts.dir, this.#log);
    this.pool = new LinkPool({
      log: this.#log,
      dial: opts.dial,
      onMain: (_, again) => this.#attached(again),
      onNotice: (h) => (h.op === "links" && Number.isSafeInteger(h.count) ? this.opts.onLinks?.(h.count as number) : this.callbacks.notice(h)),
    });
    this.listings = new Listings(this.state, this.pool, {
      listed: (rel, entries) => this.precacher.listed(rel, entries),
      skipped: (rel) => this.changes?.skipped(rel),
      refresh: (rel, e) => this.transfers.refresh(rel, e),
    });
    this.transfers = new Transfers(this.state, this.pool, this.listings, { ...this.#t, progress: opts.progress ?? false });
    this.precacher = new Precacher(this.state, this.pool, this.listings, this.transfers, this.#t);
    this.callbacks = new ChangeCallbacks(this.state, this.listings, this.precacher);
  }

  /** This session's mark for libxufs.so (XUFS_MARK): see xufs/cache/identity.ts. */
  get mark(): string {
    return this.state.identities.markHex;
  }

  /** The cache tree. */
  get tree(): string {
    return this.state.tree;
  }

  /**
   * Loads state, opens the journal (what earlier sessions left is sent first), and — when the
   * last session did not end cleanly — journals what the cache holds but the journal does not.
   */
  async init(): Promise<void> {
    await mkdir(this.state.tree, { recursive: true, mode: 0o700 });
    await this.state.load();
    const queue = join(this.opts.dir, "queue");
    this.journal = await Journal.open(queue, this.#log);
    this.sender = this.#senderFor(this.journal, (op, ack) => this.changes.answered(op, ack));
    this.changes = new Changes(this.state, this.listings, this.transfers, this.journal, {
      kick: () => this.sender.kick(),
      relist: (paths) => this.callbacks.changed(paths.map(parentOf).concat(paths)),
      log: this.#log,
    }, Math.min(INLINE_MAX, this.#t.stripeMin - 1));
    const legacy = await this.changes.importLegacy(queue);
    const clean = join(this.opts.dir, "clean");
    const wasClean = await Deno.remove(clean).then(() => true, () => false);
    const used = this.state.meta.size > 0;
    const scanned = !wasClean && used ? await this.changes.rescan() : 0;
    if (scanned) this.#log(`${scanned} change(s) found in the cache that an earlier session did not journal; sending them`);
    const left = this.journal.pending.length - scanned;
    if (left > 0 || legacy) this.#log(`${left} change(s) from an earlier session are queued for host A`);
    await this.#adopt();
  }

  #senderFor(journal: Journal, onAck: (op: Op, ack: Ack) => void): JournalSender {
    return new JournalSender(journal, this.pool, this.transfers, {
      from: this.opts.from,
      stripeMin: this.#t.stripeMin,
      log: this.#log,
      onAck,
      keep: (op, content) => this.#keep(journal, op, content),
    });
  }

  /** Keeps B's content of a change A could not apply beside the journal, in failed/. */
  async #keep(journal: Journal, op: Op, content: Uint8Array | null): Promise<string | undefined> {
    if (content === null) return undefined;
    const dir = join(this.opts.dir, "failed");
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const path = join(dir, `${String(op.seq).padStart(6, "0")}-${op.path.replaceAll("/", "%")}`);
    if (op.data === "file") await copyFile(journal.dataPath(op.seq), path);
    else await Deno.writeFile(path, content, { mode: 0o600 });
    return path;
  }

  /** Journals that other sessions to this export left (in caches they no longer hold) are sent too. */
  async #adopt(): Promise<void> {
    const base = join(this.opts.dir, "..");
    const id = this.opts.dir.slice(base.length + 1).replace(/\.\d+$/, "");
    for await (const e of Deno.readDir(base)) {
      const dir = join(base, e.name);
      if (dir === this.opts.dir || (e.name !== id && !e.name.startsWith(`${id}.`))) continue;
      const held = await holdIfFree(dir).catch(() => null);
      if (!held) continue;
      const journal = await Journal.open(join(dir, "queue"), this.#log);
      if (journal.pending.length === 0) {
        journal.close();
        held.release();
        continue;
      }
      this.#log(`${journal.pending.length} change(s) left by another session in ${dir} are queued for host A`);
      this.#adopted.push({ sender: this.#senderFor(journal, () => {}), held });
    }
  }

  /**
   * A main link answers: send what is queued; after a loss, revalidate what is cached first (a
   * session's first link needs none: nothing is listed yet).
   */
  #attached(again: boolean): void {
    if (again) {
      this.state.unlistAll();
      this.precacher.reset();
    }
    this.sender.kick();
    for (const a of this.#adopted) a.sender.kick();
  }

  /** Attaches a link to A (the main one if there is none up). */
  attach(remote: Remote): void {
    this.pool.add(remote, this.opts.dial ? 0 : undefined);
  }

  /** Adds a further link to A (its own TCP connection) for striped transfers and pre-caching. */
  addLink(remote: Remote, slot?: number): void {
    this.pool.add(remote, slot);
  }

  /** Links that are up: the main one first. */
  get links(): Remote[] {
    return this.pool.links;
  }

  /** Makes sure directory `rel` is listed. */
  list(rel: string, via?: Remote): Promise<void> {
    return this.listings.list(rel, via);
  }

  /** Makes sure every ancestor of `rel` is listed; ENOENT when `rel` does not exist. */
  lookup(rel: string): Promise<void> {
    return this.listings.lookup(rel);
  }

  /** Makes sure a file's content is cached. */
  fetch(rel: string): Promise<void> {
    return this.transfers.fetch(rel);
  }

  /** Lists the subdirectories of `rel` in the background (a program entered it). */
  prelist(rel: string): void {
    this.precacher.prelist(rel);
  }

  /** Number of changes not yet answered by A (this session's journal and adopted ones). */
  get queued(): number {
    return this.journal.pending.length + this.#adopted.reduce((n, a) => n + a.sender.left, 0);
  }

  /** Bytes of content not yet answered by A. */
  get queuedBytes(): number {
    return this.journal.bytesLeft + this.#adopted.reduce((n, a) => n + a.sender.journal.bytesLeft, 0);
  }

  /**
   * Waits until every journal is empty, or a link has been lost for DRAIN_GIVE_UP_MS, or
   * `stop()` says so; `progress` is told what is left meanwhile. Returns what is still queued.
   */
  async drain(o: { stop?: () => boolean; progress?: (changes: number, bytes: number) => void; timeoutMs?: number } = {}): Promise<number> {
    const end = Date.now() + (o.timeoutMs ?? Infinity);
    await this.changes.sweepNow();
    for (;;) {
      this.sender.kick();
      for (const a of this.#adopted) a.sender.kick();
      if (this.queued === 0 || o.stop?.() || Date.now() >= end) break;
      const down = this.pool.downSince;
      if (down && Date.now() - down > DRAIN_GIVE_UP_MS) break;
      if (!this.pool.main && !this.opts.dial && !down) break; // never attached
      o.progress?.(this.queued, this.queuedBytes);
      await new Promise((r) => setTimeout(r, Math.min(200, Math.max(1, end - Date.now()))));
    }
    await this.journal.settle();
    await this.saveNow().catch(() => {});
    return this.queued;
  }

  /** Waits until the queue is empty or `timeoutMs` passed; returns what is still queued. */
  flush(timeoutMs: number): Promise<number> {
    return this.drain({ timeoutMs });
  }

  /** Answers one request line from libxufs.so; returns the reply line. */
  answer(line: string): Promise<string> {
    return answer(this.#handlers, line);
  }

  /** Serves libxufs.so on a Unix socket (mode 0600) until the listener is closed. */
  servePreload(listener: Deno.Listener): Promise<void> {
    return servePreload(this.#handlers, listener);
  }

  #handlers = {
    lookup: (rel: string) => this.listings.lookup(rel),
    enter: async (rel: string) => {
      await this.listings.lookup(rel);
      await this.listings.list(rel);
      this.precacher.prelist(rel);
    },
    tree: (rel: string) => this.listings.listSubtree(rel),
    fetch: (rel: string) => this.transfers.fetch(rel),
    watch: async (rel: string) => {
      await this.transfers.fetch(rel);
      this.state.watched.add(rel);
    },
    change: (op: string, args: string[]) => this.changes.change(op, args),
    log: (line: string) => this.#log(line),
  };

  /** Writes meta.json now. */
  saveNow(): Promise<void> {
    return this.state.saveNow();
  }

  /**
   * Ends the session's use of the cache: links closed, state saved, the journals closed, adopted
   * caches released; marked clean when every change B made is in the journal (nothing for the
   * next session's scan to find).
   */
  async close(): Promise<void> {
    this.pool.close();
    this.changes?.close();
    await this.journal?.settle();
    await this.saveNow().catch(() => {});
    if (this.changes && !this.changes.unclean && !this.changes.anyOpen) {
      await Deno.writeTextFile(join(this.opts.dir, "clean"), "").catch(() => {});
    }
    this.journal?.close();
    for (const a of this.#adopted) {
      a.sender.journal.close();
      a.held.release();
    }
  }
}
