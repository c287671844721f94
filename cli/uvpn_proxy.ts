/**
 * uvpn_proxy: runs the UVPN router of one subnet. Thin entry point over router/.
 */
import { join } from "node:path";
import { ConfigError, UsageError } from "../router/errors.ts";
import { formatSubnet, parseSubnet } from "../router/ipv4.ts";
import { homeDir, keyPath, readOrCreateKey } from "../router/key.ts";
import { Router } from "../router/router.ts";
import { loadRoutes, parseHostPort, type Route } from "../router/routes.ts";
import { intFlag, parseCli, runMain } from "./common.ts";

const USAGE = `
Usage: uvpn_proxy [--routes FILE] [--subnet PREFIX] [--listen ADDR:PORT] [--key FILE] [--state FILE]

Runs the UVPN subnet router of one subnet of your private network.

  --routes FILE       route table, one "PREFIX host:port" per line (default ~/.uvpn_route)
  --subnet PREFIX     the route table entry to serve, e.g. 100.65.0.0/16 or 189.1.0.0;
                      default: the first entry whose host:port can be bound on this machine
  --listen ADDR:PORT  where to listen (default: all addresses, at the entry's port)
  --key FILE          network key (default $UVPN_KEY_FILE or ~/.uvpn_key; created, mode 0600, if absent)
  --state FILE        lease database (default ~/.uvpn/router-NET-LEN.json)
  --timeout SECONDS   deadline for connects and handshakes (default 10)
  -h, --help          this text
  -V, --version       the version
`;

/** Finds the route entry to serve: the one named by --subnet, else the first we can bind. */
async function chooseEntry(routes: Route[], subnetFlag: string | undefined, file: string): Promise<Route> {
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

await runMain("uvpn_proxy", async () => {
  const { values } = parseCli("uvpn_proxy", USAGE, Deno.args, {
    routes: { type: "string" },
    subnet: { type: "string" },
    listen: { type: "string" },
    key: { type: "string" },
    state: { type: "string" },
    timeout: { type: "string" },
  });
  const routesFile = values.routes ?? join(homeDir(), ".uvpn_route");
  const routes = await loadRoutes(routesFile);
  const self = await chooseEntry(routes, values.subnet, routesFile);
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
  const { key, created } = await readOrCreateKey(keyFile);
  if (created) {
    console.error(`uvpn_proxy: created a new network key: ${keyFile} (copy it, mode 0600, to every site and node)`);
  }
  const stateFile = values.state ??
    join(homeDir(), ".uvpn", `router-${formatSubnet(self.subnet).replace("/", "-")}.json`);
  const timeoutMs = intFlag("timeout", values.timeout, 10, 1, 3600) * 1000;
  const router = new Router({ routes, self, key, listen, stateFile, timeoutMs });
  try {
    await router.start();
  } catch (e) {
    if (e instanceof Deno.errors.AddrInUse || e instanceof Deno.errors.AddrNotAvailable) {
      throw new ConfigError(`Cannot listen on ${listen.hostname}:${listen.port}: ${(e as Error).message}`);
    }
    throw e;
  }
  const stop = () => {
    router.close();
    Deno.exit(0);
  };
  Deno.addSignalListener("SIGTERM", stop);
  Deno.addSignalListener("SIGINT", stop);
  await new Promise(() => {}); // serve until signalled
});
