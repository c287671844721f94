/**
 * Fault-injection relay: a TCP forwarder whose faults fire on events in the stream, never on
 * sleeps — after exactly N bytes in one direction, or at the first UVPN frame (or ticket) of a
 * given type — so a test can break a connection at a precise, repeatable point. A fault resets
 * both sides (RST), blackholes (forwards nothing more, closes nothing), drops N bytes, flips a bit,
 * injects bytes, or half-closes. Each fault is armed by `arm()`, which resolves when it fired
 * with where it fired, so a test awaits the event instead of guessing a delay.
 *
 * Module: `const r = new FaultRelay({ listen, target }); const port = r.start();`
 *         `const fired = r.arm({ dir: "up", afterBytes: 1 << 20, action: "rst" }); await fired;`
 * CLI:    deno run -A scripts/fault_relay.ts --listen 127.0.0.1:9000 --target 127.0.0.1:7002
 *           then lines on standard input, e.g. `up after 1048576 rst`, `down frame 22 corrupt 40`,
 *           `up frame 3 blackhole`, `down after 0 inject 5556504e`; `events` prints what fired.
 *
 * Frames are recognised only on connections whose stream starts with a UVPN frame ("UVPN") or a
 * ticket ("UVPT"): frame by frame (64 + body length bytes; a session frame between routers, types
 * 22-25 and 29, is 48 + body length; a ticket is 88) until the first byte that is neither, after
 * which the rest of that direction is raw bytes. Offsets count from the start of each
 * connection's direction. `forge` makes the injected bytes from the head of the frame at the
 * firing point (a forged frame that names the same session and stream position).
 */
import { concat, unhex } from "../common/bytes.ts";
import { resetConn } from "../router/reset.ts";
import { hostPort } from "./wan_emulator.ts";

/** Direction: "up" is from the connecting side to the target, "down" the way back. */
export type Dir = "up" | "down";

/** What a fault does when it fires. */
export type FaultAction = "rst" | "blackhole" | "drop" | "corrupt" | "inject" | "close";

/** One fault: where it fires and what it does. */
export interface Fault {
  dir: Dir;
  /** Fires when this many bytes have passed in `dir` (0: before the first byte). */
  afterBytes?: number;
  /** Fires at the first byte of the first frame of this type (a UVPN frame's type byte, or 256 + a ticket's kind). */
  onFrameType?: number;
  /** Only on the Nth connection accepted (0-based); any connection when absent. */
  connection?: number;
  action: FaultAction;
  /** drop: how many bytes; corrupt: which byte after the firing point to flip (default 0). */
  count?: number;
  /** inject: the bytes to insert at the firing point. */
  bytes?: Uint8Array;
  /** inject: makes the bytes to insert from the 32-byte head of the frame at the firing point. */
  forge?: (head: Uint8Array) => Uint8Array;
}

/** Where a fault fired. */
export interface FaultEvent {
  fault: Fault;
  connection: number;
  /** Offset in the direction's stream at which it fired. */
  offset: number;
}

/** Where the relay listens and what it connects to. */
export interface FaultRelayOptions {
  listen: { hostname: string; port: number };
  target: { hostname: string; port: number };
  /** Called with the bytes of each direction of each connection as they are read (a capture). */
  tap?: (conn: number, dir: Dir, bytes: Uint8Array) => void;
}

const HEAD = 32, MAC = 32, TICKET = 88, SESSION_TAG = 16;
/** Session frames between routers (DATA, ACK, FIN, RST, CLOSE): a 16-byte AES-GCM tag, no HMAC. */
const SESSION_TYPES = new Set([22, 23, 24, 25, 29]);

/** The type of the frame starting at data[i] (8 bytes available), or null when it is no frame. */
function frameAt(data: Uint8Array, i: number): { type: number; length: number } | null {
  const magic = String.fromCharCode(data[i], data[i + 1], data[i + 2], data[i + 3]);
  const type = data[i + 5], body = (data[i + 6] << 8) | data[i + 7];
  if (magic === "UVPN") return { type, length: HEAD + body + (SESSION_TYPES.has(type) ? SESSION_TAG : MAC) };
  if (magic === "UVPT") return { type: 256 + data[i + 5], length: TICKET };
  return null;
}

/** One direction of one relayed connection. */
class Pipe {
  /** Bytes of the source's stream seen so far. */
  offset = 0;
  blackholed = false;
  #raw = false; // no (more) frames in this direction
  #left = 0; // bytes left of the current frame
  #held = new Uint8Array(0); // the start of a frame head split across reads
  #dropping = 0;

  constructor(
    readonly relay: FaultRelay,
    readonly conn: number,
    readonly dir: Dir,
    readonly from: Deno.TcpConn,
    readonly to: Deno.TcpConn,
    readonly other: () => Pipe,
  ) {}

  async run(): Promise<void> {
    const buf = new Uint8Array(256 * 1024);
    try {
      for (const f of this.relay.pending(this.conn, this.dir)) {
        if (f.afterBytes === 0) await this.#apply(f, new Uint8Array(0), 0);
      }
      while (!this.relay.isGone(this.conn)) {
        const n = await this.from.read(buf);
        if (n === null) break;
        this.relay.opts.tap?.(this.conn, this.dir, buf.slice(0, n));
        await this.#forward(buf.subarray(0, n));
      }
      await this.#send(this.#held);
      if (!this.blackholed) await this.to.closeWrite().catch(() => {});
    } catch {
      this.relay.dropConn(this.conn);
    }
  }

  /** Forwards one read, split at frame boundaries and wherever a fault fires. */
  async #forward(chunk: Uint8Array): Promise<void> {
    let data = this.#held.length ? concat(this.#held, chunk) : chunk;
    this.#held = new Uint8Array(0);
    let i = 0;
    while (i < data.length && !this.relay.isGone(this.conn)) {
      if (!this.#raw && this.#left === 0) {
        if (data.length - i < 8) {
          this.#held = data.slice(i); // wait for the whole head start: boundaries stay exact
          return;
        }
        const frame = frameAt(data, i);
        if (!frame) this.#raw = true;
        else {
          this.#left = frame.length;
          const f = this.relay.pending(this.conn, this.dir).find((f) => f.onFrameType === frame.type);
          if (f?.forge && data.length - i < HEAD) {
            this.#left = 0;
            this.#held = data.slice(i); // the forgery needs the whole head
            return;
          }
          if (f) {
            data = await this.#apply(f, data, i);
            continue;
          }
        }
      }
      const end = this.#raw ? data.length : Math.min(data.length, i + this.#left);
      const byteFault = this.relay.pending(this.conn, this.dir)
        .filter((f) => f.afterBytes !== undefined && f.afterBytes > this.offset && f.afterBytes <= this.offset + end - i)
        .sort((a, b) => a.afterBytes! - b.afterBytes!)[0];
      const stop = byteFault ? i + (byteFault.afterBytes! - this.offset) : end;
      await this.#pass(data.subarray(i, stop));
      i = stop;
      if (byteFault) data = await this.#apply(byteFault, data, i);
    }
  }

  /** Passes stream bytes on (unless dropped or blackholed), keeping count and frame position. */
  async #pass(b: Uint8Array): Promise<void> {
    this.offset += b.length;
    if (!this.#raw) this.#left -= b.length;
    if (this.#dropping) {
      const d = Math.min(this.#dropping, b.length);
      this.#dropping -= d;
      b = b.subarray(d);
    }
    await this.#send(b);
  }

  async #send(b: Uint8Array): Promise<void> {
    if (this.blackholed || !b.length) return;
    let off = 0;
    while (off < b.length) off += await this.to.write(b.subarray(off));
  }

  /** Applies a fault firing at data[i]; returns the data to go on with (possibly changed). */
  async #apply(fault: Fault, data: Uint8Array, i: number): Promise<Uint8Array> {
    this.relay.fired(fault, { fault, connection: this.conn, offset: this.offset });
    switch (fault.action) {
      case "rst":
        this.relay.resetConn(this.conn);
        return data.subarray(0, i);
      case "blackhole":
        this.blackholed = true;
        this.other().blackholed = true;
        return data;
      case "drop":
        this.#dropping += fault.count ?? 1;
        return data;
      case "corrupt": {
        const copy = data.slice();
        const at = i + (fault.count ?? 0);
        if (at < copy.length) copy[at] ^= 0x01;
        return copy;
      }
      case "inject":
        await this.#send(fault.forge ? fault.forge(data.slice(i, i + HEAD)) : fault.bytes ?? new Uint8Array(0));
        return data;
      case "close":
        await this.to.closeWrite().catch(() => {});
        this.blackholed = true;
        return data;
    }
  }
}

/** A running fault-injection relay. */
export class FaultRelay {
  readonly events: FaultEvent[] = [];
  #faults: { fault: Fault; resolve: (e: FaultEvent) => void }[] = [];
  #listener?: Deno.TcpListener;
  #conns = new Map<number, Deno.TcpConn[]>();
  #next = 0;

  constructor(readonly opts: FaultRelayOptions) {}

  /** Starts accepting; returns the port listened on. */
  start(): number {
    this.#listener = Deno.listen(this.opts.listen);
    (async () => {
      for await (const c of this.#listener!) this.#accept(c).catch(() => {});
    })().catch(() => {});
    return (this.#listener.addr as Deno.NetAddr).port;
  }

  /** Arms a fault; resolves when it fired. Each fault fires once. */
  arm(fault: Fault): Promise<FaultEvent> {
    return new Promise((resolve) => this.#faults.push({ fault, resolve }));
  }

  /** Faults still armed for a connection and direction. */
  pending(conn: number, dir: Dir): Fault[] {
    return this.#faults.filter((f) => f.fault.dir === dir && (f.fault.connection ?? conn) === conn).map((f) => f.fault);
  }

  /** Records that `fault` fired and disarms it. */
  fired(fault: Fault, e: FaultEvent): void {
    const i = this.#faults.findIndex((f) => f.fault === fault);
    if (i < 0) return;
    const [f] = this.#faults.splice(i, 1);
    this.events.push(e);
    f.resolve(e);
  }

  /** Resets both sides of a connection (RST to each). */
  resetConn(conn: number): void {
    for (const c of this.#conns.get(conn) ?? []) resetConn(c);
    this.#conns.delete(conn);
  }

  /** True once a connection was reset or dropped. */
  isGone(conn: number): boolean {
    return !this.#conns.has(conn);
  }

  /** Closes both sides of a connection. */
  dropConn(conn: number): void {
    for (const c of this.#conns.get(conn) ?? []) {
      try {
        c.close();
      } catch { /* closed */ }
    }
    this.#conns.delete(conn);
  }

  async #accept(client: Deno.TcpConn): Promise<void> {
    const id = this.#next++;
    let server: Deno.TcpConn;
    try {
      server = await Deno.connect(this.opts.target);
    } catch {
      client.close();
      return;
    }
    this.#conns.set(id, [client, server]);
    client.setNoDelay(true);
    server.setNoDelay(true);
    const up: Pipe = new Pipe(this, id, "up", client, server, () => down);
    const down: Pipe = new Pipe(this, id, "down", server, client, () => up);
    await Promise.all([up.run(), down.run()]);
    this.dropConn(id);
  }

  /** Stops listening and closes every connection. */
  close(): void {
    try {
      this.#listener?.close();
    } catch { /* closed */ }
    for (const id of [...this.#conns.keys()]) this.dropConn(id);
  }
}

/** Parses a CLI fault line: `DIR after N ACTION [ARG]` or `DIR frame TYPE ACTION [ARG]`. */
export function parseFault(line: string): Fault {
  const [dir, kind, where, action, arg] = line.trim().split(/\s+/);
  const actions: FaultAction[] = ["rst", "blackhole", "drop", "corrupt", "inject", "close"];
  if ((dir !== "up" && dir !== "down") || (kind !== "after" && kind !== "frame") || !/^\d+$/.test(where ?? "") ||
    !actions.includes(action as FaultAction)) {
    throw new Error(`Expected "up|down after N|frame TYPE rst|blackhole|drop|corrupt|inject|close [ARG]": ${line}`);
  }
  const f: Fault = { dir, action: action as FaultAction };
  if (kind === "after") f.afterBytes = Number(where);
  else f.onFrameType = Number(where);
  if (action === "inject") f.bytes = unhex(arg ?? "");
  else if (arg !== undefined) f.count = Number(arg);
  return f;
}

if (import.meta.main) {
  const { parseArgs } = await import("node:util");
  const { values } = parseArgs({ args: Deno.args, options: { listen: { type: "string" }, target: { type: "string" } } });
  if (!values.listen || !values.target) {
    console.error("fault_relay: --listen HOST:PORT and --target HOST:PORT are required");
    Deno.exit(2);
  }
  const relay = new FaultRelay({ listen: hostPort(values.listen), target: hostPort(values.target) });
  console.error(`fault_relay: ${values.listen} -> ${values.target} (port ${relay.start()})`);
  for await (const text of Deno.stdin.readable.pipeThrough(new TextDecoderStream())) {
    for (const line of text.split("\n").map((l) => l.trim()).filter(Boolean)) {
      if (line === "events") {
        console.log(JSON.stringify(relay.events.map((e) => ({ ...e, fault: { ...e.fault, bytes: undefined } }))));
        continue;
      }
      try {
        const f = parseFault(line);
        relay.arm(f).then((e) => console.error(`fault_relay: fired ${line} on connection ${e.connection} at ${e.offset}`));
      } catch (e) {
        console.error(`fault_relay: ${(e as Error).message}`);
      }
    }
  }
  relay.close();
}
