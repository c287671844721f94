/** Every CLI answers --help and --version; usage errors exit 2; bad route files say FILE:LINE. */
import assert from "node:assert/strict";
import { join } from "node:path";
import { cli, DENO, freePort, ROOT, run, tempDir } from "./helpers.ts";
import { VERSION } from "../cli/common.ts";
import { TOOLS } from "../cli/tools.ts";

for (const t of TOOLS) {
  Deno.test(`cli: ${t.name} --help and --version`, async () => {
    const help = await cli(t.name, ["--help"]);
    assert.equal(help.code, 0);
    assert.match(help.stdout, new RegExp(`^Usage: ${t.name}`));
    const version = await cli(t.name, ["--version"]);
    assert.equal(version.code, 0);
    assert.equal(version.stdout, `${t.name} ${VERSION}\n`);
    const bad = await cli(t.name, ["--no-such-flag"]);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /no-such-flag/);
  });
}

Deno.test("cli: uvpn_proxy stops on a bad route file line with FILE:LINE and a non-zero exit", async () => {
  using dir = tempDir();
  const routes = join(dir.path, "routes");
  Deno.writeTextFileSync(routes, "100.64.0.0/16 127.0.0.1:7001\n100.65.0.0/16 127.0.0.1\n");
  const r = await cli("uvpn_proxy", ["--routes", routes], { env: { HOME: dir.path } });
  assert.equal(r.code, 3);
  assert.equal(r.stderr, `uvpn_proxy: ${routes}:2: expected host:port: 127.0.0.1\n`);
  const missing = await cli("uvpn_proxy", ["--routes", join(dir.path, "nope")], { env: { HOME: dir.path } });
  assert.equal(missing.code, 3);
  assert.match(missing.stderr, /Cannot read route file: .*nope/);
});

Deno.test("cli: uvpn_proxy --direct takes auto or never (a usage error otherwise)", async () => {
  using dir = tempDir();
  const r = await cli("uvpn_proxy", ["--direct", "sometimes"], { env: { HOME: dir.path } });
  assert.equal(r.code, 2);
  assert.equal(r.stderr, "uvpn_proxy: Expected --direct auto or never: sometimes\n");
});

Deno.test("cli: uvpn_proxy --data-port on a port already taken is a configuration error naming the port", async () => {
  using dir = tempDir();
  const key = join(dir.path, "key");
  Deno.writeTextFileSync(key, "ab".repeat(32) + "\n", { mode: 0o600 });
  const routes = join(dir.path, "routes");
  Deno.writeTextFileSync(routes, `100.64.0.0/16 127.0.0.1:${freePort()}\n`);
  using taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (taken.addr as Deno.NetAddr).port;
  const r = await cli("uvpn_proxy", ["--routes", routes, "--subnet", "100.64.0.0/16", "--data-port", String(port)], {
    env: { HOME: dir.path, UVPN_KEY_FILE: key },
  });
  assert.equal(r.code, 3, r.stderr);
  assert.equal(r.stderr, `uvpn_proxy: Cannot open the data port on 0.0.0.0:${port} (--data-port): address already in use (EADDRINUSE)\n`);
});

Deno.test("cli: uvpn_register without a home router says how to set one", async () => {
  using dir = tempDir();
  const r = await cli("uvpn_register", ["-s", "-r"], { env: { HOME: dir.path, UVPN_HOME_PROXY: "" } });
  assert.equal(r.code, 2);
  assert.match(r.stderr, /set UVPN_HOME_PROXY and UVPN_HOME_PROXY_PORT/);
  assert.equal(r.stdout, "");
});

Deno.test("cli: deno task compile without DENORT_BIN says why and exits non-zero", async () => {
  const r = await run(DENO, ["task", "--quiet", "compile"], { cwd: ROOT, env: { DENORT_BIN: "" } });
  assert.equal(r.code, 1);
  assert.match(r.stderr, /needs a denort base binary.*set DENORT_BIN/);
});
