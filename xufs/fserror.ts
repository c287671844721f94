/**
 * Errno-style failures of file operations, shared by both ends of XUFS: carried between A's file
 * server, B's cache manager and libxufs.so by errno name ("ENOENT"), never by number.
 */
import { constants } from "node:os";

/** An errno-style failure of a file operation, carried to the peer by name. */
export class FsError extends Error {
  constructor(readonly code: string, message: string) {
    super(message);
    this.name = "FsError";
  }
}

const NAMES = new Map(Object.entries(constants.errno).map(([name, n]) => [n, name]));

/** The errno name of a number (EIO when unknown). */
export function errnoName(n: number): string {
  return NAMES.get(n) ?? "EIO";
}

/** The errno name a failure carries: an FsError's code, a Node-style `code`, else EIO. */
export function errnoOf(e: unknown): string {
  if (e instanceof FsError) return e.code;
  const code = (e as { code?: unknown })?.code;
  return typeof code === "string" && /^E[A-Z0-9]+$/.test(code) ? code : "EIO";
}
