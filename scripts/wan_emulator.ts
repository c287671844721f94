/**
 * WAN emulator: a user-space TCP forwarder to put between two routers (or any client and
 * server) that adds one-way delay, caps bandwidth and the bytes in flight per connection, and on
 * command resets every connection, blackholes them (drops silently: nothing is forwarded, nothing
 * is closed, new connections hang), or restores normal service.
 *
 * Module: `new WanEmulator({listen, target, delayMs, rateBytesPerSec, windowBytes})`, then
 * `start()`, `cut()`, `blackhole()`, `restore()`, `close()`.
 * CLI:    deno run --allow-net scripts/wan_emulator.ts --listen 127.0.0.1:9000 --target 127.0.0.1:7002
 *           [--delay-ms 25] [--rate-mbit 100] [--window-kib 1024]
 *         then type `cut`, `blackhole`, `restore` or `stats` on its standard input.
 */

/** Settings of an emulated path (one-way delay; rate and window per connection and direction). */
export interface WanOptions {
  listen: { hostname: string; port: number };
  target: { hostname: string; port: number };
  delayMs?: number;
  rateBytesPerSec?: number;
  windowBytes?: number;
}

type Mode = "up" | "blackhole";

/** One direction of one connection: reads, then delivers each chunk after the delay. */
class Pipe {
  inFlight = 0;
  #waiters: (() => void)[] = [];
  constructor(private readonly emu: WanEmulator, private readonly from: Deno.TcpConn, private readonly to: Deno.TcpConn) {}

  async run(): Promise<void> {
    const o = this.emu.opts;
    const window = o.windowBytes ?? 4 * 1024 * 1024;
    let nextSendAt = 0;
    let writing = Promise.resolve();
    try {
      while (true) {
        await this.emu.whenUp();
        while (this.inFlight >= window) await new Promise<void>((r) => this.#waiters.push(r));
        const buf = new Uint8Array(Math.min(64 * 1024, window));
        const n = await this.from.read(buf);
        if (n === null) break;
        const chunk = buf.subarray(0, n);
        this.inFlight += n;
        // Bandwidth: each chunk occupies the link for n / rate seconds.
        const now = performance.now();
        const serialization = o.rateBytesPerSec ? (n / o.rateBytesPerSec) * 1000 : 0;
        nextSendAt = Math.max(nextSendAt, now) + serialization;
        const deliverAt = nextSendAt + (o.delayMs ?? 0);
        const epoch = this.emu.epoch;
        writing = writing.then(async () => {
          const wait = deliverAt - performance.now();
          if (wait > 0) await new Promise((r) => setTimeout(r, wait));
          await this.emu.whenUp();
          if (epoch !== this.emu.epoch) return; // cut meanwhile
          let off = 0;
          while (off < n) off += await this.to.write(chunk.subarray(off));
          this.emu.bytes += n;
          this.inFlight -= n;
          for (const w of this.#waiters.splice(0)) w();
        }).catch(() => this.emu.drop(this.from, this.to));
      }
      await writing;
      await this.to.closeWrite().catch(() => {});
    } catch {
      this.emu.drop(this.from, this.to);
    }
  }
}

/** A running emulated WAN path. */
export class WanEmulator {
  epoch = 0;
  bytes = 0;
  connections = 0;
  #mode: Mode = "up";
  #upWaiters: (() => void)[] = [];
  #listener?: Deno.TcpListener;
  #conns = new Set<Deno.TcpConn>();

  constructor(readonly opts: WanOptions) {}

  /** Resolves when traffic may flow (immediately unless blackholed). */
  whenUp(): Promise<void> {
    return this.#mode === "up" ? Promise.resolve() : new Promise((r) => this.#upWaiters.push(r));
  }

  /** Starts accepting; returns the port listened on. */
  start(): number {
    this.#listener = Deno.listen(this.opts.listen);
    (async () => {
      for await (const c of this.#listener!) this.#accept(c).catch(() => {});
    })().catch(() => {});
    return (this.#listener.addr as Deno.NetAddr).port;
  }

  async #accept(client: Deno.TcpConn): Promise<void> {
    this.#conns.add(client);
    await this.whenUp(); // a blackholed path accepts but never connects through
    let server: Deno.TcpConn;
    try {
      server = await Deno.connect(this.opts.target);
    } catch {
      this.drop(client);
      return;
    }
    this.#conns.add(server);
    this.connections++;
    client.setNoDelay(true);
    server.setNoDelay(true);
    await Promise.all([new Pipe(this, client, server).run(), new Pipe(this, server, client).run()]);
    this.drop(client, server);
  }

  /** Closes connections (and forgets them). */
  drop(...conns: Deno.TcpConn[]): void {
    for (const c of conns) {
      this.#conns.delete(c);
      try {
        c.close();
      } catch { /* closed */ }
    }
  }

  /** Breaks every connection now, as a reset on the WAN would. */
  cut(): void {
    this.epoch++;
    this.drop(...this.#conns);
  }

  /** Silently drops everything from now on: no data, no close, new connections hang. */
  blackhole(): void {
    this.#mode = "blackhole";
  }

  /** Back to normal. Connections held by a blackhole are dropped (their peers timed out). */
  restore(): void {
    if (this.#mode === "blackhole") this.cut();
    this.#mode = "up";
    for (const w of this.#upWaiters.splice(0)) w();
  }

  /** Stops listening and drops everything. */
  close(): void {
    try {
      this.#listener?.close();
    } catch { /* closed */ }
    this.restore();
    this.cut();
  }
}

/** HOST:PORT as Deno.listen and Deno.connect take it (port 0: any free port); also fault_relay.ts'. */
export function hostPort(s: string): { hostname: string; port: number } {
  const m = /^(.+):(\d+)$/.exec(s);
  if (!m) throw new Error(`Expected host:port: ${s}`);
  return { hostname: m[1], port: Number(m[2]) };
}

if (import.meta.main) {
  const { parseArgs } = await import("node:util");
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      listen: { type: "string" },
      target: { type: "string" },
      "delay-ms": { type: "string" },
      "rate-mbit": { type: "string" },
      "window-kib": { type: "string" },
    },
  });
  if (!values.listen || !values.target) {
    console.error("wan_emulator: --listen HOST:PORT and --target HOST:PORT are required");
    Deno.exit(2);
  }
  const emu = new WanEmulator({
    listen: hostPort(values.listen),
    target: hostPort(values.target),
    delayMs: Number(values["delay-ms"] ?? 0),
    rateBytesPerSec: values["rate-mbit"] ? (Number(values["rate-mbit"]) * 1e6) / 8 : undefined,
    windowBytes: values["window-kib"] ? Number(values["window-kib"]) * 1024 : undefined,
  });
  console.error(`wan_emulator: ${values.listen} -> ${values.target} (port ${emu.start()})`);
  for await (const line of Deno.stdin.readable.pipeThrough(new TextDecoderStream())) {
    for (const cmd of line.split("\n").map((l) => l.trim()).filter(Boolean)) {
      if (cmd === "cut") emu.cut();
      else if (cmd === "blackhole") emu.blackhole();
      else if (cmd === "restore") emu.restore();
      else if (cmd === "stats") console.log(JSON.stringify({ bytes: emu.bytes, connections: emu.connections }));
      else console.error(`wan_emulator: unknown command: ${cmd} (cut, blackhole, restore, stats)`);
      console.error(`wan_emulator: ${cmd}`);
    }
  }
  emu.close();
}
