/**
 * The user's files: locating the home directory, replacing a file crash-safely (write to a
 * temporary file, fsync, rename, fsync the directory) so a crash leaves the old or the new
 * content, and fsyncing a directory.
 */
import { dirname } from "node:path";
import { KeyError } from "./errors.ts";
import { writeAll } from "./io.ts";

/** The user's home directory ($HOME). */
export function homeDir(): string {
  const home = Deno.env.get("HOME");
  if (!home) throw new KeyError("HOME is not set: cannot locate the network key");
  return home;
}

/** Replaces `file` with `text` so that a crash leaves either the old or the new content. */
export async function writeFileAtomic(file: string, text: string): Promise<void> {
  const dir = dirname(file);
  await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  const tmp = `${file}.tmp-${Deno.pid}`;
  const f = await Deno.open(tmp, { write: true, create: true, truncate: true, mode: 0o600 });
  try {
    await writeAll(f, new TextEncoder().encode(text));
    await f.sync();
  } finally {
    f.close();
  }
  await Deno.rename(tmp, file);
  await syncDir(dir);
}

/** fsyncs a directory (its new and removed names), where the file system allows. */
export async function syncDir(dir: string): Promise<void> {
  try {
    const d = await Deno.open(dir, { read: true });
    try {
      await d.sync();
    } finally {
      d.close();
    }
  } catch { /* some file systems cannot fsync a directory */ }
}

/** fsyncs a directory now (see syncDir). */
export function syncDirSync(dir: string): void {
  try {
    const d = Deno.openSync(dir, { read: true });
    try {
      d.syncSync();
    } finally {
      d.close();
    }
  } catch { /* some file systems cannot fsync a directory */ }
}
