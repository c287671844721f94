/**
 * The cache manager's socket for libxufs.so (docs/XUFS.md, "Manager protocol"): a Unix stream
 * socket (mode 0600); each connection carries requests — a TAB-separated line each — answered in
 * order with `OK` or `ERR ENAME`. Checks the paths of every request (never `..`, never empty components) and turns
 * failures into errno names; what each request does is the cache's.
 */
import { writeAll } from "../../common/io.ts";
import { errnoOf, FsError } from "../fserror.ts";

/** What the socket asks of the cache. */
export interface PreloadHandlers {
  lookup(rel: string): Promise<void>;
  /** A program enters a directory: list it, and look one level ahead. */
  enter(rel: string): Promise<void>;
  tree(rel: string): Promise<void>;
  fetch(rel: string): Promise<void>;
  /** A program watches `rel` (inotify): fetch it, and refresh it in place when A changes it. */
  watch(rel: string): Promise<void>;
  /** Any other request: a change (OPENW, CLOSED, MKDIR, …). */
  change(op: string, args: string[]): Promise<void>;
  log(line: string): void;
}

/** Which arguments of a request are paths (default: the first); a symlink's target is free text. */
const PATH_ARGS: Record<string, number[]> = { RENAME: [0, 1], LINK: [0, 1], SYMLINK: [1] };
/** Longest request line. */
const LINE_MAX = 8192;
const enc = new TextEncoder();

/** Answers one request line from libxufs.so; returns the reply line. */
export async function answer(h: PreloadHandlers, line: string): Promise<string> {
  const [op, ...args] = line.split("\t");
  try {
    for (const i of PATH_ARGS[op] ?? [0]) {
      const a = args[i] ?? "";
      if (a.split("/").some((c) => c === ".." || c === "")) throw new FsError("EINVAL", `Bad path: ${a}`);
    }
    switch (op) {
      case "LOOKUP":
        await h.lookup(args[0]);
        break;
      case "LIST":
        await h.enter(args[0]);
        break;
      case "TREE":
        await h.tree(args[0]);
        break;
      case "FETCH":
        await h.fetch(args[0]);
        break;
      case "WATCH":
        await h.watch(args[0]);
        break;
      default:
        await h.change(op, args);
    }
    return "OK\n";
  } catch (e) {
    const code = errnoOf(e);
    if (code === "EIO" || !(e instanceof FsError || (e as NodeJS.ErrnoException).code)) h.log(`${op} ${args.join(" ")}: ${(e as Error).message}`);
    return `ERR ${code}\n`;
  }
}

/** Serves libxufs.so on a Unix socket until the listener is closed. */
export async function servePreload(h: PreloadHandlers, listener: Deno.Listener): Promise<void> {
  for await (const conn of listener) serveConnection(h, conn);
}

/**
 * One process's connection: its requests, one after another (each thread of a program that
 * finds the process's connection busy makes one of its own), until it closes it. A line longer
 * than LINE_MAX ends the connection.
 */
async function serveConnection(h: PreloadHandlers, conn: Deno.Conn): Promise<void> {
  const buf = new Uint8Array(LINE_MAX);
  const dec = new TextDecoder();
  let pending = "";
  try {
    for (;;) {
      let nl = pending.indexOf("\n");
      while (nl < 0) {
        const n = await conn.read(buf);
        if (n === null) return;
        pending += dec.decode(buf.subarray(0, n), { stream: true });
        if (pending.length > LINE_MAX) return;
        nl = pending.indexOf("\n");
      }
      const line = pending.slice(0, nl);
      pending = pending.slice(nl + 1);
      await writeAll(conn, enc.encode(await answer(h, line)));
    }
  } catch { /* the program went away */ } finally {
    try {
      conn.close();
    } catch { /* closed */ }
  }
}
