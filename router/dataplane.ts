/**
 * The router's data plane, TypeScript side: a thin typed front for libuvpnrouter.so (the C
 * thread that moves every byte of the virtual connections: native/router/, ffi/librouter.ts).
 * Owns the binary encoding of its configuration and commands, the decoding of its events (one
 * pump reads them: a single blocking FFI call waits for them, never one per connection), taking
 * a connection over from Deno (`adopt`), opening its data port (where programs present their
 * DATA tickets, checked in C: native/router/core/data.c), and reading its counters. Knows no policy: the session
 * table (router/sessions.ts) and the connections (router/connects.ts) decide what to do.
 */
import { routerLib, type RouterLib } from "../ffi/librouter.ts";
import { trace } from "./trace.ts";
import { closeQuietly } from "../common/io.ts";
import { ConfigError } from "../common/errors.ts";
import { type ConnectBody, decodeConnect, encodeConnect } from "./wire.ts";
import type { SessionEnd } from "./counters.ts";

/** What the data plane is started with (uvpn_proxy's flags). */
export interface DataPlaneConfig {
  key: Uint8Array;
  /** Bytes a receiver buffers per session direction (--session-window). */
  windowBytes: number;
  /** Session bytes held in memory by the router, in all (--memory-limit). */
  memoryLimit: number;
  /** Spool per session direction while the link is down (--spool-limit). */
  spoolLimit: number;
  /** Spool of the whole router (--spool-limit-total). */
  spoolTotal: number;
  deadMs: number;
  keepaliveMs: number;
  /** Deadline for dialing a listener (--timeout). */
  dialMs: number;
  outageMs: number;
  /** Largest bandwidth-delay allowance added to a session's window. */
  bdpMax: number;
  /** Encrypt the sessions this router answers (--encrypt). */
  encrypt: boolean;
  spoolDir: string;
}

/** An event of the data plane (native/router/core/dp.h, EV_*). */
export type DataPlaneEvent =
  | { type: "open_req"; id: number; link: number; sid: Uint8Array; connect: ConnectBody; encrypt: boolean }
  /** A peer's OPEN the data plane answered itself: the listener it installed was dialed (`setListener`). */
  | { type: "open_dialed"; id: number; link: number; sid: Uint8Array; connect: ConnectBody; encrypt: boolean; realHost: string; realPort: number }
  | { type: "opened"; id: number; status: number; encrypt: boolean }
  | { type: "dial_fail"; id: number; status: number; errno: number }
  | { type: "relay_ready"; id: number; status: number; errno: number }
  | SessionEnd & { type: "end"; id: number; opened: boolean }
  | { type: "relay_end"; id: number; reset: boolean; up: number; down: number; why: string }
  | { type: "link_down"; link: number; peer: number; sessions: number; unacked: number; why: string }
  | { type: "need_link"; peer: number }
  /** The data connection of session or relay `id` presented its DATA ticket and is attached. */
  | { type: "data_attached"; id: number }
  /** A connection to the data port was refused (`peer` is "host:port"). */
  | { type: "data_refused"; peer: string; why: string }
  /** No data connection came for session or relay `id` in time: the data plane ended it. */
  | { type: "data_expired"; id: number }
  | { type: "log"; text: string }
  | { type: "snapshot"; token: number; text: string };

/** The data plane's counters (uvpn_dp_stats, in its order). */
export interface DataPlaneStats {
  sent: number;
  received: number;
  localUp: number;
  localDown: number;
  sessionsTotal: number;
  sessionsClean: number;
  sessionsReset: number;
  sessionsLive: number;
  relaysTotal: number;
  relaysLive: number;
  linksUp: number;
  linkLosses: number;
  resumes: number;
  replayed: number;
  framesIn: number;
  framesOut: number;
  refusedMac: number;
  refusedSeq: number;
  refusedFrame: number;
  refusedProtocol: number;
  ignoredUnknown: number;
  memoryUsed: number;
  memoryPeak: number;
  memoryLimit: number;
  spoolUsed: number;
  spoolPeak: number;
  spoolLimit: number;
  spooledTotal: number;
}

const STAT_NAMES: (keyof DataPlaneStats)[] = [
  "sent", "received", "localUp", "localDown", "sessionsTotal", "sessionsClean", "sessionsReset",
  "sessionsLive", "relaysTotal", "relaysLive", "linksUp", "linkLosses", "resumes", "replayed",
  "framesIn", "framesOut", "refusedMac", "refusedSeq", "refusedFrame", "refusedProtocol",
  "ignoredUnknown", "memoryUsed", "memoryPeak", "memoryLimit", "spoolUsed", "spoolPeak",
  "spoolLimit", "spooledTotal",
];

const enc = new TextEncoder();
const dec = new TextDecoder();

/** A command record: its type, then fields written by `fill` into `n` bytes. */
function record(type: number, n: number, fill: (v: DataView, b: Uint8Array) => void, tail?: Uint8Array): Uint8Array {
  const b = new Uint8Array(1 + n + (tail?.length ?? 0));
  b[0] = type;
  fill(new DataView(b.buffer, 1), b.subarray(1));
  if (tail) b.set(tail, 1 + n);
  return b;
}

const CMD = {
  LINK_ADD: 1, OPEN: 2, ANSWER_DIAL: 3, ANSWER_REFUSE: 4, RELAY_DIAL: 7, SNAPSHOT: 10, LINK_FAIL: 11,
  LISTENER: 13, EXPECT: 15,
} as const;

/** The data port's limits (router/guard.ts's, applied there too) and how long a DATA ticket waits. */
export interface DataPortLimits {
  perSource: number;
  total: number;
  handshakeMs: number;
  ticketMs: number;
}

/** A DATA ticket the data port is to accept once (the fields its check compares). */
export interface ExpectedTicket {
  /** The session or local relay the connection joins. */
  id: number;
  ticketId: Uint8Array;
  issued: number;
  connect: ConnectBody;
  /** The client's host, as the control plane saw its link's peer (a numeric address). */
  host: string;
}

/** The errnos of a data port that cannot be bound which the user can mend (Linux numbers). */
const DATA_PORT_ERRNO: Record<number, string> = {
  13: "permission denied (EACCES)",
  98: "address already in use (EADDRINUSE)",
  99: "address not available (EADDRNOTAVAIL)",
};

/** The running data plane of this process. */
export class DataPlane {
  #lib: RouterLib;
  #events = new Uint8Array(1 << 20);
  #stopped = false;
  #snapshots = new Map<number, (text: string) => void>();
  #nextToken = 1;

  private constructor(lib: RouterLib, private readonly onEvent: (e: DataPlaneEvent) => void) {
    this.#lib = lib;
  }

  /** Starts the data-plane thread and the event pump; throws when the library cannot run. */
  static start(cfg: DataPlaneConfig, onEvent: (e: DataPlaneEvent) => void): DataPlane {
    const lib = routerLib();
    const dir = enc.encode(cfg.spoolDir);
    const b = new Uint8Array(81 + dir.length);
    const v = new DataView(b.buffer);
    b.set(cfg.key, 0);
    v.setUint32(32, cfg.windowBytes);
    v.setBigUint64(36, BigInt(cfg.memoryLimit));
    v.setBigUint64(44, BigInt(cfg.spoolLimit));
    v.setBigUint64(52, BigInt(cfg.spoolTotal));
    v.setUint32(60, cfg.deadMs);
    v.setUint32(64, cfg.keepaliveMs);
    v.setUint32(68, cfg.dialMs);
    v.setUint32(72, cfg.outageMs);
    v.setUint32(76, cfg.bdpMax);
    b[80] = cfg.encrypt ? 1 : 0;
    b.set(dir, 81);
    const r = lib.uvpn_dp_start(b, b.length);
    if (r !== 0) throw new Error(`Cannot start the data plane (libuvpnrouter.so): errno ${-r}`);
    const d = new DataPlane(lib, onEvent);
    d.#pump();
    return d;
  }

  async #pump(): Promise<void> {
    while (!this.#stopped) {
      const more = await this.#lib.uvpn_dp_wait();
      if (more <= 0) break;
      trace("wake");
      for (;;) {
        const n = this.#lib.uvpn_dp_events(this.#events, this.#events.length);
        if (n <= 0) break;
        this.#dispatch(this.#events.subarray(0, n));
      }
    }
  }

  #dispatch(buf: Uint8Array): void {
    const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    for (let off = 0; off + 5 <= buf.length;) {
      const len = v.getUint32(off);
      const type = buf[off + 4];
      const p = buf.subarray(off + 5, off + 4 + len);
      off += 4 + len;
      const e = decodeEvent(type, p);
      if (!e) continue;
      if (e.type === "snapshot") {
        this.#snapshots.get(e.token)?.(e.text);
        this.#snapshots.delete(e.token);
        continue;
      }
      try {
        this.onEvent(e);
      } catch (err) {
        console.error(`uvpn_proxy: data-plane event ${e.type} failed: ${(err as Error).stack}`);
      }
    }
  }

  #cmd(b: Uint8Array): void {
    if (this.#lib.uvpn_dp_cmd(b, b.length) !== 0) throw new Error(`Data-plane command ${b[0]} refused`);
  }

  /**
   * Takes a connection over from Deno: its descriptor goes to the data plane (returned, to be
   * given with a command) and Deno's `conn` is closed without shutting the connection down. No
   * read or write may be in flight on `conn`.
   */
  adopt(conn: Deno.TcpConn): number {
    const l = conn.localAddr as Deno.NetAddr, r = conn.remoteAddr as Deno.NetAddr;
    const hosts = enc.encode(`${l.hostname}\0${r.hostname}\0`);
    const b = new Uint8Array(4 + hosts.length);
    const v = new DataView(b.buffer);
    v.setUint16(0, l.port);
    v.setUint16(2, r.port);
    b.set(hosts, 4);
    const fd = this.#lib.uvpn_dp_adopt(b, b.length);
    if (fd < 0) throw new Error(`Cannot hand the connection ${r.hostname}:${r.port} to the data plane: errno ${-fd}`);
    closeQuietly(conn);
    return fd;
  }

  /** A router link (handshake done, MUX sent or read) joins the data plane with its keys and counters. */
  addLink(fd: number, id: number, peer: number, sendKey: Uint8Array, recvKey: Uint8Array, sendSeq: number, recvSeq: number): void {
    this.#cmd(record(CMD.LINK_ADD, 92, (v, b) => {
      v.setInt32(0, fd);
      v.setUint32(4, id);
      v.setUint32(8, peer);
      b.set(sendKey, 12);
      b.set(recvKey, 44);
      v.setBigUint64(76, BigInt(sendSeq));
      v.setBigUint64(84, BigInt(recvSeq));
    }));
  }

  /** Opens session `id` (session id `sid`) to peer `peer` for connection `c`. */
  open(id: number, peer: number, sid: Uint8Array, c: ConnectBody, encrypt: boolean): void {
    this.#cmd(record(CMD.OPEN, 39, (v, b) => {
      v.setUint32(0, id);
      v.setUint32(4, peer);
      b.set(sid, 8);
      b.set(encodeConnect(c), 24);
      b[38] = encrypt ? 1 : 0;
    }));
  }

  /** Answers an OPEN: dial the listener at host:port (registration `lid`), then OPENED. */
  answerDial(id: number, host: string, port: number, lid: Uint8Array): void {
    this.#cmd(record(CMD.ANSWER_DIAL, 14, (v, b) => {
      v.setUint32(0, id);
      v.setUint16(4, port);
      b.set(lid, 6);
    }, enc.encode(host)));
  }

  /** Answers an OPEN with a refusal. */
  answerRefuse(id: number, status: number): void {
    this.#cmd(record(CMD.ANSWER_REFUSE, 5, (v, b) => {
      v.setUint32(0, id);
      b[4] = status;
    }));
  }

  /** Local relay `id`: dial the listener at host:port (registration `lid`) for connection `c`. */
  relayDial(id: number, host: string, port: number, lid: Uint8Array, c: ConnectBody): void {
    this.#cmd(record(CMD.RELAY_DIAL, 28, (v, b) => {
      v.setUint32(0, id);
      v.setUint16(4, port);
      b.set(lid, 6);
      b.set(encodeConnect(c), 14);
    }, enc.encode(host)));
  }

  /**
   * Opens the data port on `host` (a numeric address; port 0: any free one) where programs
   * present DATA tickets, checked and attached by the data plane itself: the port bound.
   */
  dataListen(host: string, port: number, limits: DataPortLimits): number {
    const h = enc.encode(host);
    const b = new Uint8Array(18 + h.length);
    const v = new DataView(b.buffer);
    v.setUint16(0, port);
    v.setUint32(2, limits.perSource);
    v.setUint32(6, limits.total);
    v.setUint32(10, limits.handshakeMs);
    v.setUint32(14, limits.ticketMs);
    b.set(h, 18);
    const r = this.#lib.uvpn_dp_data_listen(b, b.length);
    // A port taken or an address not ours is the user's to change (--data-port): a ConfigError.
    const why = DATA_PORT_ERRNO[-r];
    if (why) throw new ConfigError(`Cannot open the data port on ${host}:${port} (--data-port): ${why}`);
    if (r < 0) throw new Error(`Cannot open the data port on ${host}:${port}: errno ${-r}`);
    return r;
  }

  /** The data port is to accept DATA ticket `t` once, within the ticket lifetime, for session or relay `t.id`. */
  expect(t: ExpectedTicket): void {
    this.#cmd(record(CMD.EXPECT, 42, (v, b) => {
      v.setUint32(0, t.id);
      v.setBigUint64(4, BigInt(t.issued));
      b.set(t.ticketId, 12);
      b.set(encodeConnect(t.connect), 28);
    }, enc.encode(t.host)));
  }

  /** No link to peer `peer` could be opened: sessions waiting for one fail with `status`. */
  linkFail(peer: number, status: number): void {
    this.#cmd(record(CMD.LINK_FAIL, 5, (v, b) => {
      v.setUint32(0, peer);
      b[4] = status;
    }));
  }

  /**
   * The listener of our subnet at virtual ip:port is at host:port (registration `lid`): a peer's
   * OPEN for it is dialed by the data plane at once. `to` null: it is gone.
   */
  setListener(ip: number, port: number, to: { host: string; port: number; lid: Uint8Array } | null): void {
    this.#cmd(record(CMD.LISTENER, 16, (v, b) => {
      v.setUint32(0, ip);
      v.setUint16(4, port);
      if (!to) return;
      v.setUint16(6, to.port);
      b.set(to.lid, 8);
    }, to ? enc.encode(to.host) : undefined));
  }

  /** One line per live session (`--status`). */
  snapshot(): Promise<string> {
    const token = this.#nextToken++;
    const p = new Promise<string>((r) => this.#snapshots.set(token, r));
    this.#cmd(record(CMD.SNAPSHOT, 4, (v) => v.setUint32(0, token)));
    return p;
  }

  /** The counters, read at once. */
  stats(): DataPlaneStats {
    const b = new Uint8Array(8 * STAT_NAMES.length);
    this.#lib.uvpn_dp_stats(b, b.length);
    const v = new DataView(b.buffer);
    const s = {} as DataPlaneStats;
    STAT_NAMES.forEach((name, i) => (s[name] = Number(v.getBigUint64(8 * i))));
    return s;
  }

  /** The AES-GCM implementation the data plane uses ("vaes-avx512", "aesni-pclmul", "portable"). */
  info(): string {
    const b = new Uint8Array(64);
    const n = this.#lib.uvpn_dp_info(b, b.length);
    return dec.decode(b.subarray(0, Math.max(0, Math.min(n, 63))));
  }

  /** Ends every session and relay (reset) and stops the thread. */
  stop(): void {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#lib.uvpn_dp_stop();
  }
}

function decodeEvent(type: number, p: Uint8Array): DataPlaneEvent | null {
  const v = new DataView(p.buffer, p.byteOffset, p.byteLength);
  const u64 = (o: number) => Number(v.getBigUint64(o));
  const text = (o: number) => dec.decode(p.subarray(o));
  switch (type) {
    case 1:
    case 11: {
      const req = { id: v.getUint32(0), link: v.getUint32(4), sid: p.slice(8, 24), connect: decodeConnect(p.subarray(24, 38)), encrypt: p[38] === 1 };
      if (type === 1) return { type: "open_req", ...req };
      return { type: "open_dialed", ...req, realPort: v.getUint16(39), realHost: text(41) };
    }
    case 2:
      return { type: "opened", id: v.getUint32(0), status: p[4], encrypt: p[5] === 1 };
    case 3:
      return { type: "dial_fail", id: v.getUint32(0), status: p[4], errno: v.getUint32(5) };
    case 4:
      return { type: "relay_ready", id: v.getUint32(0), status: p[4], errno: v.getUint32(5) };
    case 5:
      return {
        type: "end",
        id: v.getUint32(0),
        clean: p[4] === 1,
        opener: p[5] === 1,
        opened: p[6] === 1,
        sent: u64(7),
        received: u64(15),
        reconnects: v.getUint32(23),
        replayed: u64(27),
        spooled: u64(35),
        why: text(43),
      };
    case 6:
      return { type: "relay_end", id: v.getUint32(0), reset: p[4] === 1, up: u64(5), down: u64(13), why: text(21) };
    case 7:
      return { type: "link_down", link: v.getUint32(0), peer: v.getUint32(4), sessions: v.getUint32(8), unacked: u64(12), why: text(20) };
    case 8:
      return { type: "need_link", peer: v.getUint32(0) };
    case 9:
      return { type: "log", text: text(0) };
    case 12:
      return { type: "data_attached", id: v.getUint32(0) };
    case 13:
      return { type: "data_refused", peer: dec.decode(p.subarray(1, 1 + p[0])), why: text(1 + p[0]) };
    case 14:
      return { type: "data_expired", id: v.getUint32(0) };
    case 10:
      return { type: "snapshot", token: v.getUint32(0), text: text(4) };
    default:
      return null;
  }
}
