/**
 * ussh end to end against a real sshd on loopback, in both transports: the login starts inside
 * the mount, A's files are there, files written on B land on A, MyRT is installed on B when
 * missing, the exit status is the command's, and nothing is left behind on either host.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { run } from "../helpers.ts";
import { TRANSPORTS, usshTest, withHosts } from "./hosts.ts";

/** Host A's home: the seed's file1, file2, subdir1. */
function seedHome(a: string): void {
  Deno.mkdirSync(join(a, "subdir1"), { recursive: true });
  Deno.writeTextFileSync(join(a, "file1"), "this is file1 on A\n");
  Deno.writeTextFileSync(join(a, "file2"), "file2\n");
  Deno.writeTextFileSync(join(a, "subdir1", "inner"), "inner\n");
}

async function noneLeft(pattern: string): Promise<string> {
  return (await run("pgrep", ["-af", pattern])).stdout.trim();
}

for (const notun of TRANSPORTS) {
  Deno.test({
    ...usshTest,
    name: `ussh${notun ? " --notun" : ""}: B's shell starts in the mount, sees A's files, writes back, leaves nothing`,
    async fn() {
      await withHosts(async (h) => {
        const { sshd, a } = h;
        seedHome(a);
        // As on a cluster with environment modules: LD_LIBRARY_PATH and LD_PRELOAD are set (Deno
        // refused to spawn ssh with them under a run allowlist: "internal error: NotCapable").
        const env = { LD_LIBRARY_PATH: "/usr/lib/x86_64-linux-gnu:/usr/local/lib", LD_PRELOAD: "" };
        const ussh = (cmd: string) => h.ussh(cmd, { notun, cwd: join(a, "subdir1"), env });
        const r = await ussh("pwd; /bin/pwd; ls ~/xufs-rhome; cat ../file1; cat inner; echo written on B > created.txt; exit 3");
        assert.equal(r.code, 3, r.stderr);
        assert.match(r.stderr, /installing MyRT .* into hostb:~\/myrt/);
        assert.match(r.stderr, /XUFS mounting xufs-rhome/);
        const mountSub = join(sshd.bHome, "xufs-rhome", "subdir1");
        assert.equal(r.stdout, `${mountSub}\n${mountSub}\nfile1\nfile2\nsubdir1\nthis is file1 on A\ninner\n`);
        assert.equal(Deno.readTextFileSync(join(a, "subdir1", "created.txt")), "written on B\n");
        // Unmounted, nothing running on either host, and the second login needs no install.
        assert.throws(() => Deno.statSync(join(sshd.bHome, "xufs-rhome")));
        assert.equal(await noneLeft(`${sshd.bHome}/myrt`), "");
        assert.equal(await noneLeft(`${a}/.xufs`), "");
        const again = await ussh("cat ~/xufs-rhome/subdir1/created.txt");
        assert.equal(again.code, 0, again.stderr);
        assert.doesNotMatch(again.stderr, /installing/);
        assert.equal(again.stdout, "written on B\n");
      }, { freshB: true });
    },
  });
}

Deno.test({
  ...usshTest,
  name: "ussh: a large file travels striped over several ssh connections; one when further logins would ask",
  async fn() {
    await withHosts(async (h) => {
      const { dir: d, sshd, a } = h;
      seedHome(a);
      const big = new Uint8Array(20 << 20);
      for (let off = 0; off < big.length; off += 65536) crypto.getRandomValues(big.subarray(off, off + 65536));
      Deno.writeFileSync(join(a, "big"), big);
      const want = (await run("md5sum", [join(a, "big")])).stdout.split(" ")[0];
      // On B: wait for the further links, count the TCP connections to sshd, then read the file.
      const cmd = `for i in $(seq 100); do [ -S ~/.xufs/run/ussh-*/xufs.sock-2 ] && break; sleep 0.1; done; ` +
        `ss -tnH state established "( sport = :${sshd.port} )" | wc -l; md5sum < ~/xufs-rhome/big`;
      const ussh = (config: string, env: Record<string, string> = {}) => h.ussh(cmd, { config, env: { XUFS_STRIPES: "3", ...env } });
      const r = await ussh(sshd.clientConfig);
      assert.equal(r.code, 0, r.stderr);
      const [conns, sum] = r.stdout.trim().split("\n");
      assert.ok(Number(conns) >= 3, `TCP connections to sshd: ${conns}`);
      assert.equal(sum.split(" ")[0], want);
      assert.doesNotMatch(r.stderr, /striping/);
      // A key with a passphrase: the master asks (here through SSH_ASKPASS), further ones may not.
      const locked = join(d, "lockedkey");
      Deno.copyFileSync(join(d, "userkey"), locked);
      Deno.chmodSync(locked, 0o600);
      assert.equal((await run("ssh-keygen", ["-q", "-p", "-P", "", "-N", "pass phrase", "-f", locked])).code, 0);
      const askpass = join(d, "askpass");
      Deno.writeTextFileSync(askpass, "#!/bin/sh\necho 'pass phrase'\n", { mode: 0o700 });
      const config = join(d, "ssh_config_locked");
      Deno.writeTextFileSync(config, Deno.readTextFileSync(sshd.clientConfig).replace(/IdentityFile \S+/, `IdentityFile ${locked}`).replace(/ *BatchMode yes\n/, ""));
      Deno.removeSync(join(sshd.bHome, ".xufs/cache"), { recursive: true });
      const one = await ussh(config, { SSH_ASKPASS: askpass, SSH_ASKPASS_REQUIRE: "force", DISPLAY: ":0" });
      assert.equal(one.code, 0, one.stderr);
      assert.match(one.stderr, /striping over 3 connections needs ssh logins that do not ask \(keys or an agent\); using 1: /);
      assert.equal(one.stdout.trim().split("\n")[1].split(" ")[0], want);
    });
  },
});
