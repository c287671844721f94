/**
 * Transfers of B's cache: a file's content fetched whole on first open, written into its
 * placeholder in place (same inode, so programs comparing stat results see no change); files
 * from stripeMin on as ranges over every link at once, each range checked (SHA-256, one version,
 * the listed size); and the range mover that ranged write-backs use too. A file fetched while it
 * was racy on A (see xufs/reads.ts) is checked once more before its cached content is trusted
 * again. No transfer has a deadline of its own: a link is lost only when nothing moves on it.
 */
import type { Stats } from "node:fs";
import { chmod, type FileHandle, open, stat, utimes } from "node:fs/promises";
import { sha256 } from "../../common/bytes.ts";
import { FsError } from "../fserror.ts";
import type { Entry } from "../messages.ts";
import { Progress } from "../progress.ts";
import type { Remote } from "../remote.ts";
import { parseVersion } from "./identity.ts";
import type { LinkPool } from "./links.ts";
import type { Listings } from "./listings.ts";
import { type CacheState, type Meta, parentOf } from "./state.ts";

/** Ranges in flight per link, so a link never idles for a round trip between ranges. */
const RANGES_PER_LINK = 2;
/** Attempts of a fetch whose file changed on A while it travelled. */
const FETCH_ATTEMPTS = 3;

/** The transfer knobs. */
export interface TransferKnobs {
  stripeSize: number;
  stripeMin: number;
  progress: boolean;
}

/** A striped fetch met a file that changed on A. */
class Changed extends Error {}

/** Writes all of `data` at `offset`. */
export async function writeAt(f: FileHandle, data: Uint8Array, offset: number): Promise<void> {
  let off = 0;
  while (off < data.length) off += (await f.write(data, off, data.length - off, offset + off)).bytesWritten;
}

/** Moves file contents between A and B's cache. */
export class Transfers {
  constructor(
    private readonly state: CacheState,
    private readonly pool: LinkPool,
    private readonly listings: Listings,
    private readonly knobs: TransferKnobs,
  ) {}

  /** Makes sure a file's content is cached (following symlinks that stay in the export). */
  async fetch(rel: string): Promise<void> {
    const known = this.state.meta.get(rel);
    // Cached and its directory's listing still trusted: nothing to ask the disk or A.
    if (known?.fetched && !known.recheck && this.state.meta.get(parentOf(rel))?.listed) return this.state.recordIdentity(rel, true);
    await this.listings.lookup(rel);
    const real = await Deno.realPath(this.state.local(rel)).catch(() => null);
    const tree = this.state.tree;
    if (!real || !(real === tree || real.startsWith(tree + "/"))) return; // outside: B's own file
    const target = real === tree ? "." : real.slice(tree.length + 1);
    if (target !== rel) await this.listings.lookup(target);
    const st = await stat(real);
    if (st.isDirectory()) return await this.listings.list(target);
    const m = this.state.m(target);
    if (this.state.isBusy(target) || m.version === undefined) return; // B's own
    if (m.fetched && m.recheck) await this.#recheck(target, m);
    if (m.fetched) return this.state.identities.record(real, m, true) ? this.state.save() : undefined;
    const pre = this.listings.inflight(`pre:${target}`);
    if (pre) {
      await pre.catch(() => {});
      if (m.fetched) return;
    }
    // A foreground transfer: pre-caching starts nothing new until it ends.
    await this.listings.once(`fetch:${target}`, () => this.pool.foreground(() => this.#fetchNow(target, real, st, m)));
  }

  /** Fetches a file's content now: whole, or as ranges over every link. */
  async #fetchNow(target: string, real: string, st: Stats, m: Meta): Promise<void> {
    if (st.size >= this.knobs.stripeMin) return await this.#fetchRanges(target, real, st, m);
    for (let attempt = 1;; attempt++) {
      const reply = await this.pool.remoteOrEio().request({ op: "read", path: target });
      const h = reply.head;
      if (reply.payload.length !== h.size) throw new FsError("EIO", `Short read of ${target}: ${reply.payload.length} of ${h.size} bytes`);
      if (h.changed && attempt < FETCH_ATTEMPTS) continue;
      await this.fill(real, st, h.size, (f) => writeAt(f, reply.payload, 0));
      await this.#fetched(m, h.version, real, h.racy === true, h.contentSha256);
      return;
    }
  }

  /** Records a fetched version (and the local stat it now has). */
  async #fetched(m: Meta, version: string, real: string, racy: boolean, hash?: string): Promise<void> {
    const now = await stat(real);
    Object.assign(m, { version, fetched: true, racy: racy || undefined, sha256: hash, mtimeMs: now.mtimeMs, size: now.size, recheck: undefined });
    // (a file B changed in this session keeps its own stat values: see CacheState.changedHere)
    const rel = real.slice(this.state.tree.length + 1);
    this.state.trust(rel);
    this.state.recordIdentity(rel);
    this.state.save();
  }

  /**
   * A watched, cached file changed on A (listed as `e`): its new content replaces the old in the
   * same cache file, which then gets A's mtime. A file B holds open for writing, or one too big
   * to read in one request, is made a placeholder again instead (fetched at its next open).
   */
  refresh(rel: string, e: Entry): void {
    const real = this.state.local(rel);
    this.listings.once(`fetch:${rel}`, async () => {
      const m = this.state.m(rel);
      const st = await stat(real);
      if (this.state.isBusy(rel) || e.size >= this.knobs.stripeMin) {
        Object.assign(m, { fetched: false });
        this.state.identities.record(real, m);
        this.state.watched.delete(rel);
        return;
      }
      const reply = await this.pool.remoteOrEio().request({ op: "read", path: rel });
      const h = reply.head;
      if (reply.payload.length !== h.size) throw new FsError("EIO", `Short read of ${rel}: ${reply.payload.length} of ${h.size} bytes`);
      const a = parseVersion(String(h.version));
      if (!a) throw new FsError("EIO", `Bad version of ${rel}: ${h.version}`);
      const at = new Date(Number(a.mtimeNs / 1_000_000n));
      const now = { mode: st.mode, ino: st.ino, size: st.size, mtimeMs: st.mtimeMs, atime: at, mtime: at } as Stats;
      if (await this.fill(real, now, h.size, (f) => writeAt(f, reply.payload, 0))) await this.#fetched(m, h.version, real, h.racy === true, h.contentSha256);
    }).catch(() => {});
  }

  /**
   * A file fetched while racy, listed again with the same version: A may have changed it within
   * the same timestamp tick, so A's content is compared with what B has before it is trusted
   * (with A unreachable, the cached content is what there is).
   */
  async #recheck(target: string, m: Meta): Promise<void> {
    const link = this.pool.main;
    if (!link) return;
    try {
      const r = await link.request({ op: "stat", path: target, hash: true });
      if (m.sha256 !== undefined && r.head.sha256 === m.sha256) {
        m.version = r.head.entry.version;
        m.racy = r.head.racy === true || undefined;
      } else m.fetched = false;
    } catch (e) {
      if (!(e instanceof FsError) || e.code === "EIO") return;
      m.fetched = false;
    }
    m.recheck = undefined;
    this.state.recordIdentity(target, true);
    this.state.save();
  }

  /**
   * Fills a placeholder in place: same inode, and its directory is not touched, so programs
   * that compare stat results before and after (cp, tar) see no change.
   */
  async fill(real: string, st: Stats, size: number, write: (f: FileHandle) => Promise<void>, onlyIfUntouched = false): Promise<boolean> {
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
        await this.fill(real, st, size, (f) =>
          this.ranges(`fetching ${target}`, size, async (link, offset, length) => {
            const r = await link.request({ op: "read", path: target, offset, length, hash: true });
            if (r.head.size !== size || r.head.changed || (version !== undefined && r.head.version !== version)) {
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
      await this.#fetched(m, version ?? m.version!, real, false);
      return;
    }
  }

  /**
   * Moves `size` bytes as ranges of stripeSize over every link that is up, RANGES_PER_LINK at a
   * time per link; a link that comes up meanwhile (adaptive striping) takes ranges from then on.
   * A range whose link fails goes to another link; it fails only when none is left.
   */
  async ranges(label: string, size: number, move: (link: Remote, offset: number, length: number) => Promise<void>): Promise<void> {
    if (this.pool.links.length === 0) throw new FsError("EIO", "Host A is unreachable");
    const progress = new Progress(label, size, this.knobs.progress);
    const retry: number[] = [];
    let next = 0;
    let failure: Error | undefined;
    const take = () => {
      if (retry.length) return retry.shift()!;
      if (next >= size) return undefined;
      const o = next;
      next += this.knobs.stripeSize;
      return o;
    };
    const working = new Set<Remote>();
    const workers: Promise<void>[] = [];
    const enlist = () => {
      for (const l of this.pool.links) {
        if (working.has(l)) continue;
        working.add(l);
        for (let i = 0; i < RANGES_PER_LINK; i++) workers.push(worker(l));
      }
    };
    const worker = async (link: Remote) => {
      for (let offset = take(); offset !== undefined && !failure; offset = take()) {
        const length = Math.min(this.knobs.stripeSize, size - offset);
        try {
          await move(link, offset, length);
          progress.add(length);
          enlist();
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
      enlist();
      while (workers.length) {
        await Promise.all(workers.splice(0));
        // A link that failed (or went silent until its request timed out) after the others had
        // run out of ranges left its range behind: the links still up take it.
        if (!failure && retry.length) {
          working.clear();
          enlist();
        }
      }
    } finally {
      progress.end();
    }
    if (failure) throw failure;
    if (retry.length || next < size) throw new FsError("EIO", "Every link to host A failed during a transfer");
  }
}
