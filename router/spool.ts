/**
 * The unacknowledged bytes of one direction of a resumable session: everything the application
 * sent that the peer router has not acknowledged yet, addressed by stream offset. Held in memory
 * up to a limit, then spooled to a file (the paper's "unsent message file"); past the total
 * limit, `append` waits — backpressure, as a slow network would apply.
 */

/** Limits of a spool. */
export interface SpoolLimits {
  /** Bytes kept in memory before spilling to disk. */
  memoryBytes: number;
  /** Bytes held in all (memory + disk) before the application is made to wait. */
  totalBytes: number;
  /** Directory for the spool file. */
  dir: string;
}

interface Segment {
  start: number;
  length: number;
  data?: Uint8Array;
  fileOffset?: number;
}

/** Unacknowledged bytes from `base` to `end`. */
export class Spool {
  base = 0;
  end = 0;
  #segments: Segment[] = [];
  #memory = 0;
  #file?: Deno.FsFile;
  #filePath?: string;
  #fileEnd = 0;
  #space: (() => void)[] = [];
  /** Bytes that ever went to disk (for status). */
  spooled = 0;
  #fileLock: Promise<unknown> = Promise.resolve();

  /** Runs file work one at a time (seek + read/write must not interleave). */
  #withFile<T>(work: (f: Deno.FsFile) => Promise<T>): Promise<T> {
    const p = this.#fileLock.then(() => work(this.#file!));
    this.#fileLock = p.catch(() => {});
    return p;
  }

  constructor(private readonly limits: SpoolLimits) {}

  /** Bytes held. */
  get size(): number {
    return this.end - this.base;
  }

  /** Appends bytes (copied); waits while the spool is full. */
  async append(bytes: Uint8Array): Promise<void> {
    while (this.size + bytes.length > this.limits.totalBytes && this.size > 0) {
      await new Promise<void>((r) => this.#space.push(r));
    }
    const seg: Segment = { start: this.end, length: bytes.length };
    if (this.#memory + bytes.length <= this.limits.memoryBytes) {
      seg.data = bytes.slice();
      this.#memory += bytes.length;
    } else {
      if (!this.#file) {
        this.#filePath = await Deno.makeTempFile({ dir: this.limits.dir, prefix: "uvpn-spool-" });
        this.#file = await Deno.open(this.#filePath, { read: true, write: true });
      }
      const at = (seg.fileOffset = this.#fileEnd);
      this.#fileEnd += bytes.length;
      const copy = bytes.slice();
      // Recorded before the write lands (reads queue behind it on the same lock), so a trim
      // meanwhile never thinks the file is empty and reuses this region.
      this.#segments.push(seg);
      this.end += bytes.length;
      this.spooled += bytes.length;
      await this.#withFile(async (f) => {
        await f.seek(at, Deno.SeekMode.Start);
        let off = 0;
        while (off < copy.length) off += await f.write(copy.subarray(off));
      });
      return;
    }
    this.#segments.push(seg);
    this.end += bytes.length;
  }

  /** Reads up to `max` bytes starting at stream offset `from` (base <= from < end). */
  async read(from: number, max: number): Promise<Uint8Array> {
    if (from < this.base || from >= this.end) throw new RangeError(`Offset not held: ${from} (have ${this.base}..${this.end})`);
    const seg = this.#segments.find((s) => from < s.start + s.length)!;
    const skip = from - seg.start;
    const n = Math.min(max, seg.length - skip);
    if (seg.data) return seg.data.subarray(skip, skip + n);
    const out = new Uint8Array(n);
    const at = seg.fileOffset! + skip;
    await this.#withFile(async (f) => {
      await f.seek(at, Deno.SeekMode.Start);
      let got = 0;
      while (got < n) {
        const r = await f.read(out.subarray(got));
        if (r === null) throw new Error("Spool file shorter than recorded");
        got += r;
      }
    });
    return out;
  }

  /** Forgets everything before stream offset `upTo` (acknowledged by the peer). */
  trim(upTo: number): void {
    if (upTo <= this.base) return;
    if (upTo > this.end) throw new RangeError(`Acknowledged beyond what was sent: ${upTo} > ${this.end}`);
    while (this.#segments.length && this.#segments[0].start + this.#segments[0].length <= upTo) {
      const s = this.#segments.shift()!;
      if (s.data) this.#memory -= s.length;
    }
    const first = this.#segments[0];
    if (first && first.start < upTo) {
      const cut = upTo - first.start;
      if (first.data) {
        first.data = first.data.subarray(cut);
        this.#memory -= cut;
      } else first.fileOffset! += cut;
      first.start = upTo;
      first.length -= cut;
    }
    this.base = upTo;
    if (this.#file && !this.#segments.some((s) => !s.data)) this.#fileEnd = 0; // reuse the file from its start
    for (const w of this.#space.splice(0)) w();
  }

  /** Removes the spool file. */
  close(): void {
    try {
      this.#file?.close();
      if (this.#filePath) Deno.removeSync(this.#filePath);
    } catch { /* gone */ }
    this.#file = undefined;
    for (const w of this.#space.splice(0)) w();
  }
}
