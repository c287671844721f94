/**
 * The XUFS file server on host A: serves the export to authenticated cache managers over any
 * stream (docs/XUFS.md). Owns the connection: the handshake and the sealed link after it, the
 * request loop (errors become `error` replies; a long request sends `busy` notices so the cache
 * sees progress; listings stream in parts), the dispatch of each request to the read side
 * (xufs/reads.ts) or the write side (xufs/writes.ts), the journal's exactly-once bookkeeping (a
 * change B sends again after a lost link is answered, not applied twice), and change callbacks
 * pushed to the caches that asked for them.
 */
import { relative } from "node:path";
import { closeQuietly, withTimeout } from "../common/io.ts";
import { ExportRoot, statAt } from "./confine.ts";
import { FsError } from "./fserror.ts";
import { AuthFailure, encodeMessage, PRIORITY, type Priority, priorityOf, ProtocolError, readMessage, serverHandshake } from "./messages.ts";
import { ExportReader, type Parts, versionString } from "./reads.ts";
import { Outbox, RequestScheduler, type SchedulerLimits } from "./schedule.ts";
import { type RawConn, SealError } from "./seal.ts";
import { RangeMeter } from "./stripes.ts";
import { ExportWriter, isTempFile } from "./writes.ts";

/** A request running longer than this sends `busy` notices, this often. */
const BUSY_EVERY_MS = 2000;
/** Deadline of a handshake. */
const HANDSHAKE_MS = 10_000;
/** How long the server tells its own changes from A's in change callbacks. */
const OWN_MS = 10_000;
/** Answers of journaled changes kept per journal, to answer a change sent again. */
const JOURNAL_REPLIES = 20_000;
/**
 * Requests of one connection answered at once (2 slots kept for foreground ones), and how many
 * more are read ahead, waiting their turn, before the connection is read no further.
 */
const LIMITS: SchedulerLimits = { running: 8, reserved: 2, waiting: 64 };

/** A handler's answer: a header and payload, or a stream of parts. */
type Reply = { head: Record<string, unknown>; payload?: Uint8Array } | { parts: Parts };

/** One served connection: replies and pushed notices go out one whole message at a time, the most urgent first. */
class Peer {
  #out: Outbox;
  constructor(readonly conn: RawConn) {
    this.#out = new Outbox(conn);
  }
  /** Queues one message of class `cls` (notices: foreground). */
  send(head: Record<string, unknown>, payload?: Uint8Array, cls: Priority = PRIORITY.foreground): Promise<void> {
    return this.#out.send(encodeMessage(head, payload), cls);
  }
}

/** What the server knows of one cache's journal: the answers of the changes it applied. */
interface JournalSeen {
  replies: Map<number, Record<string, unknown>>;
  tail: Promise<unknown>;
}

/** Serves one export. */
export class FileServer {
  #root: ExportRoot;
  #reads: ExportReader;
  #writes: ExportWriter;
  #journals = new Map<string, JournalSeen>();
  #watchers = new Set<Peer>();
  /** Range data moved, for adaptive striping (xufs/stripes.ts). */
  readonly meter = new RangeMeter();
  /** Authenticated connections being served. */
  linked = 0;
  #watch?: Deno.FsWatcher;
  #changed = new Set<string>();
  #changeTimer?: ReturnType<typeof setTimeout>;
  /** What the server's own recent changes left at each path (a version, or null: gone), to tell them from A's. */
  #own = new Map<string, { version: string | null; at: number }>();

  constructor(
    readonly root: string,
    readonly secret: string,
    private readonly log: (line: string) => void = (l) => console.error(`xufs server: ${l}`),
  ) {
    this.#root = new ExportRoot(root);
    this.#reads = new ExportReader(this.#root);
    this.#writes = new ExportWriter(this.#root, log);
  }

  /** Serves one connection until it closes; never throws. */
  async serve(conn: RawConn): Promise<void> {
    let peer: Peer | undefined;
    const sched = new RequestScheduler(LIMITS);
    try {
      const sealed = await withTimeout(serverHandshake(conn, this.secret), HANDSHAKE_MS, "handshake", () => closeQuietly(conn));
      if (!sealed) return; // the peer left before it said anything
      const p = (peer = new Peer(sealed));
      this.linked++;
      while (true) {
        await sched.room();
        const m = await readMessage(sealed);
        if (!m) break;
        if (m.head.op === "watch") {
          this.#subscribe(p);
          await p.send({ id: m.head.id });
          continue;
        }
        const cls = priorityOf(m.head);
        // Waiting counts as a long request too: the cache sees the request is alive.
        const busy = setInterval(() => p.send({ op: "busy", id: m.head.id }).catch(() => {}), BUSY_EVERY_MS);
        const ranged = cls === PRIORITY.range;
        if (ranged) {
          this.meter.inFlight++;
          this.meter.bytes += m.payload.length; // a range of a write-back
        }
        sched.submit(cls, () =>
          this.#answer(p, m.head, m.payload, cls).finally(() => {
            clearInterval(busy);
            if (ranged) this.meter.inFlight--;
          }));
      }
      await sched.idle();
    } catch (e) {
      this.#ended(e);
    } finally {
      if (peer) {
        this.linked--;
        this.#unsubscribe(peer);
      }
      closeQuietly(conn);
    }
  }

  /** Logs why a connection ended, unless it simply closed. */
  #ended(e: unknown): void {
    if (e instanceof AuthFailure) this.log(`refused a connection: ${e.message}`);
    else if (e instanceof SealError) this.log(`rejected a connection: a frame failed authentication (${e.message})`);
    else if (e instanceof ProtocolError) this.log(`malformed message, connection closed: ${e.message}`);
    else if (!(e instanceof Deno.errors.BadResource || e instanceof Deno.errors.ConnectionReset || e instanceof Deno.errors.BrokenPipe)) {
      this.log(`connection ended: ${(e as Error).message}`);
    }
  }

  /**
   * Runs one request and sends its answer (parts first, for a stream) in its class; never throws:
   * a request that breaks the protocol ends the connection.
   */
  // deno-lint-ignore no-explicit-any
  async #answer(peer: Peer, h: Record<string, any>, payload: Uint8Array, cls: Priority): Promise<void> {
    const id = h.id;
    try {
      const reply = await this.#journaled(h, payload);
      if ("parts" in reply) {
        // The next part is queued while the one before is still waiting to go out, so the stream
        // keeps its place ahead of less urgent replies; at most two of its parts wait at once.
        const it = reply.parts;
        let queued: Promise<void> = Promise.resolve();
        for (let r = await it.next(); ; r = await it.next()) {
          const sent = peer.send(r.done ? { id, ...r.value } : { id, part: true, ...r.value }, undefined, cls);
          sent.catch(() => {}); // (awaited below; a failure must not go unhandled meanwhile)
          await queued;
          queued = sent;
          if (r.done) break;
        }
        await queued;
      } else {
        await peer.send({ id, ...reply.head }, reply.payload, cls);
        if (cls === PRIORITY.range) this.meter.bytes += reply.payload?.length ?? 0;
      }
    } catch (e) {
      if (e instanceof ProtocolError) {
        this.#ended(e);
        closeQuietly(peer.conn);
        return;
      }
      const code = e instanceof FsError ? e.code : (e as NodeJS.ErrnoException).code;
      await peer.send({ id, error: typeof code === "string" ? code : "EIO", message: (e as Error).message }, undefined, cls).catch(() => {});
    }
  }

  /**
   * A change from a cache's journal (`j`, `seq`) is applied once: sent again (after a lost
   * link), it gets the answer it got the first time. Changes of one journal run in order, across
   * connections.
   */
  // deno-lint-ignore no-explicit-any
  #journaled(h: Record<string, any>, payload: Uint8Array): Promise<Reply> {
    if (typeof h.j !== "string" || !Number.isSafeInteger(h.seq)) return this.handle(h, payload);
    let seen = this.#journals.get(h.j);
    if (!seen) this.#journals.set(h.j, (seen = { replies: new Map(), tail: Promise.resolve() }));
    const s = seen;
    const run = s.tail.then(async (): Promise<Reply> => {
      const before = s.replies.get(h.seq);
      if (before) return { head: { ...before, again: true } };
      const r = await this.handle(h, payload);
      if ("head" in r) {
        this.#noteOwn(h, r.head);
        s.replies.set(h.seq, r.head);
        if (s.replies.size > JOURNAL_REPLIES) s.replies.delete(s.replies.keys().next().value!);
      }
      return r;
    });
    s.tail = run.catch(() => {});
    return run;
  }

  // ---- change callbacks ----

  /** Remembers what a change of a cache left on A, so its own echo is not pushed back to it. */
  // deno-lint-ignore no-explicit-any
  #noteOwn(h: Record<string, any>, reply: Record<string, unknown>): void {
    const at = Date.now();
    const version = typeof reply.version === "string" ? reply.version : null;
    if (h.op === "rename") {
      this.#own.set(String(h.path), { version: null, at });
      if (!reply.conflict) this.#own.set(String(h.to), { version, at });
    } else if (h.op === "unlink" || h.op === "rmdir") {
      if (!reply.conflict) this.#own.set(String(h.path), { version: null, at });
    } else if (!reply.conflict && version !== null) this.#own.set(String(h.op === "link" ? h.to : h.path), { version, at });
    if (this.#own.size > 50_000) {
      for (const [k, v] of this.#own) if (at - v.at > OWN_MS) this.#own.delete(k);
    }
  }

  /**
   * Whether what is at `rel` now is what a cache's own recent change left there (an echo, not
   * news): a file of that very version, a directory of that inode (its times move with every
   * name made in it), or nothing where it removed something.
   */
  #isOwn(rel: string): boolean {
    const own = this.#own.get(rel);
    if (!own) return false;
    if (Date.now() - own.at > OWN_MS) {
      this.#own.delete(rel);
      return false;
    }
    try {
      const { dir, name } = this.#root.parent(rel);
      using _ = dir;
      const st = statAt(dir, name);
      if (!st || own.version === null) return !st && own.version === null;
      return st.type === "d" ? String(st.ino) === own.version.split("-")[2] : versionString(st) === own.version;
    } catch {
      return false;
    }
  }

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
          // Our own temporary files come and go with every write-back, and what a cache changed
          // itself it knows: not news. What A changed since is (its version is another).
          if (rel.startsWith("..") || isTempFile(rel) || this.#isOwn(rel)) continue;
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

  /** Pushes a notice to every cache subscribed to callbacks (e.g. `{op:"links", count}`: connect the further links). */
  announce(head: Record<string, unknown>): void {
    for (const peer of this.#watchers) peer.send(head).catch(() => {});
  }

  #pushChanges(): void {
    this.#changeTimer = undefined;
    const paths = [...this.#changed];
    this.#changed.clear();
    for (const peer of this.#watchers) peer.send({ op: "changed", paths }).catch(() => {});
  }

  /** Answers one request (any op but `watch`). */
  // deno-lint-ignore no-explicit-any
  async handle(h: Record<string, any>, payload: Uint8Array): Promise<Reply> {
    const r = this.#reads, w = this.#writes;
    const one = async (head: Promise<Record<string, unknown>> | Record<string, unknown>): Promise<Reply> => ({ head: await head });
    switch (h.op) {
      case "list":
        return { parts: r.list(h.path) };
      case "tree":
        return { parts: r.tree(h.path) };
      case "stat":
        return one(r.stat(h.path, h.hash === true));
      case "read": {
        const [head, data] = await r.read(h);
        return { head, payload: data };
      }
      case "readmany": {
        const [head, data] = await r.readMany(h.paths);
        return { head, payload: data };
      }
      case "wbegin":
        return one(w.beginUpload(h));
      case "wpart":
        return one(w.part(h, payload));
      case "write":
        return one(w.write(h, payload));
      case "mkdir":
        return one(w.mkdir(h));
      case "rmdir":
        return one(w.rmdir(h));
      case "unlink":
        return one(w.unlink(h));
      case "rename":
        return one(w.rename(h));
      case "symlink":
        return one(w.symlink(h));
      case "link":
        return one(w.link(h));
      case "chmod":
        return one(w.chmod(h));
      case "truncate":
        return one(w.truncate(h));
      case "utimes":
        return one(w.utimes(h));
      default:
        throw new ProtocolError(`Unknown op: ${String(h.op).slice(0, 40)}`);
    }
  }

  /** Releases the export's descriptor (the server serves nothing after). */
  close(): void {
    this.#watch?.close();
    this.#root.close();
  }
}
