/**
 * The seed's own setting, built from network namespaces: two private LANs (198.18.1.0/24 and
 * 198.18.2.0/24), each with a compute node that has no route beyond its LAN, and two head nodes
 * joined by a "WAN" link (198.19.0.0/24). Routers run on the heads; servers on each site's node
 * are reached from the other site's node through them. Everything is created and deleted here.
 * Needs root (ip netns); CI runs as root.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { DENO, LIBUVPN, Proc, ROOT, run, tempDir } from "../helpers.ts";

const isRoot = Deno.uid() === 0;
const tag = `myrt${Deno.pid}`;
const ns = { nodeA: `${tag}-nodeA`, headA: `${tag}-headA`, headB: `${tag}-headB`, nodeB: `${tag}-nodeB` };

async function ip(...args: string[]): Promise<void> {
  const r = await run("ip", args);
  if (r.code !== 0) throw new Error(`ip ${args.join(" ")}: ${r.stderr}`);
}

/** veth pair between two namespaces with an address on each end. */
async function link(a: string, aAddr: string, b: string, bAddr: string, name: string): Promise<void> {
  await ip("link", "add", `${name}a`, "netns", a, "type", "veth", "peer", "name", `${name}b`, "netns", b);
  await ip("-n", a, "addr", "add", aAddr, "dev", `${name}a`);
  await ip("-n", b, "addr", "add", bAddr, "dev", `${name}b`);
  await ip("-n", a, "link", "set", `${name}a`, "up");
  await ip("-n", b, "link", "set", `${name}b`, "up");
}

async function build(): Promise<void> {
  for (const n of Object.values(ns)) {
    await ip("netns", "add", n);
    await ip("-n", n, "link", "set", "lo", "up");
  }
  await link(ns.nodeA, "198.18.1.2/24", ns.headA, "198.18.1.1/24", "la");
  await link(ns.nodeB, "198.18.2.2/24", ns.headB, "198.18.2.1/24", "lb");
  await link(ns.headA, "198.19.0.1/24", ns.headB, "198.19.0.2/24", "wan");
}

async function teardown(): Promise<void> {
  for (const n of Object.values(ns)) await run("ip", ["netns", "del", n]);
}

/** Runs a command inside a namespace in the background (same pid: ip netns exec execs). */
function inNs(name: string, cmd: string, args: string[], env: Record<string, string>): Proc {
  return new Proc("ip", ["netns", "exec", name, cmd, ...args], { env });
}

Deno.test({
  name: "uvpn netns: nodes of two private LANs reach each other through routers on their head nodes",
  ignore: !isRoot,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    using dir = tempDir();
    const routes = join(dir.path, "routes");
    Deno.writeTextFileSync(routes, "100.64.0.0/16 198.19.0.1:7001\n100.65.0.0/16 198.19.0.2:7002\n");
    const base = { HOME: dir.path, UVPN_KEY_FILE: join(dir.path, "key") };
    const procs: Proc[] = [];
    const uvpn = (name: string) => ["run", "-A", "--no-prompt", join(ROOT, "cli", `${name}.ts`)];
    try {
      await build();
      // The compute nodes really are isolated: nothing beyond their LAN answers.
      const direct = await run("ip", ["netns", "exec", ns.nodeA, "curl", "-sS", "--max-time", "3", "http://198.18.2.2:8080/"]);
      assert.notEqual(direct.code, 0);
      assert.match(direct.stderr, /unreachable|Couldn't connect|Failed to connect/i);
      for (const [head, prefix, state] of [[ns.headA, "100.64.0.0/16", "a"], [ns.headB, "100.65.0.0/16", "b"]]) {
        const p = inNs(head, DENO, [...uvpn("uvpn_proxy"), "--routes", routes, "--subnet", prefix, "--state", join(dir.path, state)], base);
        procs.push(p);
        await p.waitFor(/serving subnet/);
      }
      const site = (lanRouter: string, port: number) => ({ ...base, UVPN_HOME_PROXY: lanRouter, UVPN_HOME_PROXY_PORT: String(port) });
      const siteA = site("198.18.1.1", 7001), siteB = site("198.18.2.1", 7002);
      const register = async (node: string, env: Record<string, string>) => {
        const r = await run("ip", ["netns", "exec", node, DENO, ...uvpn("uvpn_register"), "-s", "-r"], { env });
        assert.equal(r.code, 0, r.stderr);
        return r.stdout.trim();
      };
      const addrA = await register(ns.nodeA, siteA);
      const addrB = await register(ns.nodeB, siteB);
      const overlay = (env: Record<string, string>, addr: string) => ({ ...env, UVPN_SRC_ADDR: addr, LD_PRELOAD: LIBUVPN, UVPN_DEBUG: "1" });
      const www = join(dir.path, "www");
      Deno.mkdirSync(www);
      Deno.writeTextFileSync(join(www, "site"), "served from site B\n");

      // A -> B: python http.server on node B, curl on node A.
      const http = inNs(ns.nodeB, "python3", ["-u", "-m", "http.server", "8080", "--bind", addrB, "--directory", www], overlay(siteB, addrB));
      procs.push(http);
      await http.waitFor(/Serving HTTP/);
      const get = await run("ip", ["netns", "exec", ns.nodeA, "curl", "-sS", "--max-time", "15", `http://${addrB}:8080/site`], { env: overlay(siteA, addrA) });
      assert.equal(get.code, 0, get.stderr);
      assert.equal(get.stdout, "served from site B\n");
      await http.waitFor(new RegExp(`${addrA.replaceAll(".", "\\.")} - - .*GET /site`));

      // B -> A: socat echo on node A (listening on 0.0.0.0), socat client on node B.
      const echo = inNs(ns.nodeA, "socat", ["TCP-LISTEN:9000,reuseaddr,fork", "EXEC:cat"], overlay(siteA, addrA));
      procs.push(echo);
      await procs[0].waitFor(new RegExp(`listener ${addrA.replaceAll(".", "\\.")}:9000 is at 198\\.18\\.1\\.2:9000`));
      const back = await run("ip", ["netns", "exec", ns.nodeB, "socat", "-t", "10", "-", `TCP:${addrA}:9000`], {
        env: overlay(siteB, addrB),
        stdin: "ping from site B\n",
      });
      assert.equal(back.code, 0, back.stderr);
      assert.equal(back.stdout, "ping from site B\n");
    } finally {
      for (const p of procs.reverse()) await p.stop();
      await teardown();
    }
  },
});
