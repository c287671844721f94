/**
 * Foreground first on an XUFS link (docs/XUFS.md, "Priorities"): the priority-ordered outbox
 * both ends write their messages through (one whole message at a time, the most urgent waiting
 * one next), and the file server's per-connection scheduler that answers requests concurrently,
 * a bounded number at once, starting foreground ones ahead of range data and range data ahead of
 * pre-caching, with slots kept for foreground requests. The classes themselves are part of the message format: `priorityOf` in
 * xufs/messages.ts.
 */
import { type ByteWriter, writeAll } from "../common/io.ts";
import { PRIORITY, type Priority } from "./messages.ts";

const CLASSES = Object.keys(PRIORITY).length;

interface Outgoing {
  bytes: Uint8Array;
  resolve: () => void;
  reject: (e: unknown) => void;
}

/** Writes whole messages to one stream, the most urgent waiting one first (FIFO within a class). */
export class Outbox {
  #queues: Outgoing[][] = Array.from({ length: CLASSES }, () => []);
  #writing = false;

  constructor(private readonly out: ByteWriter) {}

  /** Queues one encoded message of class `cls`; resolves once it is written. */
  send(bytes: Uint8Array, cls: Priority = PRIORITY.foreground): Promise<void> {
    return new Promise((resolve, reject) => {
      this.#queues[cls].push({ bytes, resolve, reject });
      this.#drain();
    });
  }

  async #drain(): Promise<void> {
    if (this.#writing) return;
    this.#writing = true;
    try {
      for (let m = this.#next(); m; m = this.#next()) {
        try {
          await writeAll(this.out, m.bytes);
          m.resolve();
        } catch (e) {
          m.reject(e);
        }
      }
    } finally {
      this.#writing = false;
    }
  }

  #next(): Outgoing | undefined {
    return this.#queues.find((q) => q.length)?.shift();
  }
}

/** Limits of a connection's scheduler. */
export interface SchedulerLimits {
  /** Requests running at once. */
  running: number;
  /** Of those, slots only foreground requests may take. */
  reserved: number;
  /** Requests read and waiting before the connection is read no further. */
  waiting: number;
}

/** Runs the requests of one connection concurrently, by priority. */
export class RequestScheduler {
  #queues: (() => Promise<void>)[][] = Array.from({ length: CLASSES }, () => []);
  #running = 0;
  #waitingCount = 0;
  #room: (() => void)[] = [];
  #idle: (() => void)[] = [];
  constructor(private readonly limits: SchedulerLimits) {}

  /** Resolves once fewer than `limits.waiting` requests wait: the next one may be read. */
  room(): Promise<void> {
    return this.#waitingCount < this.limits.waiting ? Promise.resolve() : new Promise((r) => this.#room.push(r));
  }

  /** Queues a request of class `cls`; `run` answers it and never throws. */
  submit(cls: Priority, run: () => Promise<void>): void {
    this.#queues[cls].push(run);
    this.#waitingCount++;
    this.#pump();
  }

  /** Resolves once nothing runs or waits. */
  idle(): Promise<void> {
    return this.#running + this.#waitingCount === 0 ? Promise.resolve() : new Promise((r) => this.#idle.push(r));
  }

  /** The class to start now, if any. */
  #startable(): Priority | undefined {
    const { running, reserved } = this.limits;
    if (this.#queues[PRIORITY.foreground].length && this.#running < running) return PRIORITY.foreground;
    if (this.#running >= running - reserved) return undefined;
    if (this.#queues[PRIORITY.range].length) return PRIORITY.range;
    if (this.#queues[PRIORITY.background].length) return PRIORITY.background;
    return undefined;
  }

  #pump(): void {
    for (let cls = this.#startable(); cls !== undefined; cls = this.#startable()) {
      const run = this.#queues[cls].shift()!;
      this.#waitingCount--;
      this.#running++;
      run().finally(() => {
        this.#running--;
        this.#pump();
        if (this.#running + this.#waitingCount === 0) for (const w of this.#idle.splice(0)) w();
      });
    }
    if (this.#waitingCount < this.limits.waiting) for (const w of this.#room.splice(0)) w();
  }
}
