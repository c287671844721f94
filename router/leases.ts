/**
 * A router's database: the virtual addresses it leased in its subnet, who holds them and for
 * how long, and the listeners registered on them (docs/PROTOCOL.md, "Leases", "Listeners").
 * A lease is `held` while at least one live link holds it (its holder token in HELLO, or USE),
 * then in `grace` for its lifetime, then released. Listeners belong to the links that registered
 * them and vanish with the last one. Lease changes go to an append-only journal (router/journal.ts),
 * compacted when it grows past twice the live state; listeners live in memory only (their
 * processes register them again on a new link).
 */
import { hex, unhex } from "../common/bytes.ts";
import { ConfigError } from "../common/errors.ts";
import { contains, formatIp, parseIp, type Subnet } from "./ipv4.ts";
import { Journal, parseJournal } from "./journal.ts";
import { randomId } from "./wire.ts";

/** A live link as the table sees it: an identity, and the holder token it presented. */
export interface Holder {
  readonly id: number;
  readonly token: Uint8Array;
}

/** One leased virtual address. */
export interface Lease {
  ip: number;
  /** Real address of the host that asked for it. */
  holder: string;
  name: string;
  since: number;
  /** Lifetime after its last holder went away, ms. */
  ttlMs: number;
  /** Holder token: a link presenting it in HELLO holds the lease. */
  token: Uint8Array;
  /** Only links presenting the token may hold it (leases taken for `-- CMD`). */
  exclusive: boolean;
  /** Live links holding it now. */
  holders: Set<number>;
  /** While in grace: when it is released (ms). */
  graceUntil: number;
}

/** Where a virtual listener really is, and the links it belongs to. */
export interface Listener {
  ip: number;
  port: number;
  realHost: string;
  realPort: number;
  /** The listener id the registering process drew (hex). */
  id: string;
  links: Set<number>;
  /** It checks every connection's ticket (LISTEN flag DIRECT): it may be reached directly. */
  direct?: boolean;
}

interface LeaseRecord {
  ip: string;
  holder: string;
  name: string;
  since: number;
  ttl: number;
  token: string;
  exclusive: boolean;
}

/** The configuration error for a state file (or FILE:LINE) that cannot be loaded. */
function corrupt(where: string, why: string): ConfigError {
  return new ConfigError(`${where}: corrupt router state (${why}); move it away to start empty`);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Checks one lease record of a state file field by field (types, not only presence). */
function leaseRecord(v: unknown, where: string): LeaseRecord {
  if (!isObject(v)) throw corrupt(where, `lease is not an object: ${JSON.stringify(v)}`);
  const want = (k: string, type: string, optional: boolean) => {
    if (v[k] === undefined && optional) return;
    // deno-lint-ignore valid-typeof
    if (typeof v[k] !== type) throw corrupt(where, `lease field ${k} is not a ${type}: ${JSON.stringify(v[k])}`);
  };
  want("ip", "string", false);
  want("holder", "string", false);
  want("since", "number", false);
  want("name", "string", true);
  want("ttl", "number", true);
  want("token", "string", true);
  want("exclusive", "boolean", true);
  if (v.ttl !== undefined && !(Number.isFinite(v.ttl) && (v.ttl as number) >= 0)) throw corrupt(where, `lease ttl out of range: ${v.ttl}`);
  if (v.token !== undefined && !/^([0-9a-f]{2})*$/.test(v.token as string)) throw corrupt(where, `lease token is not hex: ${JSON.stringify(v.token)}`);
  return v as unknown as LeaseRecord;
}

/** Why a holder may not act on an address. */
export type Refused = "EPERM" | "ENOENT";

/** Leases and listeners of one subnet. */
export class LeaseTable {
  readonly leases: Map<number, Lease> = new Map();
  readonly listeners: Map<string, Listener> = new ListenerMap((l, gone) => this.onListener?.(l, gone));
  /** Called on every change of a listener (registered, moved, gone): the data plane's copy follows it. */
  onListener?: (l: Listener, gone: boolean) => void;
  #cursor: number;
  #journal?: Journal;
  #timer?: ReturnType<typeof setInterval>;
  #log: (line: string) => void = () => {};

  private constructor(readonly subnet: Subnet, readonly file: string) {
    this.#cursor = subnet.net;
  }

  /**
   * Loads the table from `file` (a journal, or a version-1 state file, which is converted), or
   * starts empty when it does not exist. Every loaded lease starts in grace: its holders have
   * its lifetime to come back. `graceMs` overrides that lifetime (tests).
   */
  static async open(subnet: Subnet, file: string, log?: (line: string) => void): Promise<LeaseTable> {
    const table = new LeaseTable(subnet, file);
    if (log) table.#log = log;
    let text = "";
    try {
      text = await Deno.readTextFile(file);
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) {
        throw new ConfigError(`Cannot read router state: ${file} (${(e as Error).message})`);
      }
    }
    const converted = table.#load(text);
    table.#journal = await Journal.open(file, 0);
    if (converted || text === "") await table.#compact();
    else table.#journal.lines = text.split("\n").filter((l) => l.trim()).length;
    table.#timer = setInterval(() => table.expire(Date.now()), 1000);
    Deno.unrefTimer(table.#timer);
    return table;
  }

  /** Parses the file; returns true when it must be rewritten in the current format. */
  #load(text: string): boolean {
    if (!text.trim()) return false;
    const subnetText = `${formatIp(this.subnet.net)}/${this.subnet.len}`;
    const now = Date.now();
    const addLease = (v: unknown, where: string) => {
      const r = leaseRecord(v, where);
      const ip = parseIp(r.ip);
      if (ip === null || !contains(this.subnet, ip)) {
        throw new ConfigError(`${where}: lease outside subnet ${subnetText}: ${r.ip}`);
      }
      const ttlMs = (r.ttl ?? 43_200) * 1000;
      this.leases.set(ip, {
        ip,
        holder: r.holder,
        name: r.name ?? "",
        since: r.since,
        ttlMs,
        token: r.token ? unhex(r.token) : randomId(),
        exclusive: !!r.exclusive,
        holders: new Set(),
        graceUntil: now + ttlMs,
      });
    };
    if (text.trimStart().startsWith("{\n") || /^\s*\{\s*"version":\s*1/.test(text)) {
      // Version 1: one JSON document, rewritten at every change.
      let state: { version?: unknown; subnet?: unknown; cursor?: unknown; leases?: unknown };
      try {
        state = JSON.parse(text);
      } catch (e) {
        throw corrupt(this.file, (e as Error).message);
      }
      if (!isObject(state)) throw corrupt(this.file, "not an object");
      if (state.version === 1) {
        if (state.subnet !== subnetText) {
          throw new ConfigError(`${this.file}: state belongs to subnet ${state.subnet}, not ${subnetText}`);
        }
        if (!Array.isArray(state.leases)) throw corrupt(this.file, "no list of leases");
        if (state.cursor !== undefined && typeof state.cursor !== "number") throw corrupt(this.file, `cursor is not a number: ${JSON.stringify(state.cursor)}`);
        this.#cursor = (state.cursor ?? 0) >>> 0;
        for (const l of state.leases) addLease(l, this.file);
        return true;
      }
    }
    let parsed;
    try {
      parsed = parseJournal(text);
    } catch (e) {
      throw corrupt(this.file, (e as Error).message);
    }
    for (const { line, value } of parsed.records) {
      const where = `${this.file}:${line}`;
      if (!isObject(value)) throw corrupt(where, `not a record: ${JSON.stringify(value)}`);
      const r = value as { uvpn_state?: unknown; subnet?: unknown; lease?: unknown; cursor?: unknown; release?: unknown };
      if (r.cursor !== undefined && typeof r.cursor !== "number") throw corrupt(where, `cursor is not a number: ${JSON.stringify(r.cursor)}`);
      if (r.uvpn_state !== undefined) {
        if (r.subnet !== subnetText) throw new ConfigError(`${this.file}: state belongs to subnet ${r.subnet}, not ${subnetText}`);
      } else if (r.lease !== undefined) {
        addLease(r.lease, where);
      } else if (r.release !== undefined) {
        const ip = typeof r.release === "string" ? parseIp(r.release) : null;
        if (ip === null) throw corrupt(where, `release of a bad address: ${JSON.stringify(r.release)}`);
        this.leases.delete(ip);
      } else if (r.cursor === undefined) {
        throw corrupt(where, "unknown record");
      }
      if (typeof r.cursor === "number") this.#cursor = r.cursor >>> 0;
    }
    if (parsed.torn) this.#log(`${this.file}: ignored a torn last record (a crash while writing it)`);
    return parsed.torn;
  }

  #record(l: Lease): LeaseRecord {
    return {
      ip: formatIp(l.ip),
      holder: l.holder,
      name: l.name,
      since: l.since,
      ttl: Math.round(l.ttlMs / 1000),
      token: hex(l.token),
      exclusive: l.exclusive,
    };
  }

  async #compact(): Promise<void> {
    const subnetText = `${formatIp(this.subnet.net)}/${this.subnet.len}`;
    await this.#journal!.compact([
      { uvpn_state: 2, subnet: subnetText, cursor: this.#cursor },
      ...[...this.leases.values()].map((l) => ({ lease: this.#record(l) })),
    ]);
  }

  async #append(value: unknown): Promise<void> {
    await this.#journal!.append(value);
    if (this.#journal!.lines > 2 * this.leases.size + 64) await this.#compact();
  }

  /** Leases the next free address after the last one handed out, held by `by`. */
  async lease(holder: string, name: string, ttlMs: number, exclusive: boolean, by: Holder): Promise<Lease | null> {
    const size = 2 ** (32 - this.subnet.len);
    for (let step = 1; step < size; step++) {
      const offset = ((this.#cursor - this.subnet.net + step) % size + size) % size;
      if (offset === 0 || offset === size - 1) continue; // network and broadcast addresses
      const ip = (this.subnet.net + offset) >>> 0;
      if (this.leases.has(ip)) continue;
      const lease: Lease = {
        ip,
        holder,
        name,
        since: Date.now(),
        ttlMs,
        token: randomId(),
        exclusive,
        holders: new Set([by.id]),
        graceUntil: 0,
      };
      this.leases.set(ip, lease);
      this.#cursor = ip;
      await this.#append({ lease: this.#record(lease), cursor: ip });
      return lease;
    }
    return null;
  }

  /** The lease holding an overlay host name (names compare case-insensitively, as in DNS). */
  byName(name: string): Lease | undefined {
    const want = name.toLowerCase();
    if (!want) return undefined;
    for (const l of this.leases.values()) if (l.name.toLowerCase() === want) return l;
    return undefined;
  }

  /** `held` or `grace`. */
  state(l: Lease): "held" | "grace" {
    return l.holders.size ? "held" : "grace";
  }

  /** Whether link `by` holds `ip` (via its token or USE). */
  holds(by: Holder, ip: number): boolean {
    return this.leases.get(ip)?.holders.has(by.id) ?? false;
  }

  /**
   * Link `by` holds `ip` from now on (USE, or a HELLO token). EPERM for an exclusive lease whose
   * token `by` did not present; ENOENT when not leased.
   */
  hold(by: Holder, ip: number): Refused | null {
    const l = this.leases.get(ip);
    if (!l) return "ENOENT";
    if (l.exclusive && !sameToken(l.token, by.token)) return "EPERM";
    l.holders.add(by.id);
    return null;
  }

  /** The leases a HELLO token names; they are held by `by` from now on. */
  holdByToken(by: Holder): Lease[] {
    if (by.token.every((b) => b === 0)) return [];
    const got = [...this.leases.values()].filter((l) => sameToken(l.token, by.token));
    for (const l of got) l.holders.add(by.id);
    return got;
  }

  /** Link `by` went away: its leases lose a holder (grace begins for those left without one), its listeners lose a link. */
  drop(by: Holder): Listener[] {
    const now = Date.now();
    for (const l of this.leases.values()) {
      if (l.holders.delete(by.id) && l.holders.size === 0) l.graceUntil = now + l.ttlMs;
    }
    const gone: Listener[] = [];
    for (const [k, r] of this.listeners) {
      if (r.links.delete(by.id) && r.links.size === 0) {
        this.listeners.delete(k);
        gone.push(r);
      }
    }
    return gone;
  }

  /** Releases leases whose grace ended (called every second). */
  async expire(now: number): Promise<void> {
    for (const l of [...this.leases.values()]) {
      if (l.holders.size === 0 && l.graceUntil <= now) {
        this.#log(`lease ${formatIp(l.ip)}${l.name ? ` (${l.name})` : ""} expired: no holder for ${Math.round(l.ttlMs / 1000)} s`);
        await this.#drop(l.ip).catch((e) => this.#log(`cannot record the expiry: ${(e as Error).message}`));
      }
    }
  }

  async #drop(ip: number): Promise<void> {
    if (!this.leases.delete(ip)) return;
    for (const [k, r] of this.listeners) if (r.ip === ip) this.listeners.delete(k);
    await this.#append({ release: formatIp(ip) });
  }

  /** Releases a lease and its listeners, by a link that holds it. */
  async release(by: Holder, ip: number): Promise<Refused | null> {
    if (!this.leases.has(ip)) return "ENOENT";
    if (!this.holds(by, ip)) return "EPERM";
    await this.#drop(ip);
    return null;
  }

  /**
   * Registers the listener ip:port at realHost:realPort with listener id `id` for link `by`
   * (`direct`: it may be reached directly). A registration with the same id gains the link; with
   * another id it is EADDRINUSE.
   */
  listen(by: Holder, ip: number, port: number, realHost: string, realPort: number, id: string, direct = false): "EADDRINUSE" | null {
    const k = listenerKey(ip, port);
    const r = this.listeners.get(k);
    if (r && r.id !== id) return "EADDRINUSE";
    if (r) {
      r.links.add(by.id);
      r.realHost = realHost;
      r.realPort = realPort;
      r.direct = direct;
      this.listeners.set(k, r); // (tells onListener where it is now)
      return null;
    }
    this.listeners.set(k, { ip, port, realHost, realPort, id, links: new Set([by.id]), direct });
    return null;
  }

  /** Link `by` no longer listens on ip:port (with listener id `id`). */
  unlisten(by: Holder, ip: number, port: number, id: string): Refused | null {
    const k = listenerKey(ip, port);
    const r = this.listeners.get(k);
    if (!r || r.id !== id) return "ENOENT";
    if (!r.links.delete(by.id)) return "EPERM";
    if (r.links.size === 0) this.listeners.delete(k);
    return null;
  }

  /** Forgets a listener that cannot be reached any more. */
  forget(ip: number, port: number): void {
    this.listeners.delete(listenerKey(ip, port));
  }

  /** The listener registered for ip:port. */
  listener(ip: number, port: number): Listener | undefined {
    return this.listeners.get(listenerKey(ip, port));
  }

  /** Stops the expiry timer and closes the journal. */
  close(): void {
    clearInterval(this.#timer);
    this.#journal?.close();
  }
}

function sameToken(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= a[i] ^ b[i];
  return d === 0 && !a.every((x) => x === 0);
}

/** The listeners' map, telling `changed` of every entry set or deleted. */
class ListenerMap extends Map<string, Listener> {
  constructor(private readonly changed: (l: Listener, gone: boolean) => void) {
    super();
  }

  override set(k: string, l: Listener): this {
    super.set(k, l);
    this.changed(l, false);
    return this;
  }

  override delete(k: string): boolean {
    const l = super.get(k);
    if (!l) return false;
    super.delete(k);
    this.changed(l, true);
    return true;
  }

  override clear(): void {
    for (const k of [...this.keys()]) this.delete(k);
  }
}

function listenerKey(ip: number, port: number): string {
  return `${ip}:${port}`;
}
