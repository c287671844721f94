/**
 * uvpn_register: leases, lists and releases virtual addresses at the home router, and runs a
 * command inside the overlay with a fresh lease (`-r -- CMD`), holding the lease on its link
 * while CMD runs. Thin entry point over router/client.ts and cli/overlay_run.ts.
 */
import { be32, concat, hex, u32, unhex } from "../common/bytes.ts";
import { NetworkError, UsageError } from "../common/errors.ts";
import { formatIp, formatSubnet, parseIp } from "../router/ipv4.ts";
import { keyPath, readKey } from "../router/key.ts";
import { ask, connectRouter, holdLeases, type RouterAddr } from "../router/client.ts";
import { parseHostPort } from "../router/routes.ts";
import { FrameType, ipBytes, Status, statusName } from "../router/wire.ts";
import { intFlag, parseCli, runMain } from "./common.ts";
import { type Mode, MODES, runInOverlay } from "./overlay_run.ts";

const USAGE = `
Usage: uvpn_register -r [-s] [--name NAME]
       uvpn_register -r [-s] [--name NAME] [--mode auto|preload|seccomp] -- CMD [ARGS...]
       uvpn_register --list
       uvpn_register --release ADDR

Leases a virtual address of your home router's subnet (or lists / releases leases).
With -- CMD, runs CMD inside the overlay with the new address (UVPN_SRC_ADDR and the home
router set for it) and exits with CMD's status (128 + signal number if a signal killed it);
the lease is held while CMD (or any process that inherited its link) runs, then kept for
its lifetime (default 60 s) and released. Without -- CMD a lease lives while programs use
it, then for its lifetime (default 12 h).

  -r, --register      lease a new, unique virtual address and print it
  -s, --silent        print only the address, nothing else
      --name NAME     register NAME for the new address (letters, digits, '-'; unique in
                      the subnet): overlay programs reach it as NAME or NAME.uvpn
      --ttl SECONDS   the lease's lifetime once no process holds it (default: the router's)
      --list          list the router's leases: ADDR, holder, name, age (s), state
      --release ADDR  give a leased address back (only its holder may)
      --mode MODE     how CMD joins the overlay: preload (libuvpn.so alone, dynamic programs),
                      seccomp (the supervisor in libmyrt.so, any program) or auto (default:
                      preload for dynamically linked executables, seccomp for static ones;
                      static programs that preloaded ones start get the supervisor too)
      --proxy HOST:PORT  the home router (default $UVPN_HOME_PROXY:$UVPN_HOME_PROXY_PORT)
      --key FILE      network key (default $UVPN_KEY_FILE or ~/.uvpn_key)
  -h, --help          this text
  -V, --version       the version

Environment: UVPN_HOME_PROXY, UVPN_HOME_PROXY_PORT (the home router), UVPN_KEY_FILE,
UVPN_HOLDER (the holder token -- CMD gets: lets --release give back its lease);
MYRT_LIBDIR (where libuvpn.so, libmyrt.so and uvpn_supervise are, default beside this
command). CMD may set UVPN_BIND_ANY=virtual (wildcard binds become virtual-only).
`;

function homeRouter(flag: string | undefined): RouterAddr {
  if (flag !== undefined) {
    try {
      return parseHostPort(flag);
    } catch (e) {
      throw new UsageError(`--proxy: ${(e as Error).message}`);
    }
  }
  const host = Deno.env.get("UVPN_HOME_PROXY");
  const portText = Deno.env.get("UVPN_HOME_PROXY_PORT");
  if (!host || !portText) {
    throw new UsageError("No home router: set UVPN_HOME_PROXY and UVPN_HOME_PROXY_PORT, or pass --proxy HOST:PORT");
  }
  const port = Number(portText);
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new UsageError(`UVPN_HOME_PROXY_PORT is not a port: ${portText}`);
  }
  return { host, port };
}

await runMain("uvpn_register", async () => {
  // Everything after the first "--" is the command to run in the overlay.
  const split = Deno.args.indexOf("--");
  const command = split < 0 ? [] : Deno.args.slice(split + 1);
  const { values } = parseCli("uvpn_register", USAGE, split < 0 ? Deno.args : Deno.args.slice(0, split), {
    register: { type: "boolean", short: "r" },
    silent: { type: "boolean", short: "s" },
    name: { type: "string" },
    ttl: { type: "string" },
    list: { type: "boolean" },
    release: { type: "string" },
    proxy: { type: "string" },
    key: { type: "string" },
    mode: { type: "string" },
  });
  if (split >= 0 && (!values.register || command.length === 0)) {
    throw new UsageError("-- CMD needs -r and a command\nTry 'uvpn_register --help'.");
  }
  const actions = [values.register, values.list, values.release !== undefined].filter(Boolean).length;
  if (actions !== 1) throw new UsageError("Choose one of -r, --list or --release ADDR\nTry 'uvpn_register --help'.");
  if (values.mode !== undefined && split < 0) throw new UsageError(`--mode needs -- CMD: ${values.mode}`);
  const mode = (values.mode ?? "auto") as Mode;
  if (!MODES.includes(mode)) {
    throw new UsageError(`--mode takes auto, preload or seccomp: ${mode}`);
  }
  const ttl = values.ttl === undefined ? 0 : intFlag("ttl", values.ttl, 0, 1, 86400 * 365);
  const router = homeRouter(values.proxy);
  const key = await readKey(keyPath(values.key));
  const where = `${router.host}:${router.port}`;
  const link = await connectRouter(router, key, { holder: holderToken() });
  let holding = false;
  try {
    if (values.list) {
      const a = await ask(link, FrameType.LIST);
      if (a.status !== Status.OK) throw new NetworkError(`Router refused the lease list: ${statusName(a.status)}`);
      await Deno.stdout.write(a.data);
      return;
    }
    if (values.release !== undefined) {
      const ip = parseIp(values.release);
      if (ip === null) throw new UsageError(`--release takes an IPv4 address: ${values.release}`);
      await ask(link, FrameType.USE, ipBytes(ip)); // a lease taken without -- CMD may be used by anyone
      const a = await ask(link, FrameType.RELEASE, ipBytes(ip));
      if (a.status === Status.EPERM) {
        throw new NetworkError(`Router refused to release ${values.release}: EPERM (another process holds it)`);
      }
      if (a.status !== Status.OK) throw new NetworkError(`Router refused to release ${values.release}: ${statusName(a.status)}`);
      if (!values.silent) console.log(`Released ${values.release} at router ${where}`);
      return;
    }
    const name = values.name ?? "";
    if (!/^[A-Za-z0-9-]{0,63}$/.test(name)) {
      throw new UsageError(`--name takes up to 63 letters, digits or '-': ${name}`);
    }
    const nameBytes = new TextEncoder().encode(name);
    const exclusive = split >= 0 ? 1 : 0;
    const body = concat(new Uint8Array([exclusive]), be32(ttl), new Uint8Array([nameBytes.length]), nameBytes);
    const reply = await ask(link, FrameType.LEASE, body);
    if (reply.status === Status.EADDRINUSE && name) {
      throw new NetworkError(`Name already leased in the subnet of router ${where}: ${name}`);
    }
    if (reply.status !== Status.OK) throw new NetworkError(`Router refused a lease: ${statusName(reply.status)}`);
    const data = reply.data;
    if (data.length !== 20) throw new NetworkError(`Bad lease reply from router: ${where}`);
    const addr = formatIp(u32(data, 0));
    const token = data.slice(4, 20);
    if (split < 0) {
      console.log(values.silent ? addr : `Leased virtual address ${addr} from router ${where}`);
      return;
    }
    // CMD owns stdout: the lease is reported on stderr.
    if (!values.silent) console.error(`Leased virtual address ${addr} from router ${where}; running ${command[0]}`);
    const info = await ask(link, FrameType.INFO);
    const nets: string[] = [];
    for (let i = 0; info.status === Status.OK && i + 5 <= info.data.length; i += 5) {
      nets.push(formatSubnet({ net: u32(info.data, i), len: info.data[i + 4] }));
    }
    const prior = Deno.env.get("UVPN_NETWORKS");
    const hold = holdLeases(router, key, link, token, (l) => console.error(`uvpn_register: ${l}`));
    holding = true;
    try {
      return await runInOverlay(mode, command, {
        UVPN_SRC_ADDR: addr,
        UVPN_HOME_PROXY: router.host,
        UVPN_HOME_PROXY_PORT: String(router.port),
        UVPN_KEY_FILE: keyPath(values.key),
        UVPN_HOLDER: hex(token),
        UVPN_NETWORKS: [...(prior ? [prior] : []), ...nets].join(","),
      }, { notice: !values.silent });
    } finally {
      hold.stop();
    }
  } finally {
    if (!holding) link.close();
  }
});

/** The holder token this process was given (UVPN_HOLDER, set for -- CMD), else none. */
function holderToken(): Uint8Array | undefined {
  const t = Deno.env.get("UVPN_HOLDER");
  if (!t) return undefined;
  try {
    const b = unhex(t);
    if (b.length === 16) return b;
  } catch { /* not hex */ }
  throw new UsageError(`UVPN_HOLDER is not a holder token (32 hex digits): ${t}`);
}
