/**
 * uvpn_proxy: runs the UVPN router of one subnet. Thin entry point over router/.
 */
import { join } from "node:path";
import { ConfigError, UsageError } from "../common/errors.ts";
import { homeDir } from "../common/fs.ts";
import { formatSubnet, parseSubnet } from "../router/ipv4.ts";
import { type DirectPolicy, parseDirectPolicy } from "../router/direct.ts";
import { keyPath, readKey, readOrCreateKey } from "../router/key.ts";
import { requestOk } from "../router/client.ts";
import { FrameType } from "../router/wire.ts";
import { Router } from "../router/router.ts";
import { serveMetrics } from "../router/metrics.ts";
import { loadRoutes, parseHostPort, type Route } from "../router/routes.ts";
import { intFlag, parseCli, runMain } from "./common.ts";

const USAGE = `
Usage: uvpn_proxy [--routes FILE] [--subnet PREFIX] [--listen ADDR:PORT] [--key FILE] [--state FILE] [OPTIONS]

Runs the UVPN subnet router of one subnet of your private network.

  --routes FILE       route table, one "PREFIX host:port" per line (default ~/.uvpn_route)
  --subnet PREFIX     the route table entry to serve, e.g. 100.65.0.0/16 or 189.1.0.0;
                      default: the first entry whose host:port can be bound on this machine
  --listen ADDR:PORT  where to listen (default: all addresses, at the entry's port)
  --data-port PORT    the port, on the same address, where programs' data connections present
                      their tickets (default 0: a free port, logged at the start)
  --key FILE          network key (default $UVPN_KEY_FILE or ~/.uvpn_key; created, mode 0600, if absent)
  --state FILE        lease journal (default ~/.uvpn/router-NET-LEN.json)
  --timeout SECONDS   deadline for connects to listeners and peer routers (default 10)
  --handshake-timeout SECONDS  time a new connection gets to authenticate (default 3)
  --max-unauthenticated N  connections not yet authenticated, in all (default 4096)
  --max-unauthenticated-per-source N  the same, per source address (default 256)
  --lease-ttl SECONDS lifetime of a lease after its last holder went away, for leases taken
                      without -- CMD (default 43200); with -- CMD: --cmd-lease-ttl (default 60)
  --outage-limit SECONDS  how long a WAN outage between routers may last before both
                      applications get a reset (default 300)
  --retry-max SECONDS longest wait between reconnect attempts (default 10; the first is 0.5)
  --dead-after SECONDS  a link with nothing received for this long is declared down (default 4)
  --session-window MIB  bytes a router buffers per session and direction for a program that
                      reads slowly; its writer is slowed down beyond that (default 4)
  --memory-limit MIB  session bytes the router holds in memory, in all (default 1024)
  --spool-limit MIB   bytes spooled to disk per session and direction while the link between
                      the routers is down, before the sending program is slowed down (default 256)
  --spool-limit-total MIB  the same for the whole router (default 4096)
  --spool-dir DIR     where spool files go (default $TMPDIR or /tmp)
  --encrypt           encrypt the sessions this router opens and answers (AES-256-GCM); they are
                      always authenticated (a route line's "encrypt" does it for one subnet)
  --direct auto|never whether connections inside the site may go straight from the client to the
                      listener, brokered by the router (default auto); never: all are relayed
  --metrics ADDR:PORT serve Prometheus metrics at http://ADDR:PORT/metrics (PORT 0: a free
                      port, logged as "serving metrics on URL")
  --status            ask the running router of this entry (all entries without --subnet or
                      --listen) for its sessions and counters, then exit
  --json              with --status: print them as JSON
  -h, --help          this text
  -V, --version       the version
`;

/** Finds the route entry to serve: the one named by --subnet, else the first we can bind. */
function chooseEntry(routes: Route[], subnetFlag: string | undefined, file: string): Route {
  if (subnetFlag !== undefined) {
    let want;
    try {
      want = parseSubnet(subnetFlag);
    } catch (e) {
      throw new UsageError(`--subnet: ${(e as Error).message}`);
    }
    const found = routes.find((r) => r.subnet.net === want.net && r.subnet.len === want.len);
    if (!found) throw new ConfigError(`Subnet not in route file ${file}: ${formatSubnet(want)}`);
    return found;
  }
  for (const r of routes) {
    try {
      const l = Deno.listen({ hostname: r.host, port: r.port });
      l.close();
      return r;
    } catch { /* not this machine's, or busy */ }
  }
  throw new ConfigError(`No entry of ${file} can be bound on this machine; choose one with --subnet`);
}

/** --status without --subnet: every router of the route file, each under a heading (or in one JSON array). */
async function statusOfAll(routes: Route[], keyFile: string, json: boolean): Promise<number> {
  const key = await readKey(keyFile);
  let failures = 0;
  const all: unknown[] = [];
  for (const r of routes) {
    const where = { subnet: formatSubnet(r.subnet), router: `${r.host}:${r.port}` };
    if (!json) console.log(`== ${where.subnet} ${where.router}`);
    try {
      const text = await requestOk(r, key, FrameType.STATUS, new Uint8Array(json ? [1] : []), "the status");
      if (json) all.push({ ...where, status: JSON.parse(new TextDecoder().decode(text)) });
      else await Deno.stdout.write(text);
    } catch (e) {
      failures++;
      if (json) all.push({ ...where, error: (e as Error).message });
      else console.log(`unreachable: ${(e as Error).message}`);
    }
  }
  if (json) console.log(JSON.stringify(all, null, 2));
  return failures === routes.length ? 5 : 0;
}

await runMain("uvpn_proxy", async () => {
  const { values } = parseCli("uvpn_proxy", USAGE, Deno.args, {
    routes: { type: "string" },
    subnet: { type: "string" },
    listen: { type: "string" },
    "data-port": { type: "string" },
    key: { type: "string" },
    state: { type: "string" },
    timeout: { type: "string" },
    "handshake-timeout": { type: "string" },
    "max-unauthenticated": { type: "string" },
    "max-unauthenticated-per-source": { type: "string" },
    "lease-ttl": { type: "string" },
    "cmd-lease-ttl": { type: "string" },
    "outage-limit": { type: "string" },
    "retry-max": { type: "string" },
    "dead-after": { type: "string" },
    "spool-limit": { type: "string" },
    "spool-limit-total": { type: "string" },
    "session-window": { type: "string" },
    "memory-limit": { type: "string" },
    "spool-dir": { type: "string" },
    encrypt: { type: "boolean" },
    direct: { type: "string" },
    metrics: { type: "string" },
    status: { type: "boolean" },
    json: { type: "boolean" },
  });
  if (values.json && !values.status) throw new UsageError("--json goes with --status");
  let direct: DirectPolicy;
  try {
    direct = parseDirectPolicy(values.direct ?? "auto");
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  const routesFile = values.routes ?? join(homeDir(), ".uvpn_route");
  const routes = await loadRoutes(routesFile);
  if (values.status && values.subnet === undefined && values.listen === undefined) {
    return await statusOfAll(routes, keyPath(values.key), values.json === true);
  }
  const self = chooseEntry(routes, values.subnet, routesFile);
  let listen = { hostname: "0.0.0.0", port: self.port };
  if (values.listen !== undefined) {
    try {
      const hp = parseHostPort(values.listen);
      listen = { hostname: hp.host, port: hp.port };
    } catch (e) {
      throw new UsageError(`--listen: ${(e as Error).message}`);
    }
  }
  const keyFile = keyPath(values.key);
  if (values.status) {
    const host = listen.hostname === "0.0.0.0" ? self.host : listen.hostname;
    const body = new Uint8Array(values.json ? [1] : []);
    const text = await requestOk({ host, port: listen.port }, await readKey(keyFile), FrameType.STATUS, body, "the status");
    if (values.json) console.log(JSON.stringify(JSON.parse(new TextDecoder().decode(text)), null, 2));
    else await Deno.stdout.write(text);
    return;
  }
  const { key, created } = await readOrCreateKey(keyFile);
  if (created) {
    console.error(`uvpn_proxy: created a new network key: ${keyFile} (copy it, mode 0600, to every site and node)`);
  }
  const stateFile = values.state ??
    join(homeDir(), ".uvpn", `router-${formatSubnet(self.subnet).replace("/", "-")}.json`);
  const timeoutMs = intFlag("timeout", values.timeout, 10, 1, 3600) * 1000;
  const spoolDir = values["spool-dir"] ?? Deno.env.get("TMPDIR") ?? "/tmp";
  const MIB = 1024 * 1024;
  const session = {
    outageLimitMs: intFlag("outage-limit", values["outage-limit"], 300, 1, 86400 * 7) * 1000,
    retryMaxMs: intFlag("retry-max", values["retry-max"], 10, 1, 3600) * 1000,
    deadMs: intFlag("dead-after", values["dead-after"], 4, 1, 3600) * 1000,
    windowBytes: intFlag("session-window", values["session-window"], 4, 1, 1024) * MIB,
    memoryLimit: intFlag("memory-limit", values["memory-limit"], 1024, 16, 1024 * 1024) * MIB,
    spool: {
      limitBytes: intFlag("spool-limit", values["spool-limit"], 256, 1, 1024 * 1024) * MIB,
      totalBytes: intFlag("spool-limit-total", values["spool-limit-total"], 4096, 1, 1024 * 1024 * 1024) * MIB,
      dir: spoolDir,
    },
    encrypt: values.encrypt === true,
  };
  let metrics: { hostname: string; port: number } | undefined;
  if (values.metrics !== undefined) {
    try {
      const hp = parseHostPort(values.metrics, { anyPort: true });
      metrics = { hostname: hp.host, port: hp.port };
    } catch (e) {
      throw new UsageError(`--metrics: ${(e as Error).message}`);
    }
  }
  const limits = {
    handshakeMs: intFlag("handshake-timeout", values["handshake-timeout"], 3, 1, 600) * 1000,
    total: intFlag("max-unauthenticated", values["max-unauthenticated"], 4096, 1, 1_000_000),
    perSource: intFlag("max-unauthenticated-per-source", values["max-unauthenticated-per-source"], 256, 1, 1_000_000),
  };
  const leaseTtlMs = {
    open: intFlag("lease-ttl", values["lease-ttl"], 43_200, 1, 86400 * 365) * 1000,
    exclusive: intFlag("cmd-lease-ttl", values["cmd-lease-ttl"], 60, 1, 86400 * 365) * 1000,
  };
  const dataPort = intFlag("data-port", values["data-port"], 0, 0, 65535);
  const router = new Router({ routes, self, key, listen, dataPort, stateFile, timeoutMs, session, limits, leaseTtlMs, direct });
  try {
    await router.start();
  } catch (e) {
    if (e instanceof Deno.errors.AddrInUse || e instanceof Deno.errors.AddrNotAvailable) {
      throw new ConfigError(`Cannot listen on ${listen.hostname}:${listen.port}: ${(e as Error).message}`);
    }
    throw e;
  }
  if (metrics) {
    try {
      serveMetrics(metrics, () => router.status(), (a) => console.error(`uvpn_proxy: serving metrics on http://${a.hostname}:${a.port}/metrics`));
    } catch (e) {
      router.close();
      throw new ConfigError(`Cannot serve metrics on ${metrics.hostname}:${metrics.port}: ${(e as Error).message}`);
    }
  }
  const stop = () => {
    router.close();
    Deno.exit(0);
  };
  Deno.addSignalListener("SIGTERM", stop);
  Deno.addSignalListener("SIGINT", stop);
  await new Promise(() => {}); // serve until signalled
});
