/**
 * An append-only journal of JSON records, one per line, fsynced before `append` resolves
 * (appends that arrive while a write is in flight share its fsync: group commit). `compact`
 * replaces the file crash-safely with a fresh set of records (write to a temporary file, fsync,
 * rename) and goes on appending there. Knows nothing of what the records mean.
 */
import { writeFileAtomic } from "../common/fs.ts";
import { writeAll } from "../common/io.ts";

/** The lines of a journal file as read back: parsed records, and a torn last line if any. */
export interface JournalText {
  records: { line: number; value: unknown }[];
  /** A last line without its newline that does not parse (a crash mid-append), after at least one good record: ignored. */
  torn: boolean;
}

/** Parses journal text; a line that does not parse (other than a torn last one) throws with its number. */
export function parseJournal(text: string): JournalText {
  const lines = text.split("\n");
  const last = lines.pop() ?? "";
  const records: JournalText["records"] = [];
  lines.forEach((l, i) => {
    if (l.trim()) records.push({ line: i + 1, value: JSON.parse(l) });
  });
  let torn = false;
  if (last.trim()) {
    try {
      records.push({ line: lines.length + 1, value: JSON.parse(last) });
    } catch (e) {
      if (!records.length) throw e; // nothing but garbage: not a journal
      torn = true;
    }
  }
  return { records, torn };
}

/** An open journal file. */
export class Journal {
  #file?: Deno.FsFile;
  #queue: { line: string; done: () => void; fail: (e: Error) => void }[] = [];
  #writing = false;
  /** Records in the file now (for the caller's compaction policy). */
  lines = 0;

  private constructor(readonly path: string) {}

  /** Opens `path` for appending (creating it and its directory, mode 0600). */
  static async open(path: string, lines: number): Promise<Journal> {
    const j = new Journal(path);
    await Deno.mkdir(path.replace(/\/[^/]*$/, "") || ".", { recursive: true, mode: 0o700 }).catch(() => {});
    j.#file = await Deno.open(path, { append: true, create: true, mode: 0o600 });
    j.lines = lines;
    return j;
  }

  /** Appends one record; resolves once it is on disk. */
  append(value: unknown): Promise<void> {
    return new Promise((done, fail) => {
      this.#queue.push({ line: JSON.stringify(value) + "\n", done, fail });
      this.#pump();
    });
  }

  async #pump(): Promise<void> {
    if (this.#writing) return;
    this.#writing = true;
    try {
      while (this.#queue.length) {
        const batch = this.#queue.splice(0);
        try {
          await writeAll(this.#file!, new TextEncoder().encode(batch.map((b) => b.line).join("")));
          await this.#file!.syncData();
          this.lines += batch.length;
          for (const b of batch) b.done();
        } catch (e) {
          for (const b of batch) b.fail(e as Error);
        }
      }
    } finally {
      this.#writing = false;
    }
  }

  /** Replaces the file with exactly `values` (crash-safe), then appends there. */
  async compact(values: unknown[]): Promise<void> {
    while (this.#writing || this.#queue.length) await new Promise((r) => setTimeout(r, 1));
    this.#writing = true;
    try {
      await writeFileAtomic(this.path, values.map((v) => JSON.stringify(v) + "\n").join(""));
      this.#file?.close();
      this.#file = await Deno.open(this.path, { append: true, create: true, mode: 0o600 });
      this.lines = values.length;
    } finally {
      this.#writing = false;
    }
    this.#pump();
  }

  /** Closes the file. */
  close(): void {
    try {
      this.#file?.close();
    } catch { /* closed */ }
    this.#file = undefined;
  }
}
