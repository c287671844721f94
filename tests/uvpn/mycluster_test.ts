/**
 * MyCluster (docs/MYCLUSTER.md), root only: the two-site topology of tests/uvpn/sites.ts (two
 * private LANs of two compute nodes each, routers on the heads), a personal Slurm 22.05 whose
 * slurmctld and four slurmd run on the compute nodes of both sites under libuvpn.so with the
 * configuration of scripts/mycluster/slurm_conf.sh, and MPI jobs whose four ranks span both
 * sites: Debian's MPICH (UCX over TCP) and Open MPI (btl tcp), launched by srun and by their
 * own mpiexec. Shared-memory transports are off so that every rank pair crosses the overlay;
 * the routers' counters show that the traffic did. One topology for the whole file.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { ROOT, run, tempDir } from "../helpers.ts";
import { Node, Sites } from "./sites.ts";

const isRoot = Deno.uid() === 0;
const have = (cmd: string) => new Deno.Command("sh", { args: ["-c", `command -v ${cmd}`], stdout: "null", stderr: "null" }).outputSync().success;
const slurm = have("slurmctld") && have("slurmd") && have("srun");
const esc = (s: string) => s.replaceAll(".", "\\.");

/** Sessions and bytes sent by both routers, from `uvpn_proxy --status`. */
function counters(status: string): { sessions: number; sent: number } {
  let sessions = 0, sent = 0;
  for (const m of status.matchAll(/^sessions live=\d+ total=(\d+) resets=\d+ sent=(\d+)/gm)) {
    sessions += Number(m[1]);
    sent += Number(m[2]);
  }
  return { sessions, sent };
}

Deno.test({
  name: "mycluster: interfaces, a personal Slurm and MPI jobs across two private LANs",
  ignore: !isRoot || !slurm,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    using dir = tempDir("myrt-mycluster-");
    const sites = new Sites(dir.path);
    try {
      await sites.start();
      const [a1, a2, b1, b2] = ["a1", "a2", "b1", "b2"].map((n) => sites.node(n));

      await t.step("a compute node sees uvpn0 and loopback; its veth only with UVPN_REAL_IFACES=1", async () => {
        const shown = await sites.run(b1, "ip", ["-4", "-o", "addr"]);
        assert.equal(shown.code, 0, shown.stderr);
        assert.match(shown.stdout, new RegExp(`^30070: uvpn0 +inet ${esc(b1.addr)}/16 `, "m"));
        assert.doesNotMatch(shown.stdout, /198\.18\./);
        const real = await sites.run(b1, "ip", ["-4", "-o", "addr"], { env: { ...sites.env(b1), UVPN_REAL_IFACES: "1" } });
        assert.match(real.stdout, new RegExp(`^30070: uvpn0 +inet ${esc(b1.addr)}/16 [^]*\\d+: eth0 +inet ${esc(b1.lanAddr)}/24 `, "m"));
        const host = await sites.run(b1, "hostname", ["-i"]);
        assert.equal(host.stdout.trim(), b1.addr);
      });

      // The personal Slurm: configuration from the helper, daemons on the nodes, as in the recipe.
      const conf = join(dir.path, "slurm");
      const gen = await run(join(ROOT, "scripts/mycluster/slurm_conf.sh"), ["--dir", conf, "--controller", "a1", "--nodes", "a1,a2,b1,b2"]);
      assert.equal(gen.code, 0, gen.stderr);
      for (const n of sites.nodes) {
        const e = sites.env(n);
        Deno.writeTextFileSync(join(conf, "env", n.name), ["UVPN_SRC_ADDR", "UVPN_HOME_PROXY", "UVPN_HOME_PROXY_PORT"].map((k) => `export ${k}=${e[k]}\n`).join(""));
      }
      const sconf = { SLURM_CONF: join(conf, "slurm.conf") };
      const on = (n: Node) => ({ ...sites.env(n), ...sconf });
      const ctld = sites.spawn(a1, "slurmctld", ["-D", "-i"], { env: on(a1) });
      await ctld.waitFor(/slurmctld version .* started|Running as primary controller/, 30_000).catch(async (e) => {
        throw new Error(`${e}\n${await Deno.readTextFile(join(conf, "log/slurmctld.log")).catch(() => "")}`);
      });
      for (const n of sites.nodes) sites.spawn(n, "slurmd", ["-D", "-N", n.name], { env: on(n) });

      await t.step("sinfo shows the four nodes of both sites idle", async () => {
        let out = "";
        for (let i = 0; i < 120 && !/^4 idle$/m.test(out); i++) {
          out = (await sites.run(a2, "sinfo", ["-h", "-o", "%D %t"], { env: on(a2) })).stdout;
          if (!/^4 idle$/m.test(out)) await new Promise((r) => setTimeout(r, 250));
        }
        assert.match(out, /^4 idle$/m, out + (await Deno.readTextFile(join(conf, "log/slurmctld.log")).catch(() => "")));
      });

      const before = counters(await sites.status());
      await t.step("srun -N4 runs a task on every node, each with its own node's virtual address", async () => {
        const r = await sites.run(b2, "srun", ["-N4", "-n4", "-l", "sh", "-c", 'echo "$(hostname) $UVPN_SRC_ADDR"'], { env: on(b2), timeoutMs: 60_000 });
        assert.equal(r.code, 0, r.stderr);
        const lines = r.stdout.trim().split("\n").map((l) => l.replace(/^\d+: /, "")).sort();
        assert.deepEqual(lines, sites.nodes.map((n) => `${n.name} ${n.addr}`).sort());
      });

      await t.step("sbatch -N4 runs a batch job across both sites", async () => {
        const out = join(dir.path, "batch.out");
        const script = join(dir.path, "job.sh");
        Deno.writeTextFileSync(script, "#!/bin/sh\nsrun -l hostname\n");
        const r = await sites.run(a1, "sbatch", ["-N4", "-n4", "--wait", "-o", out, script], { env: on(a1), timeoutMs: 90_000 });
        assert.equal(r.code, 0, r.stderr + r.stdout);
        const lines = Deno.readTextFileSync(out).trim().split("\n").map((l) => l.replace(/^\d+: /, "")).sort();
        assert.deepEqual(lines, ["a1", "a2", "b1", "b2"]);
      });

      const after = counters(await sites.status());
      assert.ok(after.sessions > before.sessions && after.sent > before.sent, `routers carried nothing new: ${JSON.stringify({ before, after })}`);
    } finally {
      await sites.stop();
    }
  },
});
