/**
 * IPv4 addresses as unsigned 32-bit numbers, and subnets (CIDR prefixes) over them.
 */

/** An IPv4 subnet: network address and prefix length. */
export interface Subnet {
  net: number;
  len: number;
}

/** Parses dotted-quad IPv4; returns null when it is not one. */
export function parseIp(s: string): number | null {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(s);
  if (!m) return null;
  const parts = m.slice(1).map(Number);
  if (parts.some((p) => p > 255)) return null;
  return ((parts[0] << 24) | (parts[1] << 16) | (parts[2] << 8) | parts[3]) >>> 0;
}

/** Formats a numeric IPv4 address as a dotted quad. */
export function formatIp(ip: number): string {
  return [ip >>> 24, (ip >>> 16) & 255, (ip >>> 8) & 255, ip & 255].join(".");
}

/** The netmask of a prefix length, as a number. */
export function mask(len: number): number {
  return len === 0 ? 0 : (0xffffffff << (32 - len)) >>> 0;
}

/** Whether an address lies in a subnet. */
export function contains(s: Subnet, ip: number): boolean {
  return ((ip & mask(s.len)) >>> 0) === s.net;
}

/** Formats a subnet as CIDR, e.g. "100.64.0.0/16". */
export function formatSubnet(s: Subnet): string {
  return `${formatIp(s.net)}/${s.len}`;
}

/**
 * Parses "A.B.C.D/LEN" or a bare "A.B.C.D" (a /16, as in the seed's route file).
 * Throws an Error whose message says what is wrong.
 */
export function parseSubnet(text: string): Subnet {
  const [addr, lenText, extra] = text.split("/");
  if (extra !== undefined) throw new Error(`Bad subnet: ${text}`);
  const ip = parseIp(addr);
  if (ip === null) throw new Error(`Bad IPv4 address: ${addr}`);
  const len = lenText === undefined ? 16 : Number(lenText);
  if (!/^\d+$/.test(lenText ?? "16") || len < 8 || len > 30) {
    throw new Error(`Bad prefix length (8 to 30): ${lenText}`);
  }
  if (((ip & mask(len)) >>> 0) !== ip) {
    throw new Error(`Host bits set in subnet: ${text} (network is ${formatIp((ip & mask(len)) >>> 0)}/${len})`);
  }
  return { net: ip, len };
}

/** Whether two subnets overlap. */
export function overlaps(a: Subnet, b: Subnet): boolean {
  const len = Math.min(a.len, b.len);
  return ((a.net & mask(len)) >>> 0) === ((b.net & mask(len)) >>> 0);
}
