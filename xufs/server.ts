/**
 * The XUFS file server on host A: serves the export to authenticated cache managers over any
 * stream (docs/XUFS.md). Owns the connection: the handshake, the request loop (errors become
 * `error` replies), the dispatch of each request to the read side (xufs/reads.ts) or the write
 * side (xufs/writes.ts), and change callbacks pushed to the caches that asked for them.
 */
import { relative } from "node:path";
import { closeQuietly, writeAll } from "../common/io.ts";
import { FsError } from "./confine.ts";
import { encodeMessage, ProtocolError, readMessage, serverHandshake } from "./messages.ts";
import { ExportReader } from "./reads.ts";
import { ExportWriter, isTempFile } from "./writes.ts";

/** One served connection: replies and pushed notices go out one whole message at a time. */
class Peer {
  #writing: Promise<void> = Promise.resolve();
  constructor(readonly conn: Deno.Conn) {}
  /** Queues one message behind those already being written. */
  send(head: Record<string, unknown>, payload?: Uint8Array): Promise<void> {
    const bytes = encodeMessage(head, payload);
    const p = this.#writing.then(() => writeAll(this.conn, bytes));
    this.#writing = p.catch(() => {});
    return p;
  }
}

/** Serves one export. */
export class FileServer {
  #reads: ExportReader;
  #writes: ExportWriter;
  #watchers = new Set<Peer>();
  #watch?: Deno.FsWatcher;
  #changed = new Set<string>();
  #changeTimer?: ReturnType<typeof setTimeout>;

  constructor(
    readonly root: string,
    readonly secret: string,
    private readonly log: (line: string) => void = (l) => console.error(`xufs server: ${l}`),
  ) {
    this.#reads = new ExportReader(root);
    this.#writes = new ExportWriter(root, log);
  }

  /** Serves one connection until it closes; never throws. */
  async serve(conn: Deno.Conn): Promise<void> {
    const peer = new Peer(conn);
    try {
      if (!(await serverHandshake(conn, this.secret))) {
        this.log("refused a connection: wrong session secret");
        return;
      }
      while (true) {
        const m = await readMessage(conn);
        if (!m) return;
        const id = m.head.id;
        let reply: Record<string, unknown>, payload: Uint8Array | undefined;
        try {
          if (m.head.op === "watch") {
            this.#subscribe(peer);
            [reply, payload] = [{}, undefined];
          } else [reply, payload] = await this.handle(m.head, m.payload);
        } catch (e) {
          if (e instanceof FsError) reply = { error: e.code, message: e.message };
          else {
            const code = (e as NodeJS.ErrnoException).code;
            reply = { error: typeof code === "string" ? code : "EIO", message: (e as Error).message };
          }
        }
        await peer.send({ id, ...reply }, payload);
      }
    } catch (e) {
      if (e instanceof ProtocolError) this.log(`malformed message, connection closed: ${e.message}`);
      else if (!(e instanceof Deno.errors.BadResource || e instanceof Deno.errors.ConnectionReset)) {
        this.log(`connection ended: ${(e as Error).message}`);
      }
    } finally {
      this.#unsubscribe(peer);
      closeQuietly(conn);
    }
  }

  // ---- change callbacks ----

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
          // Our own temporary files come and go with every write-back: not news.
          if (rel.startsWith("..") || isTempFile(rel)) continue;
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

  #pushChanges(): void {
    this.#changeTimer = undefined;
    const paths = [...this.#changed];
    this.#changed.clear();
    for (const peer of this.#watchers) peer.send({ op: "changed", paths }).catch(() => {});
  }

  /** Answers one request (any op but `watch`): the reply header and, for reads, the payload. */
  // deno-lint-ignore no-explicit-any
  async handle(h: Record<string, any>, payload: Uint8Array): Promise<[Record<string, unknown>, Uint8Array?]> {
    const r = this.#reads, w = this.#writes;
    switch (h.op) {
      case "list":
        return [{ entries: await r.list(h.path) }];
      case "stat":
        return [{ entry: await r.stat(h.path) }];
      case "read":
        return await r.read(h);
      case "readmany":
        return await r.readMany(h.paths);
      case "tree":
        return [await r.tree(h.path)];
      case "wbegin":
        return [await w.beginUpload(h)];
      case "wpart":
        return [await w.part(h, payload)];
      case "write":
        return [await w.write(h, payload)];
      case "mkdir":
        return [await w.mkdir(h)];
      case "rmdir":
        return [await w.rmdir(h)];
      case "unlink":
        return [await w.unlink(h)];
      case "rename":
        return [await w.rename(h)];
      case "symlink":
        return [await w.symlink(h)];
      case "link":
        return [await w.link(h)];
      case "chmod":
        return [await w.chmod(h)];
      case "truncate":
        return [await w.truncate(h)];
      case "utimes":
        return [await w.utimes(h)];
      default:
        throw new ProtocolError(`Unknown op: ${String(h.op).slice(0, 40)}`);
    }
  }
}
