/**
 * What B's cache manager knows of each path of its export (meta.json, saved lazily), and which
 * paths are busy: with changes in the journal not yet applied on A, or open for writing by a
 * program on B. A busy path is B's: listings from A never replace or remove it, and its version
 * from A changes only with the answers to B's own changes — so the version a change is based on
 * is the one B opened (issue 11). Also which files carry A's identity (xufs/cache/identity.ts).
 */
import type { Stats } from "node:fs";
import { join } from "node:path";
import { writeFileAtomic } from "../../common/fs.ts";
import { Identities } from "./identity.ts";

/** What the manager knows of one path. */
export interface Meta {
  /** Version of A's file that the local content (or placeholder) corresponds to; none: made on B. */
  version?: string;
  /** SHA-256 of that content, when the version is racy (see xufs/reads.ts). */
  sha256?: string;
  /** The version was racy when B got it... */
  racy?: boolean;
  /** ...and a listing since showed the same version: A's content is compared before it is trusted. */
  recheck?: boolean;
  fetched?: boolean;
  /** Listed in this session (never saved as true). */
  listed?: boolean;
  /** A directory whose entries the cache holds from some listing (served as it is while A is away). */
  known?: boolean;
  /** A file's local mtime and size when it matched `version`; a directory's mtime on A. */
  mtimeMs?: number;
  size?: number;
  /** The version whose identity (A's inode and times) the cache file carries, and its mark (xufs/cache/identity.ts). */
  identity?: string;
  /** B's content differs from `version` and is not journaled yet (a file made on B renamed over this one). */
  dirty?: boolean;
}

/** How long after a change meta.json is written. */
const SAVE_AFTER_MS = 1000;

/** The parent of an export-relative path ("." for top-level names and the root). */
export function parentOf(rel: string): string {
  const i = rel.lastIndexOf("/");
  return i < 0 ? "." : rel.slice(0, i);
}

/** `name` inside directory `dir` ("." is the root). */
export function childOf(dir: string, name: string): string {
  return dir === "." ? name : `${dir}/${name}`;
}

/** Whether `rel` is `root` or lies under it. */
export function isUnder(rel: string, root: string): boolean {
  return root === "." || rel === root || rel.startsWith(root + "/");
}

/** Metas by path, with each directory's children indexed, so a subtree is found without a scan. */
export class MetaMap {
  #all = new Map<string, Meta>();
  #kids = new Map<string, Set<string>>();

  get(rel: string): Meta | undefined {
    return this.#all.get(rel);
  }

  set(rel: string, m: Meta): void {
    if (!this.#all.has(rel) && rel !== ".") {
      const p = parentOf(rel);
      let k = this.#kids.get(p);
      if (!k) this.#kids.set(p, (k = new Set()));
      k.add(rel);
    }
    this.#all.set(rel, m);
  }

  /** `rel` and everything under it (depth first, `rel` first). */
  *subtree(rel: string): Generator<[string, Meta]> {
    const m = this.#all.get(rel);
    if (m) yield [rel, m];
    for (const k of this.#kids.get(rel) ?? []) yield* this.subtree(k);
  }

  /** Removes `rel` and everything under it. */
  deleteTree(rel: string): void {
    for (const [k] of [...this.subtree(rel)]) {
      this.#all.delete(k);
      this.#kids.delete(k);
      if (k !== ".") this.#kids.get(parentOf(k))?.delete(k);
    }
  }

  values(): IterableIterator<Meta> {
    return this.#all.values();
  }

  entries(): IterableIterator<[string, Meta]> {
    return this.#all.entries();
  }

  get size(): number {
    return this.#all.size;
  }
}

/** The per-path state of one cache. */
export class CacheState {
  readonly tree: string;
  readonly meta = new MetaMap();
  /** Busy paths, counted (journal entries touching them + 1 while open for writing). */
  #busy = new Map<string, number>();
  /** For every ancestor of a busy path: how many busy paths lie under it. */
  #under = new Map<string, number>();
  /** Paths of changes A acknowledged, numbered, newest last (see busySince). */
  #acked: { n: number; path: string }[] = [];
  #ackN = 0;
  #saveTimer?: ReturnType<typeof setTimeout>;

  /**
   * Paths B changed in this session: they keep B's own stat values until the next session, as
   * a program may be between a stat and an fstat of one of them (cp: "replaced while being
   * copied") when A's answer arrives.
   */
  readonly changedHere = new Set<string>();
  /** Directories listed at least once in this session. */
  readonly listedInSession = new Set<string>();
  /** Files programs watch (inotify) in this session: refreshed in place when A changes them. */
  readonly watched = new Set<string>();
  /** A's identity of cache files (inode and times that stat on B reports). */
  readonly identities: Identities;

  constructor(readonly dir: string, log: (line: string) => void = () => {}) {
    this.tree = join(dir, "tree");
    this.identities = new Identities(log);
  }

  /** A announced a change of `rel`: opens ask the manager again until it is checked. */
  distrust(rel: string): void {
    const m = this.meta.get(rel);
    if (!m?.identity) return;
    this.identities.distrusted.add(this.local(rel));
    this.identities.record(this.local(rel), m, true);
  }

  /** `rel` was checked against A (listed, or fetched): its record may carry the mark again. */
  trust(rel: string): void {
    this.identities.distrusted.delete(this.local(rel));
  }

  /** Records A's identity of the file `rel` when its cache file is still what B has from A (markOnly: see Identities.record). */
  recordIdentity(rel: string, markOnly = false): void {
    if (!this.changedHere.has(rel) && this.identities.record(this.local(rel), this.m(rel), markOnly)) this.save();
  }

  /** Loads meta.json (nothing is listed yet in this session). */
  async load(): Promise<void> {
    try {
      const saved = JSON.parse(await Deno.readTextFile(join(this.dir, "meta.json")));
      for (const [k, v] of Object.entries(saved)) this.meta.set(k, { ...(v as Meta), listed: false });
    } catch { /* first session, or lost: everything is refetched as needed */ }
  }

  /** The cache path of `rel`. */
  local(rel: string): string {
    return rel === "." ? this.tree : join(this.tree, rel);
  }

  /** The meta of `rel`, made when missing. */
  m(rel: string): Meta {
    let m = this.meta.get(rel);
    if (!m) this.meta.set(rel, (m = {}));
    return m;
  }

  /** Forgets `rel` and everything under it. */
  forget(rel: string): void {
    this.meta.deleteTree(rel);
    this.save();
  }

  /** Moves the meta of `from` and everything under it to `to` (whose own is dropped). */
  move(from: string, to: string): void {
    this.meta.deleteTree(to);
    const moved = [...this.meta.subtree(from)];
    this.meta.deleteTree(from);
    for (const [k, v] of moved) this.meta.set(to + k.slice(from.length), v);
    this.save();
  }

  /** Marks every directory unlisted: the next use lists it again (a new session, a re-attach). */
  unlistAll(): void {
    for (const m of this.meta.values()) m.listed = false;
  }

  /** Writes meta.json soon. */
  save(): void {
    if (this.#saveTimer === undefined) this.#saveTimer = setTimeout(() => this.saveNow().catch(() => {}), SAVE_AFTER_MS);
  }

  /** Writes meta.json now. */
  async saveNow(): Promise<void> {
    clearTimeout(this.#saveTimer);
    this.#saveTimer = undefined;
    const out: Record<string, Meta> = {};
    for (const [k, v] of this.meta.entries()) {
      const { listed: _, recheck: _r, ...rest } = v;
      out[k] = rest;
    }
    await writeFileAtomic(join(this.dir, "meta.json"), JSON.stringify(out));
  }

  // ---- busy paths ----

  /** Counts `rel` busy (`d` = +1) or less busy (-1); a -1 is also an acknowledgement by A (see busySince). */
  busy(rel: string, d: number, acked = false): void {
    if (acked) this.#acked.push({ n: ++this.#ackN, path: rel });
    if (this.#acked.length > 200_000) this.#acked.splice(0, 100_000);
    const n = (this.#busy.get(rel) ?? 0) + d;
    if (n > 0) this.#busy.set(rel, n);
    else this.#busy.delete(rel);
    for (let p = rel; p !== "."; ) {
      p = parentOf(p);
      const u = (this.#under.get(p) ?? 0) + d;
      if (u > 0) this.#under.set(p, u);
      else this.#under.delete(p);
    }
  }

  /** Whether `rel` itself is busy. */
  isBusy(rel: string): boolean {
    return this.#busy.has(rel);
  }

  /** Whether `rel` or anything under it is busy. */
  busyUnder(rel: string): boolean {
    return this.#busy.has(rel) || this.#under.has(rel);
  }

  /** Number of busy paths. */
  get busyCount(): number {
    return this.#busy.size;
  }

  /** The acknowledgement counter, to pass to busySince later. */
  get ackMark(): number {
    return this.#ackN;
  }

  /**
   * Whether `rel` or anything under it had a change acknowledged after mark `since`: a listing
   * requested before then may have been made before the change was applied (links are separate
   * streams), so it must not undo it on B.
   */
  ackedSince(since: number, rel: string): boolean {
    for (let i = this.#acked.length - 1; i >= 0 && this.#acked[i].n > since; i--) {
      if (isUnder(this.#acked[i].path, rel)) return true;
    }
    return false;
  }

  /**
   * Whether a cached file was changed on B since it was listed or fetched: its mtime moved (by
   * more than the rounding of setting a time from milliseconds through a float) or its size.
   */
  modifiedOnB(st: Stats, m: Meta): boolean {
    if (m.dirty) return true;
    if (m.mtimeMs === undefined) return false;
    return Math.abs(st.mtimeMs - m.mtimeMs) > 1 || (m.size !== undefined && st.size !== m.size);
  }
}
