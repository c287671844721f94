/**
 * A router's database: the virtual addresses it leased in its subnet and the listeners
 * registered on them, persisted crash-safely (write to a temporary file, fsync, rename, fsync
 * the directory) so a restarted router keeps them.
 */
import { ConfigError } from "../common/errors.ts";
import { writeFileAtomic } from "../common/fs.ts";
import { contains, formatIp, parseIp, type Subnet } from "./ipv4.ts";

/** One leased virtual address. */
export interface Lease {
  ip: number;
  /** Real address of the host that asked for it. */
  holder: string;
  name: string;
  since: number;
}

/** Where a virtual listener really is. */
export interface Listener {
  realHost: string;
  realPort: number;
}

interface StateFile {
  version: 1;
  subnet: string;
  cursor: number;
  leases: { ip: string; holder: string; name: string; since: number }[];
  listeners: { ip: string; port: number; realHost: string; realPort: number }[];
}

/** Leases and listeners of one subnet, saved after every change. */
export class LeaseTable {
  readonly leases: Map<number, Lease> = new Map();
  readonly listeners: Map<string, Listener> = new Map();
  #cursor: number;
  #saving: Promise<void> = Promise.resolve();

  private constructor(readonly subnet: Subnet, readonly file: string) {
    this.#cursor = subnet.net;
  }

  /** Loads the table from `file`, or starts empty when the file does not exist. */
  static async open(subnet: Subnet, file: string): Promise<LeaseTable> {
    const table = new LeaseTable(subnet, file);
    let text: string;
    try {
      text = await Deno.readTextFile(file);
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) return table;
      throw new ConfigError(`Cannot read router state: ${file} (${(e as Error).message})`);
    }
    table.#load(text);
    return table;
  }

  #load(text: string): void {
    let state: StateFile;
    try {
      state = JSON.parse(text);
    } catch (e) {
      throw new ConfigError(`${this.file}: corrupt router state (${(e as Error).message}); move it away to start empty`);
    }
    const subnetText = `${formatIp(this.subnet.net)}/${this.subnet.len}`;
    if (state.subnet !== subnetText) {
      throw new ConfigError(`${this.file}: state belongs to subnet ${state.subnet}, not ${subnetText}`);
    }
    this.#cursor = state.cursor >>> 0;
    for (const l of state.leases) {
      const ip = parseIp(l.ip);
      if (ip === null || !contains(this.subnet, ip)) {
        throw new ConfigError(`${this.file}: lease outside subnet ${subnetText}: ${l.ip}`);
      }
      this.leases.set(ip, { ip, holder: l.holder, name: l.name, since: l.since });
    }
    for (const l of state.listeners) {
      this.listeners.set(listenerKey(parseIp(l.ip) ?? 0, l.port), { realHost: l.realHost, realPort: l.realPort });
    }
  }

  /** Leases the next free address after the last one handed out. */
  async lease(holder: string, name: string): Promise<Lease | null> {
    const size = 2 ** (32 - this.subnet.len);
    for (let step = 1; step < size; step++) {
      const offset = ((this.#cursor - this.subnet.net + step) % size + size) % size;
      if (offset === 0 || offset === size - 1) continue; // network and broadcast addresses
      const ip = (this.subnet.net + offset) >>> 0;
      if (this.leases.has(ip)) continue;
      const lease = { ip, holder, name, since: Date.now() };
      this.leases.set(ip, lease);
      this.#cursor = ip;
      await this.save();
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

  /** Releases a lease and its listeners; false when it was not leased. */
  async release(ip: number): Promise<boolean> {
    if (!this.leases.delete(ip)) return false;
    for (const key of [...this.listeners.keys()]) {
      if (key.startsWith(`${ip}:`)) this.listeners.delete(key);
    }
    await this.save();
    return true;
  }

  /** Registers (or moves) the listener of ip:port. */
  async listen(ip: number, port: number, where: Listener): Promise<void> {
    this.listeners.set(listenerKey(ip, port), where);
    await this.save();
  }

  /** Forgets the listener of ip:port; false when there was none. */
  async unlisten(ip: number, port: number): Promise<boolean> {
    if (!this.listeners.delete(listenerKey(ip, port))) return false;
    await this.save();
    return true;
  }

  /** The listener registered for ip:port. */
  listener(ip: number, port: number): Listener | undefined {
    return this.listeners.get(listenerKey(ip, port));
  }

  /** Saves the table; saves are serialized so the newest state always lands last. */
  save(): Promise<void> {
    const text = JSON.stringify(this.#snapshot(), null, 1) + "\n";
    this.#saving = this.#saving.catch(() => {}).then(() => writeFileAtomic(this.file, text));
    return this.#saving;
  }

  #snapshot(): StateFile {
    return {
      version: 1,
      subnet: `${formatIp(this.subnet.net)}/${this.subnet.len}`,
      cursor: this.#cursor,
      leases: [...this.leases.values()].map((l) => ({ ...l, ip: formatIp(l.ip) })),
      listeners: [...this.listeners.entries()].map(([k, l]) => {
        const [ip, port] = k.split(":").map(Number);
        return { ip: formatIp(ip), port, ...l };
      }),
    };
  }
}

function listenerKey(ip: number, port: number): string {
  return `${ip}:${port}`;
}
