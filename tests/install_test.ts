/**
 * scripts/install.sh into a fresh PREFIX without root: the seed's paths exist, the commands run
 * with no deno on PATH, from any directory, and a copy of PREFIX elsewhere works too.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { Overlay, ROOT, run, tempDir } from "./helpers.ts";
import { VERSION } from "../cli/common.ts";

Deno.test({
  name: "install: PREFIX holds the seed's paths and a copied PREFIX still runs",
  async fn() {
    using dir = tempDir();
    const prefix = join(dir.path, "myrt");
    const inst = await run(join(ROOT, "scripts/install.sh"), [prefix], { env: { DENO: Deno.execPath() }, timeoutMs: 120_000 });
    assert.equal(inst.code, 0, inst.stderr);
    assert.match(inst.stdout, new RegExp(`MyRT ${VERSION} installed in ${prefix}`));
    for (const f of ["uvpn_proxy", "uvpn_register", "libuvpn.so", "libmyrt.so"]) {
      assert.ok(Deno.statSync(join(prefix, "bin", f)).isFile, f);
    }
    const copy = join(dir.path, "elsewhere", "myrt");
    Deno.mkdirSync(join(dir.path, "elsewhere"));
    assert.equal((await run("cp", ["-a", prefix, copy])).code, 0);
    Deno.removeSync(prefix, { recursive: true });
    // A directory with a package.json of its own must not confuse the installed commands.
    const cwd = join(dir.path, "project");
    Deno.mkdirSync(cwd);
    Deno.writeTextFileSync(join(cwd, "package.json"), '{"name":"x","dependencies":{"left-pad":"1"}}');
    const env = { PATH: "/usr/bin:/bin", HOME: dir.path };
    for (const t of ["uvpn_proxy", "uvpn_register"]) {
      const r = await run(join(copy, "bin", t), ["--version"], { env, cwd });
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, `${t} ${VERSION}\n`);
    }
    // The copied uvpn_register runs a static program under the supervisor it loads from beside
    // itself, and a dynamic one under the libuvpn.so beside it, with its installed permissions.
    const o = new Overlay(dir.path);
    await o.start();
    try {
      const script = 'echo "src=$UVPN_SRC_ADDR preload=$LD_PRELOAD"';
      for (const argv of [["/bin/busybox", "sh", "-c", script], ["/bin/sh", "-c", script]]) {
        const r = await run(join(copy, "bin", "uvpn_register"), ["-r", "--", ...argv], {
          env: { ...env, ...o.homeEnv(o.a), UVPN_DEBUG: "1" },
          cwd,
        });
        assert.equal(r.code, 0, r.stderr);
        const preload = argv[0] === "/bin/sh" ? join(copy, "bin", "libuvpn.so") : "";
        assert.equal(r.stdout.replace(/src=100\.64\.\d+\.\d+/, "src=V"), `src=V preload=${preload}\n`, argv[0]);
        if (!preload) assert.match(r.stderr, /uvpn: supervising pid/);
      }
    } finally {
      await o.stop();
    }
    const nm = await run("nm", ["-D", "--defined-only", join(copy, "bin", "libuvpn.so")]);
    for (const sym of ["connect", "accept", "accept4", "bind", "listen", "getsockname", "getpeername", "close", "dup", "dup2", "dup3"]) {
      assert.match(nm.stdout, new RegExp(` T ${sym}$`, "m"), sym);
    }
  },
});
