/**
 * B's changes under the mount, as libxufs.so reports them: each is made in the cache at once and
 * journaled durably (xufs/cache/journal.ts) before the program is told it succeeded, with the
 * version of A's file it is based on — the one B opened: a file open for writing is busy, so no
 * listing changes its version meanwhile — or the earlier change whose result it builds on.
 * Owns the table of files open for writing (by process, following renames; a process that dies
 * with a file open counts as closing it), the rule that a file made on B and renamed before it
 * was ever sent is sent under its final name, the answers' effect on what B knows, and — after a
 * session that did not end cleanly — the scan that journals what was changed in the cache but
 * never journaled.
 */
import { createHash } from "node:crypto";
import { chmod, copyFile, link, lstat, mkdir, open, readdir, readFile, rename, rmdir, symlink, truncate, unlink, utimes } from "node:fs/promises";
import { join } from "node:path";
import { sha256 } from "../../common/bytes.ts";
import { libc, pidfd, pidfdEnded } from "../../ffi/libc.ts";
import { FsError } from "../fserror.ts";
import { syncDirSync } from "../../common/fs.ts";
import { type Ack, INLINE_MAX, type Journal, type Op } from "./journal.ts";
import type { Listings } from "./listings.ts";
import type { Transfers } from "./transfers.ts";
import { type CacheState, childOf, isUnder, parentOf } from "./state.ts";

/** How often processes holding files open for writing are checked for having died. */
const SWEEP_MS = 500;

/** What the rest of the cache hears from the changes. */
export interface ChangeHooks {
  /** A journaled change is waiting to be sent. */
  kick: () => void;
  /** Paths whose directories must be listed again (A's version is to replace B's). */
  relist: (paths: string[]) => void;
  log: (line: string) => void;
}

/** The base of a change: A's version it builds on, or the earlier change whose answer gives it. */
type Base = { base: string | null; baseSha256?: string } | { baseSeq: number };

/**
 * The processes that hold files open for writing, each watched through a pidfd (which also
 * keeps a reused pid from being mistaken for it).
 */
class Processes {
  #fds = new Map<number, { fd: number; refs: number }>();

  /** Starts watching `pid` (once more); false when it is gone already. */
  hold(pid: number): boolean {
    const p = this.#fds.get(pid);
    if (p) {
      p.refs++;
      return true;
    }
    const fd = pidfd(pid);
    if (fd < 0) return false;
    this.#fds.set(pid, { fd, refs: 1 });
    return true;
  }

  /** Stops watching `pid` once. */
  release(pid: number): void {
    const p = this.#fds.get(pid);
    if (!p || --p.refs > 0) return;
    this.#fds.delete(pid);
    libc().close(p.fd);
  }

  /** Whether `pid` has ended. */
  ended(pid: number): boolean {
    const p = this.#fds.get(pid);
    return !p || pidfdEnded(p.fd);
  }
}

/** Applies and journals B's changes. */
export class Changes {
  #opens = new Map<string, Set<number>>();
  #procs = new Processes();
  /** The latest journaled change that decides what A will have at a path: its result, or nothing. */
  #lastOp = new Map<string, { seq: number; gone: boolean }>();
  /** Busy paths A changed meanwhile: looked at again once they are no longer busy. */
  #stale = new Set<string>();
  /** A file's last snapshot (mtime, size), to tell whether a process that died changed it since. */
  #snap = new Map<string, { mtimeMs: number; size: number }>();
  #sweeper?: ReturnType<typeof setInterval>;
  /** A change could not be journaled this session: the next one scans the cache. */
  unclean = false;

  constructor(
    private readonly state: CacheState,
    private readonly listings: Listings,
    private readonly transfers: Transfers,
    private readonly journal: Journal,
    private readonly hooks: ChangeHooks,
    /** Contents up to this size are kept in the journal itself (below the striping threshold). */
    private readonly inlineMax = INLINE_MAX,
  ) {
    for (const op of journal.pending) this.#count(op, +1);
  }

  // ---- the journal ----

  /** The base of a change to `rel` made now. */
  baseFor(rel: string): Base {
    const last = this.#lastOp.get(rel);
    if (last) return last.gone ? { base: null } : { baseSeq: last.seq };
    const m = this.state.meta.get(rel);
    return { base: m?.version ?? null, baseSha256: m?.racy ? m.sha256 : undefined };
  }

  /**
   * Counts the paths of a journaled change busy (+1) or answered (-1; `acked` false: it never
   * made it into the journal), and which change decides each.
   */
  #count(op: Op, d: number, acked = d < 0): void {
    for (const p of [op.path, op.to]) if (p !== undefined) this.state.busy(p, d, acked);
    const decides: [string, boolean][] = op.op === "rename"
      ? [[op.path, true], [op.to!, false]]
      : op.op === "link" // one inode: its new version (ctime) is both names'
      ? [[op.path, false], [op.to!, false]]
      : [[op.path, op.op === "unlink" || op.op === "rmdir"]];
    for (const [p, gone] of decides) {
      if (d > 0) this.#lastOp.set(p, { seq: op.seq, gone });
      else if (this.#lastOp.get(p)?.seq === op.seq) this.#lastOp.delete(p);
    }
  }

  /**
   * Journals a change, durably. It is numbered and counted at once, in the order the changes
   * happen on B (so an answer to an earlier change arriving meanwhile cannot undo what this one
   * did to B's state), and appended in that same order. A large write's content is a file
   * already written and fsynced (`dataFile`), moved into place under the change's number.
   */
  async #journal(op: Omit<Op, "seq">, content?: Uint8Array, dataFile?: string): Promise<Op> {
    const full = { ...op, seq: this.journal.reserve() } as Op;
    this.#count(full, +1);
    try {
      if (dataFile) {
        Deno.renameSync(dataFile, this.journal.dataPath(full.seq));
        syncDirSync(this.journal.dir);
      }
      await this.journal.append(full, content);
    } catch (e) {
      this.#count(full, -1, false);
      this.unclean = true;
      this.hooks.log(`cannot journal ${op.op} ${op.path}: ${(e as Error).message}`);
      throw new FsError("EIO", `Cannot journal the change: ${(e as Error).message}`);
    }
    this.hooks.kick();
    return full;
  }

  /** Journals the content of file `rel` as it is now (a snapshot: later writes cannot mix in). */
  async #snapshot(rel: string): Promise<void> {
    const path = this.state.local(rel);
    const st = await lstat(path);
    const base = this.baseFor(rel);
    const fields = { op: "write" as const, path: rel, mode: st.mode & 0o7777, atimeMs: st.atimeMs, mtimeMs: st.mtimeMs, size: st.size, ...base };
    if (st.size <= this.inlineMax) {
      const content = await readFile(path);
      await this.#journal({ ...fields, size: content.length, sha256: sha256(content), data: "inline" }, content);
    } else {
      // Copied aside first (the path stays busy meanwhile: no listing replaces it).
      const data = join(this.journal.dir, `data-new-${crypto.randomUUID().slice(0, 8)}`);
      this.state.busy(rel, +1);
      try {
        await copyFile(path, data);
        const f = await open(data, "r");
        const h = createHash("sha256");
        try {
          const buf = new Uint8Array(1 << 20);
          for (let at = 0;;) {
            const { bytesRead } = await f.read(buf, 0, buf.length, at);
            if (bytesRead === 0) break;
            h.update(buf.subarray(0, bytesRead));
            at += bytesRead;
          }
          await f.sync();
        } finally {
          await f.close();
        }
        await this.#journal({ ...fields, sha256: h.digest("hex"), data: "file" }, undefined, data);
      } catch (e) {
        await Deno.remove(data).catch(() => {});
        if (e instanceof FsError) throw e;
        this.unclean = true;
        throw new FsError("EIO", `Cannot journal the content of ${rel}: ${(e as Error).message}`);
      } finally {
        this.state.busy(rel, -1);
      }
    }
    this.#snap.set(rel, { mtimeMs: st.mtimeMs, size: st.size });
  }

  /** A's answer to one of this journal's changes: what B knows of the paths it touched. */
  answered(op: Op, ack: Ack): void {
    const decidedBefore = [op.path, op.to].filter((p): p is string => p !== undefined).filter((p) => this.#lastOp.get(p)?.seq === op.seq);
    this.#count(op, -1);
    const latest = (p: string) => decidedBefore.includes(p);
    if (ack.failed) {
      if (op.op === "write" && latest(op.path)) this.state.m(op.path).version = undefined;
      return;
    }
    if (ack.conflict) {
      const where = op.op === "rename" ? op.to! : op.path;
      this.hooks.log(op.op === "unlink"
        ? `conflict: ${where} changed on host A since this host saw it; it was not removed there`
        : `conflict: ${where} changed on host A since this host opened it; A's copy stays, this host's version is kept on A as ${ack.conflict}`);
      if (latest(where) && !this.state.isBusy(where)) {
        const m = this.state.m(where);
        Object.assign(m, { version: undefined, fetched: false, mtimeMs: undefined, size: undefined, racy: undefined, sha256: undefined, dirty: undefined });
        this.state.identities.forget(this.state.local(where));
      }
      this.hooks.relist([where]);
      return;
    }
    if (op.op === "unlink" || op.op === "rmdir") return;
    const targets = op.op === "rename" ? [op.to!] : op.op === "link" ? [op.path, op.to!] : [op.path];
    for (const target of targets.filter(latest)) {
      const m = this.state.m(target);
      m.version = ack.version;
      m.racy = ack.racy;
      if (op.op === "write") Object.assign(m, { fetched: true, sha256: op.sha256, mtimeMs: op.mtimeMs, size: op.size, dirty: undefined });
      else if (ack.sha256) m.sha256 = ack.sha256;
      if (op.op === "utimes") m.mtimeMs = op.mtimeMs;
      this.state.changedHere.add(target); // keeps its own stat values for the rest of the session
    }
    this.state.save();
  }

  // ---- files open for writing ----

  /** A program opened `rel` for writing (`trunc`: with O_TRUNC, nothing to fetch). */
  async opened(rel: string, pid: number, trunc: boolean): Promise<void> {
    if (trunc) {
      // Nothing to fetch: its directory must be there and listed (a new file, or one truncated).
      if (!this.state.meta.get(parentOf(rel))?.listed) await this.listings.parentListed(rel);
    } else {
      await this.transfers.fetch(rel).catch(async (e) => {
        if (!(e instanceof FsError && e.code === "ENOENT")) throw e;
        await this.listings.parentListed(rel); // a new file
      });
    }
    if (!Number.isSafeInteger(pid) || pid <= 0) return;
    let o = this.#opens.get(rel);
    if (o?.has(pid)) return;
    if (!this.#procs.hold(pid)) return;
    if (!o) {
      this.#opens.set(rel, (o = new Set()));
      this.state.busy(rel, +1);
    }
    o.add(pid);
    this.#sweeper ??= setInterval(() => this.#sweep().catch(() => {}), SWEEP_MS);
  }

  /** Whether any file is open for writing on B. */
  get anyOpen(): boolean {
    return this.#opens.size > 0;
  }

  /** Looks for processes that died holding files open now (the end of a session). */
  sweepNow(): Promise<void> {
    return this.#sweep();
  }

  /** Whether a program on B has `rel` open for writing. */
  isOpen(rel: string): boolean {
    return this.#opens.has(rel);
  }

  #drop(rel: string, pid?: number): boolean {
    const o = this.#opens.get(rel);
    if (!o) return true;
    for (const p of pid === undefined ? [...o] : o.has(pid) ? [pid] : []) {
      o.delete(p);
      this.#procs.release(p);
    }
    if (o.size > 0) return false;
    this.#opens.delete(rel);
    this.state.busy(rel, -1);
    if (this.#opens.size === 0 && this.#sweeper !== undefined) {
      clearInterval(this.#sweeper);
      this.#sweeper = undefined;
    }
    return true;
  }

  /**
   * A program closed `rel` (its last descriptor in that process, or its last mapping): its
   * content is journaled now, so close() returning 0 means it will reach A.
   */
  async closed(rel: string, pid?: number): Promise<void> {
    const last = this.#drop(rel, pid);
    try {
      const st = await lstat(this.state.local(rel)).catch(() => null);
      if (!st?.isFile()) return; // already gone again
      // Never send a placeholder: an unfetched file nobody wrote (same size and mtime as listed).
      const m = this.state.meta.get(rel);
      if (m && m.version !== undefined && !m.fetched && !this.#lastOp.has(rel) && !this.state.modifiedOnB(st, m)) return;
      if (m && m.version !== undefined && m.fetched && !this.#lastOp.has(rel) && !this.state.modifiedOnB(st, m)) return; // unchanged
      await this.#snapshot(rel);
    } finally {
      if (last && this.#stale.delete(rel)) this.hooks.relist([rel]);
    }
  }

  /** A busy path that A changed meanwhile was left alone by a listing. */
  skipped(rel: string): void {
    if (this.#opens.has(rel)) this.#stale.add(rel);
  }

  /** Processes that died holding files open count as closing them (the content is sent if it changed). */
  async #sweep(): Promise<void> {
    for (const [rel, openers] of [...this.#opens]) {
      for (const pid of [...openers]) {
        if (!this.#procs.ended(pid)) continue;
        openers.delete(pid);
        this.#procs.release(pid);
        if (openers.size > 0) continue;
        const st = await lstat(this.state.local(rel)).catch(() => null);
        const snap = this.#snap.get(rel);
        const m = this.state.meta.get(rel);
        const changed = st?.isFile() && !(snap && snap.mtimeMs === st.mtimeMs && snap.size === st.size) &&
          !(m && m.mtimeMs !== undefined && !this.#lastOp.has(rel) && !this.state.modifiedOnB(st, m));
        if (changed) await this.closed(rel).catch((e) => this.hooks.log(`${rel}: ${(e as Error).message}`));
        else this.#drop(rel);
      }
    }
  }

  // ---- changes requested by the preload ----

  /** Applies a change requested by the preload locally and journals it for A. */
  async change(op: string, args: string[]): Promise<void> {
    const [rel, a1, a2] = args;
    const need = (...n: number[]) => {
      if (!n.includes(args.length)) throw new FsError("EINVAL", `${op} takes ${n.join(" or ")} argument(s)`);
    };
    const local = (p: string) => this.state.local(p);
    switch (op) {
      case "OPENW":
        need(2, 3);
        return await this.opened(rel, Number(a1), a2 === "t");
      case "CLOSED":
        need(1, 2);
        return await this.closed(rel, a1 === undefined ? undefined : Number(a1));
      case "SYNCED": // msync(MS_SYNC) of a writable mapping: the content now, the file stays open
        need(1, 2);
        return await this.#snapshot(rel);
      case "MKDIR": {
        need(2);
        const mode = parseInt(a1, 8) & 0o7777;
        await this.listings.parentListed(rel);
        await mkdir(local(rel), { mode });
        Object.assign(this.state.m(rel), { listed: true, known: true });
        await this.#journal({ op: "mkdir", path: rel, mode });
        return;
      }
      case "RMDIR":
        need(1);
        await this.listings.lookup(rel);
        await this.listings.list(rel);
        await rmdir(local(rel));
        this.state.forget(rel);
        await this.#journal({ op: "rmdir", path: rel });
        return;
      case "UNLINK": {
        need(1);
        await this.listings.lookup(rel);
        const base = this.baseFor(rel);
        await unlink(local(rel));
        this.state.forget(rel);
        this.#drop(rel);
        await this.#journal({ op: "unlink", path: rel, ...base });
        return;
      }
      case "RENAME":
        need(2);
        return await this.#rename(rel, a1);
      case "SYMLINK":
        need(2);
        await this.listings.parentListed(a1);
        await symlink(rel, local(a1));
        await this.#journal({ op: "symlink", path: a1, target: rel });
        return;
      case "LINK":
        need(2);
        await this.transfers.fetch(rel);
        await this.listings.parentListed(a1);
        await link(local(rel), local(a1));
        Object.assign(this.state.m(a1), { ...this.state.meta.get(rel), listed: undefined });
        await this.#journal({ op: "link", path: rel, to: a1 });
        return;
      case "CHMOD": {
        need(2);
        const mode = parseInt(a1, 8) & 0o7777;
        await this.listings.lookup(rel);
        await chmod(local(rel), mode);
        await this.#journal({ op: "chmod", path: rel, mode });
        return;
      }
      case "TRUNCATE":
        need(2);
        if (Number(a1) !== 0) await this.transfers.fetch(rel);
        else await this.listings.lookup(rel);
        await truncate(local(rel), Number(a1));
        return await this.#snapshot(rel);
      case "UTIMENS": {
        need(3);
        await this.listings.lookup(rel);
        const st = await lstat(local(rel));
        const t = (ns: string, cur: number) => (ns === "-1" ? Date.now() : ns === "-2" ? cur : Number(BigInt(ns) / 1_000_000n));
        const atimeMs = t(a1, st.atimeMs), mtimeMs = t(a2, st.mtimeMs);
        await utimes(local(rel), atimeMs / 1000, mtimeMs / 1000);
        await this.#journal({ op: "utimes", path: rel, atimeMs, mtimeMs: (await lstat(local(rel))).mtimeMs });
        return;
      }
      default:
        throw new FsError("EINVAL", `Unknown request: ${op}`);
    }
  }

  /**
   * A rename. A file made on B and never sent (no version from A, nothing journaled about it) is
   * not renamed on A — A has no such file — but sent under its new name: when it is closed if it
   * is open (os.replace before close), else at once; either way based on the version of the file
   * it replaces. Everything else is renamed on A, based on the version of the target it replaces.
   */
  async #rename(from: string, to: string): Promise<void> {
    await this.listings.lookup(from);
    await this.listings.parentListed(to);
    const st = await lstat(this.state.local(from));
    if (st.isDirectory()) await this.listings.listTree(from);
    const toBase = this.baseFor(to);
    const bOnly = st.isFile() && this.state.meta.get(from)?.version === undefined && !this.#lastOp.has(from);
    await rename(this.state.local(from), this.state.local(to));
    this.#moveOpens(from, to);
    if (bOnly) {
      this.state.meta.deleteTree(from);
      const m = this.state.meta.get(to);
      if (m) Object.assign(m, { fetched: true, dirty: true }); // B's content on A's base
      if (!this.#opens.has(to)) await this.#snapshot(to);
      return;
    }
    this.state.move(from, to);
    for (const [p, v] of [...this.#lastOp]) {
      if (isUnder(p, from) && p !== from) {
        this.#lastOp.delete(p);
        this.#lastOp.set(to + p.slice(from.length), v);
      }
    }
    const fields = "baseSeq" in toBase ? { baseSeq: toBase.baseSeq } : { base: toBase.base, baseSha256: toBase.baseSha256 };
    await this.#journal({ op: "rename", path: from, to, ...fields });
  }

  /** The open-file table follows a rename (of the file, or of a directory above it). */
  #moveOpens(from: string, to: string): void {
    for (const [p, o] of [...this.#opens]) {
      if (!isUnder(p, from) || from === ".") continue;
      const np = to + p.slice(from.length);
      this.#opens.delete(p);
      this.state.busy(p, -1);
      const there = this.#opens.get(np);
      if (there) {
        for (const pid of o) {
          if (there.has(pid)) this.#procs.release(pid);
          else there.add(pid);
        }
      } else {
        this.#opens.set(np, o);
        this.state.busy(np, +1);
      }
      const s = this.#snap.get(p);
      if (s) {
        this.#snap.delete(p);
        this.#snap.set(np, s);
      }
    }
  }

  /**
   * After a session that did not end cleanly: journals what the cache holds but the journal does
   * not (a close() that failed, a manager that crashed): files and directories made or changed
   * on B that A has not got.
   */
  async rescan(rel = "."): Promise<number> {
    let n = 0;
    for (const e of await readdir(this.state.local(rel), { withFileTypes: true })) {
      const child = childOf(rel, e.name);
      if (this.state.busyUnder(child) && !e.isDirectory()) continue;
      const m = this.state.meta.get(child);
      const path = join(this.state.tree, child);
      if (e.isDirectory()) {
        if (!m || (m.version === undefined && !this.state.isBusy(child))) {
          await this.#journal({ op: "mkdir", path: child, mode: (await lstat(path)).mode & 0o7777 });
          n++;
        }
        n += await this.rescan(child);
      } else if (e.isFile()) {
        const st = await lstat(path);
        if (!m || m.version === undefined || this.state.modifiedOnB(st, m)) {
          await this.#snapshot(child);
          n++;
        }
      } else if (e.isSymbolicLink() && (!m || m.version === undefined)) {
        await this.#journal({ op: "symlink", path: child, target: await Deno.readLink(path) });
        n++;
      }
    }
    return n;
  }

  /** Journals the entries a MyRT before the journal left in `queue/` (NNN.json + NNN.data). */
  async importLegacy(dir: string): Promise<number> {
    const names: string[] = [];
    for await (const e of Deno.readDir(dir)) if (/^\d{12}\.json$/.test(e.name)) names.push(e.name);
    names.sort();
    for (const name of names) {
      const e = JSON.parse(await Deno.readTextFile(join(dir, name)));
      const data = join(dir, name.replace(/\.json$/, ".data"));
      if (e.op === "write") {
        const content = await Deno.readFile(data);
        await this.#journal({ op: "write", path: e.path, mode: e.mode, atimeMs: e.atimeMs, mtimeMs: e.mtimeMs, size: content.length, sha256: sha256(content), data: "inline", ...this.baseFor(e.path) }, content);
      } else {
        const { seq: _, ...rest } = e;
        await this.#journal({ ...rest, ...(e.op === "unlink" ? this.baseFor(e.path) : e.op === "rename" ? this.baseFor(e.to) : {}) });
      }
      await Deno.remove(data).catch(() => {});
      await Deno.remove(join(dir, name));
    }
    return names.length;
  }

  /** Stops watching processes. */
  close(): void {
    clearInterval(this.#sweeper);
    this.#sweeper = undefined;
  }
}

