/**
 * Confinement of XUFS paths to the export on host A: a relative path from the wire is checked
 * component by component, so `..`, absolute paths, NUL bytes and symlinks leading out of the
 * export can reach nothing outside it.
 */
import { lstat } from "node:fs/promises";
import { join } from "node:path";

/** An errno-style failure of a file operation, carried to the peer by name. */
export class FsError extends Error {
  constructor(readonly code: string, message: string) {
    super(message);
    this.name = "FsError";
  }
}

/** Splits and checks a wire path ("." is the root). */
export function components(rel: unknown): string[] {
  if (typeof rel !== "string" || rel.length === 0 || rel.length > 4096) {
    throw new FsError("EINVAL", `Bad path: ${String(rel).slice(0, 80)}`);
  }
  if (rel === ".") return [];
  if (rel.includes("\0") || rel.startsWith("/")) throw new FsError("EACCES", `Path outside the export: ${rel}`);
  const parts = rel.split("/");
  for (const p of parts) {
    if (p === "" || p === "." || p === "..") throw new FsError("EACCES", `Path outside the export: ${rel}`);
  }
  return parts;
}

/**
 * Resolves `rel` under `root`. Every intermediate component must be a real directory (never a
 * symlink); the last one may be a symlink only when `lastMayBeLink`. Returns the host path.
 */
export async function resolveInExport(root: string, rel: unknown, lastMayBeLink: boolean): Promise<string> {
  const parts = components(rel);
  let path = root;
  for (let i = 0; i < parts.length; i++) {
    path = join(path, parts[i]);
    const last = i === parts.length - 1;
    let st;
    try {
      st = await lstat(path);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code ?? "EIO";
      if (code === "ENOENT" && last) return path; // may be created
      throw new FsError(code, `${code}: ${rel}`);
    }
    if (st.isSymbolicLink() && !(last && lastMayBeLink)) {
      throw new FsError("EACCES", `Symlink not followed: ${rel}`);
    }
    if (!last && !st.isDirectory()) throw new FsError("ENOTDIR", `Not a directory: ${rel}`);
  }
  return path;
}
