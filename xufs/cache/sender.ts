/**
 * The journal's sender: B's changes go to A in B's order, pipelined — up to WINDOW changes in
 * flight on the main link, one stream, so A applies them in order — and each answer is journaled.
 * A change based on the result of an earlier one (a file written twice, a file renamed, then
 * written) waits for that answer to know its base. A large write travels as checked ranges over
 * every link first, then commits in its place in the order. A change A refuses is retried a few
 * times, then reported (on stderr and in the log) with B's content kept; nothing is dropped. When
 * the link goes down, what was not answered is sent again after the re-attach, and A answers a
 * change it already applied without applying it twice.
 */
import { open } from "node:fs/promises";
import { sha256 } from "../../common/bytes.ts";
import { FsError } from "../fserror.ts";
import type { Remote } from "../remote.ts";
import type { Ack, Journal, Op } from "./journal.ts";
import type { LinkPool } from "./links.ts";
import type { Transfers } from "./transfers.ts";

/** Changes in flight at once, and their content bytes. */
const WINDOW = 512, WINDOW_BYTES = 16 << 20;
/** Pauses before each retry of a change A refused. */
const RETRY_MS = [500, 1000, 2000];

/** Options of a sender. */
export interface SenderOptions {
  /** This host's name, for conflict copies on A. */
  from: string;
  /** Files at least this large are written back as ranges over every link. */
  stripeMin: number;
  log: (line: string) => void;
  /** Called with each answer, after it is journaled. */
  onAck: (op: Op, ack: Ack) => void;
  /** Keeps B's content of a change A could not apply; returns where. */
  keep: (op: Op, content: Uint8Array | null) => Promise<string | undefined>;
}

/** The link went down: the change is sent again after the re-attach. */
class LinkDown extends Error {}

/** Sends one journal to A. */
export class JournalSender {
  #running = false;
  #again = false;
  #inflight = new Map<number, Promise<void>>();
  #inflightBytes = 0;
  #failed: { op: Op; error: FsError }[] = [];
  #idle: (() => void)[] = [];

  constructor(readonly journal: Journal, private readonly links: LinkPool, private readonly transfers: Transfers, private readonly o: SenderOptions) {}

  /** Changes not yet answered by A. */
  get left(): number {
    return this.journal.pending.length;
  }

  /** Starts sending, if there is a link and anything to send. */
  kick(): void {
    if (this.#running) {
      this.#again = true;
      return;
    }
    if (!this.links.main || this.journal.pending.length === 0) return this.#wake();
    this.#running = true;
    this.#again = false;
    this.#run().catch((e) => this.o.log(`journal sender stopped: ${(e as Error).message}`)).finally(() => {
      this.#running = false;
      if (this.#again && this.links.main) this.kick();
      else this.#wake();
    });
  }

  #wake(): void {
    for (const f of this.#idle.splice(0)) f();
  }

  /** Resolves the next time the sender stops (nothing left, or no link). */
  stopped(): Promise<void> {
    if (!this.#running) return Promise.resolve();
    return new Promise((r) => this.#idle.push(r));
  }

  async #run(): Promise<void> {
    const link = this.links.main;
    if (!link) return;
    try {
      for (;;) {
        if (!link.up) throw new LinkDown();
        const op = this.journal.pending.find((o) => !this.#inflight.has(o.seq) && !this.#failed.some((f) => f.op.seq === o.seq));
        if (!op) {
          if (this.#inflight.size === 0 && this.#failed.length === 0) return;
          await this.#settle();
          if (this.#failed.length) await this.#retryFailed(link);
          continue;
        }
        if (this.#failed.length) {
          await this.#settle();
          await this.#retryFailed(link);
          continue;
        }
        while (this.#inflight.size >= WINDOW || (this.#inflightBytes > 0 && this.#inflightBytes + (op.size ?? 0) > WINDOW_BYTES)) {
          await Promise.race(this.#inflight.values());
        }
        if (op.baseSeq !== undefined && this.#inflight.has(op.baseSeq)) {
          await this.#inflight.get(op.baseSeq);
          continue;
        }
        if (op.op === "write" && (op.size ?? 0) >= this.o.stripeMin && op.data === "file") {
          await this.#settle();
          if (this.#failed.length) continue;
          await this.#track(op, this.#send(link, op));
          continue;
        }
        // Prepared (its content read) before it is sent, so the requests leave in B's order.
        const req = await this.#request(op);
        this.#track(op, this.#send(link, op, req));
      }
    } catch (e) {
      if (!(e instanceof LinkDown)) throw e;
    } finally {
      await this.#settle().catch(() => {});
    }
  }

  /** Waits for every change in flight (a lost link ends the run). */
  async #settle(): Promise<void> {
    await Promise.all(this.#inflight.values());
    if (!this.links.main?.up) throw new LinkDown();
  }

  #track(op: Op, p: Promise<void>): Promise<void> {
    const done = p.catch((e) => {
      // Refused by A, or failed here: retried, then reported. A lost link: sent again later.
      if (!(e instanceof LinkDown)) this.#failed.push({ op, error: e instanceof FsError ? e : new FsError("EIO", (e as Error).message) });
    }).finally(() => {
      this.#inflight.delete(op.seq);
      this.#inflightBytes -= op.size ?? 0;
    });
    this.#inflight.set(op.seq, done);
    this.#inflightBytes += op.size ?? 0;
    return done;
  }

  /**
   * Retries the changes A refused: after each pause, all of them again, in B's order on the one
   * stream (a batch that failed costs one round of pauses, not one per change; none of them is
   * based on another's result, as a change waits for the answer it builds on). What still fails
   * is reported and its content kept.
   */
  async #retryFailed(link: Remote): Promise<void> {
    for (const ms of RETRY_MS) {
      if (!this.#failed.length) return;
      await new Promise((r) => setTimeout(r, ms));
      if (!link.up) throw new LinkDown();
      const round = this.#failed.splice(0).sort((a, b) => a.op.seq - b.op.seq);
      const sends: Promise<void>[] = [];
      for (const f of round) {
        const ranged = f.op.op === "write" && f.op.data === "file";
        if (ranged) await Promise.allSettled(sends); // its ranges go over every link: one at a time
        const sent = this.#send(link, f.op, ranged ? undefined : await this.#request(f.op)).catch((e) => {
          if (e instanceof LinkDown || !link.up) throw new LinkDown(); // sent again after the re-attach
          this.#failed.push({ op: f.op, error: e instanceof FsError ? e : new FsError("EIO", (e as Error).message) });
        });
        sends.push(sent);
        if (ranged) await Promise.allSettled([sent]);
      }
      if ((await Promise.allSettled(sends)).some((r) => r.status === "rejected")) throw new LinkDown();
    }
    this.#failed.sort((a, b) => a.op.seq - b.op.seq);
    for (const { op, error } of this.#failed.splice(0)) {
      const content = op.op === "write" ? await this.journal.content(op).catch(() => null) : null;
      const keptAt = await this.o.keep(op, content);
      const what = `${op.op} ${op.path}${op.to ? ` -> ${op.to}` : ""}`;
      this.o.log(`could not apply a change on host A after ${RETRY_MS.length + 1} attempts: ${what}: ${error.code}: ${error.message}` +
        (keptAt ? `; this host's version is kept in ${keptAt}` : ""));
      this.#answered(op, { seq: op.seq, failed: error.code, keptAt });
    }
  }

  /** The base of a change: given, or the version an earlier change's answer gave. */
  #base(op: Op): { base: string | null; baseSha256?: string } {
    if (op.baseSeq === undefined) return { base: op.base ?? null, baseSha256: op.baseSha256 };
    const a = this.journal.acks.get(op.baseSeq);
    // The change it builds on did not land (a conflict copy, or refused): this one cannot either.
    if (!a || a.conflict || a.failed) return { base: `unlanded-${op.baseSeq}` };
    return { base: a.version ?? null, baseSha256: a.racy ? a.sha256 : undefined };
  }

  /** The request of a change (a large write's is made while it is sent: see #writeRanged). */
  async #request(op: Op): Promise<{ head: Record<string, unknown>; payload?: Uint8Array }> {
    const ids = { j: this.journal.id, seq: op.seq, from: this.o.from };
    const { base, baseSha256 } = this.#base(op);
    switch (op.op) {
      case "write":
        return {
          head: { ...ids, op: "write", path: op.path, base, baseSha256, mode: op.mode, atimeMs: op.atimeMs, mtimeMs: op.mtimeMs, sha256: op.sha256 },
          payload: await this.journal.content(op),
        };
      case "rename":
        return { head: { ...ids, op: "rename", path: op.path, to: op.to, toBase: base, toBaseSha256: baseSha256 } };
      case "unlink":
        return { head: { ...ids, op: "unlink", path: op.path, base: base ?? undefined, baseSha256 } };
      default: {
        const { seq: _, baseSeq: _b, base: _c, ...fields } = op;
        return { head: { ...ids, ...fields } };
      }
    }
  }

  /** Sends one change (`req`, or a large write as ranges) and journals its answer. */
  async #send(link: Remote, op: Op, req?: { head: Record<string, unknown>; payload?: Uint8Array }): Promise<void> {
    let reply;
    try {
      reply = req ? await link.request(req.head, req.payload) : await this.#writeRanged(link, op);
    } catch (e) {
      if (e instanceof FsError && e.code === "EIO" && !link.up) throw new LinkDown();
      throw e;
    }
    const h = reply.head;
    this.#answered(op, {
      seq: op.seq,
      version: typeof h.version === "string" ? h.version : undefined,
      racy: h.racy === true || undefined,
      sha256: typeof h.contentSha256 === "string" ? h.contentSha256 : undefined,
      conflict: typeof h.conflict === "string" ? h.conflict : undefined,
    });
  }

  #answered(op: Op, ack: Ack): void {
    this.journal.ack(ack);
    this.o.onAck(op, ack);
  }

  /** A large write-back: checked ranges over every link into an upload on A, then the commit in its place. */
  async #writeRanged(link: Remote, op: Op) {
    const { base, baseSha256 } = this.#base(op);
    const head = { j: this.journal.id, seq: op.seq, from: this.o.from, op: "write", path: op.path, base, baseSha256, mode: op.mode, atimeMs: op.atimeMs, mtimeMs: op.mtimeMs, sha256: op.sha256 };
    const size = op.size ?? 0;
    const { upload } = (await link.request({ op: "wbegin", path: op.path, size })).head;
    const f = await open(this.journal.dataPath(op.seq), "r");
    try {
      await this.transfers.ranges(`writing back ${op.path}`, size, async (l, offset, length) => {
        const buf = new Uint8Array(length);
        for (let got = 0; got < length;) {
          const { bytesRead } = await f.read(buf, got, length - got, offset + got);
          if (bytesRead === 0) throw new FsError("EIO", `Write-back content shrank: ${op.path}`);
          got += bytesRead;
        }
        await l.request({ op: "wpart", upload, offset, sha256: sha256(buf) }, buf);
      });
    } finally {
      await f.close();
    }
    return await link.request({ ...head, upload });
  }
}
