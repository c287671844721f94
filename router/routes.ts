/**
 * The route table file (default ~/.uvpn_route): one subnet router per line, `PREFIX host:port`,
 * optionally followed by `udp=udp` (the default) or `udp=tcp` (how other routers carry UDP
 * datagrams to this line's router, docs/PROTOCOL.md, "Datagrams"), by `encrypt` (sessions to
 * this line's router are encrypted, not only authenticated) and by `site=NAME` (routers of one
 * site share a private LAN: their nodes may connect directly, docs/UVPN.md, "The direct path").
 * Owns parsing, validation (with `FILE:LINE: why` errors) and subnet lookup.
 */
import { ConfigError } from "../common/errors.ts";
import { contains, formatSubnet, overlaps, parseSubnet, type Subnet } from "./ipv4.ts";

/** One line of the route table: a subnet and the host:port of its router. */
export interface Route {
  subnet: Subnet;
  host: string;
  port: number;
  /** How peer routers carry UDP to this router: as UDP, or inside a TCP carrier link. */
  udp: "udp" | "tcp";
  /** Sessions to this router are encrypted (AES-256-GCM), not only authenticated. */
  encrypt?: boolean;
  /** The site of this line's router (`site=NAME`); without it the router's nodes are a site of their own. */
  site?: string;
  /** Line number in the file, for messages. */
  line: number;
}

/** Splits "host:port" or "[v6]:port"; throws with a reason. `anyPort`: port 0 (any free port) too. */
export function parseHostPort(text: string, opts: { anyPort?: boolean } = {}): { host: string; port: number } {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(text) ?? /^([^:\s]+):(\d+)$/.exec(text);
  if (!m) throw new Error(`Expected host:port: ${text}`);
  const port = Number(m[2]);
  const low = opts.anyPort ? 0 : 1;
  if (port < low || port > 65535) throw new Error(`Port out of range (${low} to 65535): ${m[2]}`);
  return { host: m[1], port };
}

/** Parses route table text. `file` names it in error messages. */
export function parseRoutes(text: string, file: string): Route[] {
  const routes: Route[] = [];
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const lineNo = i + 1;
    const content = lines[i].replace(/#.*/, "").trim();
    if (content === "") continue;
    const fields = content.split(/\s+/);
    const fail = (why: string): never => {
      throw new ConfigError(`${file}:${lineNo}: ${why}`);
    };
    if (fields.length < 2 || fields.length > 5) {
      fail(`expected "PREFIX host:port [udp=udp|udp=tcp] [encrypt] [site=NAME]", found ${fields.length} field(s): ${content}`);
    }
    let udp: "udp" | "tcp" | undefined = "udp";
    let encrypt = false;
    let site: string | undefined;
    const seen = new Set<string>();
    for (const opt of fields.slice(2)) {
      const name = opt.replace(/=.*/, "");
      if (seen.has(name)) fail(`option given twice: ${opt}`);
      seen.add(name);
      if (opt === "encrypt") encrypt = true;
      else if (name === "udp") {
        udp = /^udp=(udp|tcp)$/.exec(opt)?.[1] as "udp" | "tcp" | undefined;
        if (!udp) fail(`expected udp=udp or udp=tcp: ${opt}`);
      } else if (name === "site") {
        site = /^site=([A-Za-z0-9._-]{1,63})$/.exec(opt)?.[1];
        if (!site) fail(`expected site=NAME (1 to 63 letters, digits, '.', '_' or '-'): ${opt}`);
      } else fail(`expected udp=udp, udp=tcp, encrypt or site=NAME: ${opt}`);
    }
    let subnet: Subnet;
    let hostPort: { host: string; port: number };
    try {
      subnet = parseSubnet(fields[0]);
    } catch (e) {
      return fail(lowerFirst((e as Error).message));
    }
    try {
      hostPort = parseHostPort(fields[1].replace(/^<(.*)>$/, "$1"));
    } catch (e) {
      return fail(lowerFirst((e as Error).message));
    }
    for (const r of routes) {
      if (overlaps(r.subnet, subnet)) {
        fail(`subnet ${formatSubnet(subnet)} overlaps ${formatSubnet(r.subnet)} from line ${r.line}`);
      }
    }
    routes.push({ subnet, ...hostPort, udp: udp!, ...(encrypt ? { encrypt } : {}), ...(site ? { site } : {}), line: lineNo });
  }
  if (routes.length === 0) throw new ConfigError(`${file}: no routes in the file`);
  return routes;
}

/** Reads and parses a route table file. */
export async function loadRoutes(file: string): Promise<Route[]> {
  let text: string;
  try {
    text = await Deno.readTextFile(file);
  } catch (e) {
    throw new ConfigError(`Cannot read route file: ${file} (${(e as Error).message})`);
  }
  return parseRoutes(text, file);
}

/** The route whose subnet holds `ip`, if any. */
export function routeFor(routes: Route[], ip: number): Route | undefined {
  return routes.find((r) => contains(r.subnet, ip));
}

/** True when the routers of routes a and b are of one site (the same route, or the same `site=`). */
export function sameSite(a: Route, b: Route): boolean {
  return a === b || (a.site !== undefined && a.site === b.site);
}

function lowerFirst(s: string): string {
  return s.charAt(0).toLowerCase() + s.slice(1);
}
