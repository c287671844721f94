/**
 * The two-site test topology (root only), built from network namespaces: two private LANs
 * (198.18.1.0/24 and 198.18.2.0/24), each with a head node and compute nodes that have no route
 * beyond their LAN (a bridge on the head joins them), and a "WAN" link between the heads
 * (198.19.0.0/24). A UVPN router runs on each head; each compute node leases a virtual address
 * with its own overlay name and runs with its own host name (a UTS namespace per command), as
 * real nodes do. Everything is created by `Sites.start` and removed by `Sites.stop`, even after
 * a failure; processes are stopped by pid.
 */
import { join } from "node:path";
import { DENO, PRELOAD_UVPN, Proc, ROOT, run, SANITIZE_RT, type SpawnOptions } from "../helpers.ts";

/** A compute node: its namespace, overlay name, site and virtual address. */
export interface Node {
  name: string;
  ns: string;
  site: "a" | "b";
  lanAddr: string;
  addr: string;
}

const uvpn = (name: string) => ["run", "-A", "--no-prompt", join(ROOT, "cli", `${name}.ts`)];

async function ip(...args: string[]): Promise<void> {
  const r = await run("ip", args);
  if (r.code !== 0) throw new Error(`ip ${args.join(" ")}: ${r.stderr}`);
}

/** Two sites with `perSite` compute nodes each (named a1, a2, ... and b1, b2, ...). */
export class Sites {
  readonly tag = `m${Deno.pid % 100000}`;
  readonly heads = { a: `${this.tag}-headA`, b: `${this.tag}-headB` };
  readonly nodes: Node[] = [];
  readonly routes: string;
  readonly procs: Proc[] = [];
  readonly routers: Record<"a" | "b", Proc | undefined> = { a: undefined, b: undefined };
  #made: string[] = [];

  constructor(readonly dir: string, perSite = 2) {
    this.routes = join(dir, "routes");
    for (const site of ["a", "b"] as const) {
      for (let i = 1; i <= perSite; i++) {
        const name = `${site}${i}`;
        this.nodes.push({ name, ns: `${this.tag}-${name}`, site, lanAddr: `198.18.${site === "a" ? 1 : 2}.${10 + i}`, addr: "" });
      }
    }
  }

  /** Environment shared by every process of the overlay (in the sanitizer pass the ASan runtime
   * is preloaded, as the routers load the instrumented data plane). */
  get baseEnv(): Record<string, string> {
    return {
      HOME: this.dir,
      UVPN_KEY_FILE: join(this.dir, "key"),
      PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
      ...(SANITIZE_RT ? { LD_PRELOAD: SANITIZE_RT } : {}),
    };
  }

  /** The seed's wrapper variables of a node's site (its home router as the node reaches it). */
  siteEnv(site: "a" | "b"): Record<string, string> {
    return { ...this.baseEnv, UVPN_HOME_PROXY: site === "a" ? "198.18.1.1" : "198.18.2.1", UVPN_HOME_PROXY_PORT: site === "a" ? "7001" : "7002" };
  }

  /** The full overlay environment of a program on node n (libuvpn.so, its virtual address). */
  env(n: Node): Record<string, string> {
    return { ...this.siteEnv(n.site), UVPN_SRC_ADDR: n.addr, LD_PRELOAD: PRELOAD_UVPN };
  }

  node(name: string): Node {
    const n = this.nodes.find((x) => x.name === name);
    if (!n) throw new Error(`no node ${name}`);
    return n;
  }

  /** argv run on node n: in its namespace, with its host name. */
  argv(n: Node, cmd: string, args: string[]): [string, string[]] {
    return ["ip", ["netns", "exec", n.ns, "unshare", "--uts", "--", "sh", "-c", 'hostname "$0" && exec "$@"', n.name, cmd, ...args]];
  }

  /** Runs a command on node n to completion. */
  run(n: Node, cmd: string, args: string[], opts: SpawnOptions = {}) {
    const [c, a] = this.argv(n, cmd, args);
    return run(c, a, { env: this.env(n), ...opts });
  }

  /** Starts a command on node n in the background (stopped by `stop`). */
  spawn(n: Node, cmd: string, args: string[], opts: SpawnOptions = {}): Proc {
    const [c, a] = this.argv(n, cmd, args);
    const p = new Proc(c, a, { env: this.env(n), ...opts });
    this.procs.push(p);
    return p;
  }

  async #build(): Promise<void> {
    const add = async (ns: string) => {
      await ip("netns", "add", ns);
      this.#made.push(ns);
      await ip("-n", ns, "link", "set", "lo", "up");
    };
    for (const site of ["a", "b"] as const) {
      const head = this.heads[site], lan = site === "a" ? 1 : 2;
      await add(head);
      await ip("-n", head, "link", "add", "br0", "type", "bridge");
      await ip("-n", head, "addr", "add", `198.18.${lan}.1/24`, "dev", "br0");
      await ip("-n", head, "link", "set", "br0", "up");
      for (const n of this.nodes.filter((x) => x.site === site)) {
        await add(n.ns);
        await ip("link", "add", "eth0", "netns", n.ns, "type", "veth", "peer", "name", `p${n.name}`, "netns", head);
        await ip("-n", n.ns, "addr", "add", `${n.lanAddr}/24`, "dev", "eth0");
        await ip("-n", n.ns, "link", "set", "eth0", "up");
        await ip("-n", head, "link", "set", `p${n.name}`, "master", "br0", "up");
      }
    }
    await ip("link", "add", "wan0", "netns", this.heads.a, "type", "veth", "peer", "name", "wan0", "netns", this.heads.b);
    await ip("-n", this.heads.a, "addr", "add", "198.19.0.1/24", "dev", "wan0");
    await ip("-n", this.heads.b, "addr", "add", "198.19.0.2/24", "dev", "wan0");
    await ip("-n", this.heads.a, "link", "set", "wan0", "up");
    await ip("-n", this.heads.b, "link", "set", "wan0", "up");
  }

  /** Builds the namespaces, starts both routers and leases every node's address and name. */
  async start(): Promise<void> {
    Deno.writeTextFileSync(this.routes, "100.64.0.0/16 198.19.0.1:7001\n100.65.0.0/16 198.19.0.2:7002\n");
    await this.#build();
    for (const [site, prefix] of [["a", "100.64.0.0/16"], ["b", "100.65.0.0/16"]] as const) {
      const p = new Proc("ip", ["netns", "exec", this.heads[site], DENO, ...uvpn("uvpn_proxy"), "--routes", this.routes, "--subnet", prefix, "--state", join(this.dir, `router-${site}.json`)], { env: this.baseEnv });
      this.routers[site] = p;
      await p.waitFor(/serving subnet/);
    }
    await Promise.all(this.nodes.map(async (n) => {
      const r = await run("ip", ["netns", "exec", n.ns, DENO, ...uvpn("uvpn_register"), "-s", "-r", "--name", n.name], { env: this.siteEnv(n.site) });
      if (r.code !== 0) throw new Error(`uvpn_register on ${n.name}: ${r.stderr}`);
      n.addr = r.stdout.trim();
    }));
  }

  /** The counters of both routers (`uvpn_proxy --status`, asked from the heads). */
  async status(): Promise<string> {
    const r = await run("ip", ["netns", "exec", this.heads.a, DENO, ...uvpn("uvpn_proxy"), "--status", "--routes", this.routes], { env: this.baseEnv });
    return r.stdout + r.stderr;
  }

  /** Stops every process by pid, then removes the namespaces (their veths and bridges go too). */
  async stop(): Promise<void> {
    for (const p of this.procs.reverse()) await p.stop();
    for (const site of ["b", "a"] as const) await this.routers[site]?.stop();
    for (const ns of this.#made.reverse()) await run("ip", ["netns", "del", ns]);
  }
}
