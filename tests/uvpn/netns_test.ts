/**
 * The seed's own setting, built from network namespaces (tests/uvpn/sites.ts): two private LANs
 * (198.18.1.0/24 and 198.18.2.0/24), each with a compute node that has no route beyond its LAN,
 * and two head nodes joined by a "WAN" link (198.19.0.0/24). Routers run on the heads; servers
 * on each site's node are reached from the other site's node through them. Everything is
 * created and deleted by the fixture. Needs root (ip netns); CI runs as root.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { IS_ROOT, run, tempDir } from "../helpers.ts";
import { Sites } from "./sites.ts";

const isRoot = IS_ROOT;

Deno.test({
  name: "uvpn netns: nodes of two private LANs reach each other through routers on their head nodes",
  ignore: !isRoot,
  async fn() {
    using dir = tempDir();
    const sites = new Sites(dir.path, 1);
    try {
      await sites.start();
      const [a, b] = [sites.node("a1"), sites.node("b1")];
      const debug = (n: typeof a) => ({ env: { ...sites.env(n), UVPN_DEBUG: "1" } });
      // The compute nodes really are isolated: nothing beyond their LAN answers.
      const direct = await run("ip", ["netns", "exec", a.ns, "curl", "-sS", "--max-time", "3", `http://${b.lanAddr}:8080/`]);
      assert.notEqual(direct.code, 0);
      assert.match(direct.stderr, /unreachable|Couldn't connect|Failed to connect/i);
      const www = join(dir.path, "www");
      Deno.mkdirSync(www);
      Deno.writeTextFileSync(join(www, "site"), "served from site B\n");

      // A -> B: python http.server on node B, curl on node A.
      const http = sites.spawn(b, "python3", ["-u", "-m", "http.server", "8080", "--bind", b.addr, "--directory", www], debug(b));
      await http.waitFor(/Serving HTTP/);
      const get = await sites.run(a, "curl", ["-sS", "--max-time", "15", `http://${b.addr}:8080/site`], debug(a));
      assert.equal(get.code, 0, get.stderr);
      assert.equal(get.stdout, "served from site B\n");
      await http.waitFor(new RegExp(`${a.addr.replaceAll(".", "\\.")} - - .*GET /site`));

      // B -> A: socat echo on node A (listening on 0.0.0.0), socat client on node B.
      sites.spawn(a, "socat", ["TCP-LISTEN:9000,reuseaddr,fork", "EXEC:cat"], debug(a));
      await sites.routers.a!.waitFor(new RegExp(`listener ${a.addr.replaceAll(".", "\\.")}:9000 is at ${a.lanAddr.replaceAll(".", "\\.")}:9000`));
      const back = await sites.run(b, "socat", ["-t", "10", "-", `TCP:${a.addr}:9000`], { ...debug(b), stdin: "ping from site B\n" });
      assert.equal(back.code, 0, back.stderr);
      assert.equal(back.stdout, "ping from site B\n");
    } finally {
      await sites.stop();
    }
  },
});
