/**
 * The durable journal of B's changes (docs/XUFS.md, "The journal"): one ordered, append-only
 * log in ~/.xufs/cache/ID/queue/ of every change a program on B made under the mount — a file's
 * whole content when it was closed, and each create, rename, unlink, mkdir, rmdir, chmod,
 * truncate, symlink and link — each fsynced before the program is told it succeeded (appends
 * that arrive together share one fsync). A.'s answers are appended too, so after a crash, a
 * restart or a reboot the journal says exactly what still has to reach A. Records are
 * `u32 header_len, u32 payload_len, JSON header, payload, 8-byte SHA-256 prefix`; a torn record
 * at the end (a crash during an append the program was never told about) is cut off. Contents up
 * to INLINE_MAX travel in the log itself, larger ones in a file of their own beside it. When
 * nothing is pending the log starts afresh.
 */
import { join } from "node:path";
import { be32, concat, hex, sha256, u32, unhex } from "../../common/bytes.ts";
import { syncDir } from "../../common/fs.ts";
import { writeAll } from "../../common/io.ts";

/** One change of B's, as journaled and sent. */
export interface Op {
  seq: number;
  op: "write" | "mkdir" | "rmdir" | "unlink" | "rename" | "symlink" | "link" | "chmod" | "truncate" | "utimes";
  path: string;
  to?: string;
  mode?: number;
  target?: string;
  atimeMs?: number;
  mtimeMs?: number;
  length?: number;
  /** write: the content's size and SHA-256, and where it is kept. */
  size?: number;
  sha256?: string;
  data?: "inline" | "file";
  /** The version of A's file the change is based on (null: none there)... */
  base?: string | null;
  baseSha256?: string;
  /** ...or the earlier change whose result it is based on (its answer gives the version). */
  baseSeq?: number;
}

/** A's answer to a change, as journaled. */
export interface Ack {
  seq: number;
  version?: string;
  /** The content's SHA-256 when the version is racy. */
  sha256?: string;
  racy?: boolean;
  /** A kept both versions: B's landed under this name. */
  conflict?: string;
  /** A could not apply it; B's content (if any) is kept at `keptAt`. Reported. */
  failed?: string;
  keptAt?: string;
}

/** Contents up to this size are kept in the log itself. */
export const INLINE_MAX = 4 << 20;
/** Contents kept in memory for the sender, at most (the rest is read from the log). */
const MEMORY_MAX = 64 << 20;
/** A log with nothing pending is started afresh once it is this large. */
const ROTATE_AT = 8 << 20;

interface Pos {
  seg: string;
  at: number;
  length: number;
}

/** The durable journal of one cache. */
export class Journal {
  /** This journal's id: A's server answers a change sent again by (id, seq). */
  id = "";
  /** Changes not yet answered by A, in order. */
  readonly pending: Op[] = [];
  /** Answers, by seq (of this journal's life). */
  readonly acks = new Map<number, Ack>();
  #seq = 0;
  #segNo = 0;
  #seg = "";
  #file?: Deno.FsFile;
  #end = 0;
  #inline = new Map<number, Pos>();
  /** Contents appended in this life, kept for the sender while they fit MEMORY_MAX. */
  #mem = new Map<number, Uint8Array>();
  #memBytes = 0;
  #queue: { bytes: Uint8Array; done: (e: Error | null, at: number) => void }[] = [];
  #flushing = false;
  #bytesLeft = 0;
  /** Appends written but not yet pending. */
  #writing = 0;

  private constructor(readonly dir: string, private readonly log: (l: string) => void) {}

  /** Opens (creating or replaying) the journal in `dir`. */
  static async open(dir: string, log: (l: string) => void): Promise<Journal> {
    const j = new Journal(dir, log);
    await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
    await j.#replay();
    return j;
  }

  /** The last seq used. */
  get lastSeq(): number {
    return this.#seq;
  }

  /** Bytes of content not yet answered by A. */
  get bytesLeft(): number {
    return this.#bytesLeft;
  }

  async #replay(): Promise<void> {
    try {
      this.id = (await Deno.readTextFile(join(this.dir, "journal.id"))).trim();
    } catch { /* new */ }
    if (!/^[0-9a-f-]{36}$/.test(this.id)) {
      this.id = crypto.randomUUID();
      await Deno.writeTextFile(join(this.dir, "journal.id"), `${this.id}\n`, { mode: 0o600 });
    }
    const segs: string[] = [];
    for await (const e of Deno.readDir(this.dir)) if (/^log-\d{6}$/.test(e.name)) segs.push(e.name);
    segs.sort();
    const ops = new Map<number, Op>();
    for (const [i, seg] of segs.entries()) {
      const path = join(this.dir, seg);
      const bytes = await Deno.readFile(path);
      let at = 0;
      while (at + 16 <= bytes.length) {
        const hlen = u32(bytes, at), plen = u32(bytes, at + 4);
        const end = at + 8 + hlen + plen + 8;
        if (hlen === 0 || end > bytes.length) break;
        const body = bytes.subarray(at + 8, at + 8 + hlen + plen);
        if (sha256(body).slice(0, 16) !== hex(bytes.subarray(end - 8, end))) break;
        const head = JSON.parse(new TextDecoder().decode(body.subarray(0, hlen)));
        if (head.k === "op") {
          const { k: _, ...op } = head;
          ops.set(op.seq, op as Op);
          if (op.data === "inline") this.#inline.set(op.seq, { seg, at: at + 8 + hlen, length: plen });
        } else if (head.k === "ack") {
          const { k: _, ...ack } = head;
          this.acks.set(ack.seq, ack as Ack);
        }
        this.#seq = Math.max(this.#seq, head.seq ?? 0);
        at = end;
      }
      if (at < bytes.length) {
        if (i === segs.length - 1) {
          this.log(`journal: cut a torn record at the end of ${seg} (${bytes.length - at} bytes; a change whose close() had not returned)`);
          await Deno.truncate(path, at);
        } else this.log(`journal: ${seg} is damaged after byte ${at}; the changes after it are lost`);
      }
      this.#segNo = Number(seg.slice(4));
      this.#seg = seg;
      this.#end = at;
    }
    for (const op of [...ops.values()].sort((a, b) => a.seq - b.seq)) {
      if (this.acks.has(op.seq)) continue;
      this.pending.push(op);
      this.#bytesLeft += op.size ?? 0;
    }
    if (!this.#seg || (this.pending.length === 0 && this.#end > 0)) await this.#rotate();
    else this.#file = await Deno.open(join(this.dir, this.#seg), { write: true, append: true });
  }

  /** Starts a fresh log (nothing pending), removing the old ones and their content files. */
  async #rotate(): Promise<void> {
    this.#file?.close();
    for await (const e of Deno.readDir(this.dir)) {
      if (/^(log-\d{6}|data-\d+)$/.test(e.name)) await Deno.remove(join(this.dir, e.name)).catch(() => {});
    }
    this.#inline.clear();
    this.acks.clear();
    this.#seg = `log-${String(++this.#segNo).padStart(6, "0")}`;
    this.#file = await Deno.open(join(this.dir, this.#seg), { write: true, create: true, append: true, mode: 0o600 });
    this.#end = 0;
    await syncDir(this.dir);
  }

  /** The file that holds a large write's content. */
  dataPath(seq: number): string {
    return join(this.dir, `data-${seq}`);
  }

  /**
   * Appends a change numbered with reserve(), durably: resolves once it is fsynced (with its
   * content: `content` bytes, kept inline, or a file already written and fsynced at
   * dataPath(seq)). Changes become pending in the order they are appended.
   */
  async append(full: Op, content?: Uint8Array): Promise<Op> {
    const hdr = new TextEncoder().encode(JSON.stringify({ k: "op", ...full }));
    const inline = content && full.data === "inline" ? content : undefined;
    // Pending (and so visible to the sender) only once durable; appends land in their order.
    this.#writing++;
    try {
      const { at, seg } = await this.#write(hdr, inline);
      if (inline) {
        this.#inline.set(full.seq, { seg, at: at + 8 + hdr.length, length: inline.length });
        if (this.#memBytes + inline.length <= MEMORY_MAX) {
          this.#mem.set(full.seq, inline);
          this.#memBytes += inline.length;
        }
      }
    } finally {
      this.#writing--;
    }
    this.pending.push(full);
    this.#bytesLeft += full.size ?? 0;
    return full;
  }

  /** The number of the next change. */
  reserve(): number {
    return ++this.#seq;
  }

  #unpend(seq: number): void {
    const i = this.pending.findIndex((o) => o.seq === seq);
    if (i >= 0) this.#bytesLeft -= this.pending.splice(i, 1)[0].size ?? 0;
    const m = this.#mem.get(seq);
    if (m) {
      this.#mem.delete(seq);
      this.#memBytes -= m.length;
    }
  }

  /** Records A's answer to a change (not waited for: a lost answer only means the change is sent again). */
  ack(a: Ack): void {
    this.acks.set(a.seq, a);
    this.#unpend(a.seq);
    this.#write(new TextEncoder().encode(JSON.stringify({ k: "ack", ...a }))).then(async () => {
      if (a.keptAt === undefined) await Deno.remove(this.dataPath(a.seq)).catch(() => {});
    }).catch((e) => this.log(`journal: cannot record an answer: ${(e as Error).message}`));
  }

  /** The content of a write. */
  async content(op: Op): Promise<Uint8Array> {
    const kept = this.#mem.get(op.seq);
    if (kept) return kept;
    if (op.data !== "inline") return await Deno.readFile(this.dataPath(op.seq));
    const pos = this.#inline.get(op.seq);
    if (!pos) throw new Error(`journal: content of change ${op.seq} is missing`);
    const f = await Deno.open(join(this.dir, pos.seg), { read: true });
    try {
      await f.seek(pos.at, Deno.SeekMode.Start);
      const buf = new Uint8Array(pos.length);
      for (let got = 0; got < buf.length;) {
        const n = await f.read(buf.subarray(got));
        if (n === null) throw new Error(`journal: content of change ${op.seq} is cut short`);
        got += n;
      }
      return buf;
    } finally {
      f.close();
    }
  }

  /** Appends a record (header, payload, check) behind the others; resolves with its offset once fsynced. */
  #write(hdr: Uint8Array, payload: Uint8Array = new Uint8Array(0)): Promise<{ at: number; seg: string }> {
    const body = concat(hdr, payload);
    const bytes = concat(be32(hdr.length), be32(payload.length), body, unhex(sha256(body).slice(0, 16)));
    return new Promise((resolve, reject) => {
      this.#queue.push({ bytes, done: (e, at) => (e ? reject(e) : resolve({ at, seg: this.#seg })) });
      this.#flush();
    });
  }

  /** Writes what is queued and fsyncs once for all of it (group commit); rotates when nothing is pending. */
  async #flush(): Promise<void> {
    if (this.#flushing) return;
    this.#flushing = true;
    try {
      while (this.#queue.length) {
        const batch = this.#queue.splice(0);
        try {
          await writeAll(this.#file!, concat(...batch.map((b) => b.bytes)));
          await this.#file!.syncData();
          for (const b of batch) {
            b.done(null, this.#end);
            this.#end += b.bytes.length;
          }
        } catch (e) {
          await this.#file!.truncate(this.#end).catch(() => {}); // cut what did not make it
          for (const b of batch) b.done(e as Error, 0);
        }
        if (this.pending.length === 0 && this.#writing === 0 && this.#queue.length === 0 && this.#end > ROTATE_AT) await this.#rotate();
      }
    } finally {
      this.#flushing = false;
    }
  }

  /** Waits for every queued record to be written. */
  async settle(): Promise<void> {
    while (this.#flushing || this.#queue.length) await new Promise((r) => setTimeout(r, 5));
  }

  close(): void {
    this.#file?.close();
    this.#file = undefined;
  }
}
