/**
 * The one-file distribution (scripts/dist.sh), built once for this file: `--version`; truncated
 * and altered copies refused before anything runs; a foreign architecture, an old glibc and
 * another C library refused with the value; `myrt TOOL` without installing (unpacked once);
 * `myrt install` lays out install.sh's PREFIX. As root: an unprivileged user with a fresh HOME,
 * in a network namespace with only loopback, with no Node or Deno and a noexec /tmp, installs
 * from the file and runs the demo's UVPN part from the installed commands; ussh installs MyRT on
 * B by sending the file to a real sshd, with the version check and a clear glibc error on B.
 */
import assert from "node:assert/strict";
import { basename, join } from "node:path";
import { IS_ROOT, ROOT, run, type RunResult, tempDir } from "./helpers.ts";
import { Sshd } from "./xufs/sshd.ts";
import { VERSION } from "../cli/common.ts";
import { NATIVE_LIBS, SOURCE_DIRS, TOOLS } from "../cli/tools.ts";

const isRoot = IS_ROOT;
const base = {};
const asRoot = { ...base, ignore: !isRoot };
const PATH = "/usr/bin:/bin:/usr/sbin:/sbin";

const built = tempDir("myrt-dist-test-");
globalThis.addEventListener("unload", () => built[Symbol.dispose]());
let building: Promise<string> | undefined;

/** The artifact, built with scripts/dist.sh on first use. */
function artifact(): Promise<string> {
  return building ??= (async () => {
    const r = await run(join(ROOT, "scripts/dist.sh"), [built.path], { env: { DENO: Deno.execPath() }, timeoutMs: 300_000 });
    assert.equal(r.code, 0, r.stderr);
    return join(built.path, `myrt-${VERSION}-${Deno.build.arch}-linux`);
  })();
}

/** A value of the artifact's header, e.g. PAYLOAD_BYTES. */
function headerValue(file: string, key: string): string {
  const head = new TextDecoder().decode(Deno.readFileSync(file).subarray(0, 4096));
  return head.match(new RegExp(`\\b${key}='?([^' \\n]*)`))![1];
}

/** Every path below `dir`, relative, sorted ("bin", "bin/ussh", …). */
function tree(dir: string, rel = ""): string[] {
  const out: string[] = [];
  for (const e of Deno.readDirSync(join(dir, rel))) {
    const p = rel ? `${rel}/${e.name}` : e.name;
    out.push(p, ...(e.isDirectory ? tree(dir, p) : []));
  }
  return out.sort();
}

/** Asserts that `r` failed with a message on stderr and that nothing was unpacked into `home`. */
function refused(r: RunResult, message: RegExp, home: string): void {
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, message);
  assert.equal(r.stdout, "");
  assert.deepEqual(tree(home), []);
}

Deno.test({
  ...base,
  name: "dist: one file that names its version, commit and Deno, and refuses a truncated or altered copy",
  async fn() {
    const a = await artifact();
    const r = await run(a, ["--version"]);
    assert.equal(r.code, 0, r.stderr);
    const glibc = String.raw`glibc \d+\.\d+ or later`;
    assert.match(r.stdout, new RegExp(`^myrt ${VERSION} \\(commit [0-9a-f]{12}(-modified)?, Deno ${Deno.version.deno}, ${Deno.build.arch} Linux, ${glibc}\\)\\n$`));
    assert.equal((await run("sha256sum", ["-c", `${basename(a)}.sha256`], { cwd: built.path })).code, 0);
    using dir = tempDir();
    const home = join(dir.path, "home");
    Deno.mkdirSync(home);
    const bytes = Deno.readFileSync(a);
    const copy = join(dir.path, "copy");
    const tryCopy = (data: Uint8Array) => {
      Deno.writeFileSync(copy, data, { mode: 0o755 });
      return run(copy, ["uvpn_proxy", "--version"], { env: { HOME: home } });
    };
    refused(await tryCopy(bytes.subarray(0, bytes.length - 4096)), new RegExp(`truncated or damaged \\(it should be ${bytes.length} bytes; copy it again\\): ${bytes.length - 4096} bytes\\n`), home);
    const sha = headerValue(a, "SHA256");
    for (const at of [bytes.length >> 1, bytes.length - 1, 700]) { // payload, last byte, header comment
      const altered = bytes.slice();
      altered[at] = altered[at] === 0x61 ? 0x62 : 0x61;
      refused(await tryCopy(altered), new RegExp(`altered or damaged \\(its SHA-256 should be ${sha}; copy it again\\): [0-9a-f]{64}\\n`), home);
    }
  },
});

Deno.test({
  ...base,
  name: "dist: another architecture, an older glibc or another C library is refused with the value",
  async fn() {
    const a = await artifact();
    const want = headerValue(a, "GLIBC_MIN");
    using dir = tempDir();
    const home = join(dir.path, "home"), fake = join(dir.path, "fake");
    Deno.mkdirSync(home);
    Deno.mkdirSync(fake);
    const cases: [Record<string, string>, RegExp][] = [
      [{ uname: 'case "$1" in -m) echo aarch64 ;; *) echo Linux ;; esac' }, new RegExp(`built for ${Deno.build.arch} and does not run on this host's architecture: aarch64\\n`)],
      [{ getconf: "echo glibc 2.17" }, new RegExp(`needs glibc ${want} or later, and this host has an older one: glibc 2\\.17\\n`)],
      [{ getconf: "exit 1", ldd: 'echo "musl libc (x86_64)"; exit 1' }, /needs glibc .* or later, and this host's C library is not glibc: musl libc \(x86_64\)\n/],
    ];
    for (const [commands, message] of cases) {
      for (const f of Deno.readDirSync(fake)) Deno.removeSync(join(fake, f.name));
      for (const [name, body] of Object.entries(commands)) Deno.writeTextFileSync(join(fake, name), `#!/bin/sh\n${body}\n`, { mode: 0o755 });
      for (const args of [["install"], ["uvpn_register", "--version"]]) {
        refused(await run(a, args, { env: { HOME: home, PATH: `${fake}:${PATH}` } }), message, home);
      }
    }
  },
});

Deno.test({
  ...base,
  name: "dist: myrt TOOL runs without installing, unpacked once; myrt install lays out install.sh's PREFIX",
  async fn() {
    const a = await artifact();
    using dir = tempDir();
    const home = join(dir.path, "home");
    Deno.mkdirSync(home);
    const env = { HOME: home, PATH };
    // Two first runs at once, then a third: one directory, named after the version and the
    // SHA-256, no half-unpacked one left, and the third run unpacks nothing.
    const runDir = join(home, "myrt/lib/run"), unpacked = `${VERSION}-${headerValue(a, "SHA256").slice(0, 16)}`;
    for (const tools of [["uvpn_register", "uvpn_proxy"], ["ussh"]]) {
      for (const [i, r] of (await Promise.all(tools.map((t) => run(a, [t, "--version"], { env })))).entries()) {
        assert.equal(r.code, 0, r.stderr);
        assert.equal(r.stdout, `${tools[i]} ${VERSION}\n`);
      }
      assert.deepEqual(tree(runDir).filter((p) => !p.includes("/")), [unpacked]);
      if (tools.length > 1) Deno.writeTextFileSync(join(runDir, unpacked, "kept"), "");
      else assert.ok(Deno.statSync(join(runDir, unpacked, "kept")).isFile, "unpacked again");
    }
    // myrt install: exactly the payload's tree (what scripts/install.sh made) plus this file.
    const prefix = join(dir.path, "prefix");
    const inst = await run(a, ["install", prefix], { env, timeoutMs: 120_000 });
    assert.equal(inst.code, 0, inst.stderr);
    assert.match(inst.stdout, new RegExp(`^MyRT ${VERSION} installed in ${prefix}\n`));
    assert.equal(Deno.readTextFileSync(join(prefix, "lib/myrt/PAYLOAD")).trim(), headerValue(a, "SHA256"));
    const listing = await run("sh", ["-c", `tail -c ${headerValue(a, "PAYLOAD_BYTES")} "$0" | gzip -dc | tar -tf -`, a]);
    const noCache = (p: string) => !p.startsWith("lib/myrt/cache/");
    const payload = listing.stdout.split("\n").map((p) => p.replace(/\/$/, "")).filter((p) => p && noCache(p));
    assert.deepEqual(tree(prefix).filter(noCache), [...payload, "bin/myrt", "lib/myrt/PAYLOAD"].sort());
    assert.deepEqual(
      tree(prefix).filter((p) => /^bin\/[^/]+$/.test(p)),
      [...TOOLS.map((t) => t.name), ...NATIVE_LIBS.map((l) => basename(l)), "myrt"].map((f) => `bin/${f}`).sort(),
    );
    assert.deepEqual(tree(prefix).filter((p) => /^lib\/myrt\/src\/[^/]+$/.test(p)), [...SOURCE_DIRS, "deno.json"].map((d) => `lib/myrt/src/${d}`).sort());
    // The installed copy runs its own PREFIX's commands: no second unpacking.
    const r = await run(join(prefix, "bin/myrt"), ["ussh", "--version"], { env: { ...env, MYRT_RUN_DIR: join(dir.path, "unused") } });
    assert.equal(r.stdout, `ussh ${VERSION}\n`, r.stderr);
    assert.throws(() => Deno.statSync(join(dir.path, "unused")));
  },
});

/** As root in a new mount namespace: PREFIX and the run directory on a 160 MB tmpfs. */
const FULL_DISK = `set -e
mount -t tmpfs -o size=160m tmpfs "$1"
set +e
"$0" install "$1/prefix" > "$1/first.log" 2>&1 || { cat "$1/first.log"; exit 10; }
"$0" install "$1/prefix"; echo "second install: $?"
"$1/prefix/bin/uvpn_proxy" --version
MYRT_RUN_DIR=$1/run "$0" uvpn_register --version; echo "run: $?"
ls -A "$1" "$1/prefix/lib" "$1/run"
`;

Deno.test({
  ...asRoot,
  name: "dist: (root) a full disk: the file says so, removes what it unpacked, and an installed PREFIX still runs",
  async fn() {
    const a = await artifact();
    using dir = tempDir();
    const r = await run("unshare", ["-m", "--", "sh", "-c", FULL_DISK, a, dir.path], { timeoutMs: 120_000 });
    assert.equal(r.code, 0, r.stdout + r.stderr);
    const full = (d: string) => new RegExp(`myrt: Unpacking MyRT failed \\(is the disk full\\?\\): ${dir.path}/${d}\n`);
    assert.match(r.stderr, full(String.raw`prefix/lib/\.myrt-new\.\d+`));
    assert.match(r.stderr, full(String.raw`run/${VERSION}-[0-9a-f]{16}\.part\.\d+`));
    assert.equal(r.stdout, `second install: 1\nuvpn_proxy ${VERSION}\nrun: 1\n${dir.path}:\nfirst.log\nprefix\nrun\n\n${dir.path}/prefix/lib:\nmyrt\n\n${dir.path}/run:\n`);
  },
});

/** Runs as root in a new mount and network namespace, then as the user: loopback only, a noexec /tmp, no node or deno. */
const OUTER = `set -e
user=$1 home=$2
ip link set lo up
mount -t tmpfs -o noexec,nosuid,nodev tmpfs /tmp
for f in /usr/bin/node /usr/bin/nodejs /usr/local/bin/node /usr/bin/deno /usr/local/bin/deno; do
  if [ -e "$f" ]; then mount --bind /dev/null "$f"; fi
done
exec timeout 240 runuser -u "$user" -- env -i HOME="$home" PATH=/usr/bin:/bin LANG=C.UTF-8 sh "$home/test.sh"
`;

/** What the user does, with checks that the host is as bare as it should be. */
const USER_SCRIPT = `set -eu
cd "$HOME"
fail() { echo "test: $*" >&2; exit 1; }
[ "$(id -u)" != 0 ] || fail "running as root"
if node --version >/dev/null 2>&1 || deno --version >/dev/null 2>&1; then fail "node or deno runs here"; fi
[ "$(wc -l < /proc/net/route)" -eq 1 ] || fail "there is a route out: $(cat /proc/net/route)"
cp /bin/true /tmp/true
if /tmp/true 2>/dev/null; then fail "/tmp is exec-able"; fi
~/myrt/bin/myrt --version
~/myrt/bin/myrt install
# The README's quick start: the router serves the entry of the route file it can bind here.
echo "100.64.0.0 127.0.0.1:7101" > ~/.uvpn_route
~/myrt/bin/uvpn_proxy --routes ~/.uvpn_route 2> proxy.log &
pid=$!
for i in $(seq 100); do grep -q "serving subnet" proxy.log && break; sleep 0.1; done
kill "$pid"
wait "$pid" || true
grep "serving subnet" proxy.log || fail "uvpn_proxy did not serve: $(cat proxy.log)"
mkdir tmp
TMPDIR=$HOME/tmp MYRT_BIN=$HOME/myrt/bin MYRT_DEMO_ONLY=uvpn bash demo/scripts/demo.sh --inside "$(id -u)" "$(id -g)"
`;

Deno.test({
  ...asRoot,
  name: "dist: (root) an unprivileged user with no network, Node or Deno installs from the file and runs the demo's UVPN part",
  async fn() {
    const a = await artifact();
    const user = `myrt-t${Deno.pid}`;
    const top = Deno.makeTempDirSync({ dir: "/var/tmp", prefix: "myrt-dist-" }); // not under the namespace's /tmp
    Deno.chmodSync(top, 0o755);
    const home = join(top, user);
    try {
      const add = await run("useradd", ["-M", "-U", "-d", home, "-s", "/bin/sh", user]);
      assert.equal(add.code, 0, add.stderr);
      for (const d of ["myrt/bin", "demo/scripts/lib"]) Deno.mkdirSync(join(home, d), { recursive: true });
      Deno.copyFileSync(a, join(home, "myrt/bin/myrt"));
      for (const f of ["demo.sh", "lib/common.sh"]) Deno.copyFileSync(join(ROOT, "scripts", f), join(home, "demo/scripts", f));
      Deno.writeTextFileSync(join(home, "test.sh"), USER_SCRIPT);
      assert.equal((await run("chown", ["-R", `${user}:${user}`, home])).code, 0);
      const r = await run("unshare", ["-m", "-n", "--", "sh", "-c", OUTER, "outer", user, home], { timeoutMs: 300_000 });
      assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
      assert.match(r.stdout, new RegExp(`^myrt ${VERSION} \\(commit `));
      assert.match(r.stdout, new RegExp(`MyRT ${VERSION} installed in ${home}/myrt\n`));
      assert.match(r.stdout, /Hello from subnet B, through two UVPN routers\./);
      assert.match(r.stdout, /Demo finished: UVPN worked\.\n$/);
      for (const f of ["uvpn_proxy", "uvpn_register", "ussh", "xufs_session", "libuvpn.so", "libxufs.so", "libmyrt.so", "myrt"]) {
        const st = Deno.statSync(join(home, "myrt/bin", f));
        assert.ok(st.isFile && st.uid !== 0, f);
      }
      assert.equal((await run("pgrep", ["-au", user])).stdout, "", "processes left behind");
    } finally {
      // Stop by pid whatever of the user's still runs (after a failure), then remove the user.
      for (const pid of (await run("pgrep", ["-u", user])).stdout.split("\n").filter(Boolean)) {
        try {
          Deno.kill(Number(pid), "SIGKILL");
        } catch { /* gone */ }
      }
      await run("userdel", [user]);
      Deno.removeSync(top, { recursive: true });
    }
  },
});

Deno.test({
  ...asRoot,
  name: "dist: (root) ussh installs MyRT on B by sending the one file, with the version check and B's glibc checked",
  async fn() {
    const a = await artifact();
    using dir = tempDir();
    const sshd = new Sshd(dir.path);
    await sshd.start();
    try {
      const prefix = join(dir.path, "prefixA"), homeA = join(dir.path, "ahome");
      assert.equal((await run(a, ["install", prefix], { timeoutMs: 120_000 })).code, 0);
      Deno.mkdirSync(homeA);
      Deno.writeTextFileSync(join(homeA, "file1"), "this is file1 on A\n");
      // A session that fails shows B's session logs too (~/.xufs/cache/ID/log).
      const bLogs = () => {
        const out: string[] = [];
        try {
          for (const e of Deno.readDirSync(join(sshd.bHome, ".xufs/cache"))) {
            try {
              out.push(`--- B's ${e.name}/log:\n${Deno.readTextFileSync(join(sshd.bHome, ".xufs/cache", e.name, "log"))}`);
            } catch { /* no log */ }
          }
        } catch { /* no cache yet */ }
        return out.join("\n");
      };
      const ussh = async () => {
        const r = await run(join(prefix, "bin/ussh"), ["-F", sshd.clientConfig, "hostb", "cat ~/xufs-rhome/file1"], {
          env: { HOME: homeA, PATH },
          cwd: homeA,
          timeoutMs: 60_000,
        });
        return r.code === 0 ? r : { ...r, stderr: `${r.stderr}\n${bLogs()}` };
      };
      const bMyrt = join(sshd.bHome, "myrt");
      // B's glibc too old (getconf says so): the file refuses to install, and ussh says it failed.
      const fake = join(sshd.bHome, "fake");
      Deno.mkdirSync(fake);
      Deno.writeTextFileSync(join(fake, "getconf"), "#!/bin/sh\necho glibc 2.17\n", { mode: 0o755 });
      Deno.writeTextFileSync(join(sshd.bHome, ".bashrc"), `export PATH=${fake}:$PATH\n`);
      const old = await ussh();
      assert.equal(old.code, 5, old.stderr);
      assert.match(old.stderr, /myrt: This MyRT needs glibc .* or later, and this host has an older one: glibc 2\.17\n/);
      assert.match(old.stderr, /Installing MyRT on hostb failed/);
      Deno.removeSync(join(sshd.bHome, ".bashrc"));
      // Then it installs: the file on B is the file on A, byte for byte.
      const first = await ussh();
      assert.equal(first.code, 0, first.stderr);
      assert.match(first.stderr, new RegExp(`installing MyRT ${VERSION} into hostb:~/myrt \\(found: none\\)`));
      assert.equal(first.stdout, "this is file1 on A\n");
      const sum = async (f: string) => (await run("sha256sum", [f])).stdout.split(" ")[0];
      assert.equal(await sum(join(bMyrt, "bin/myrt")), await sum(a));
      assert.equal(Deno.readTextFileSync(join(bMyrt, "lib/myrt/PAYLOAD")).trim(), headerValue(a, "SHA256"));
      // Same version on B: no install; another version: installed again.
      const again = await ussh();
      assert.equal(again.code, 0, again.stderr);
      assert.doesNotMatch(again.stderr, /installing/);
      Deno.writeTextFileSync(join(bMyrt, "lib/myrt/VERSION"), "0.0.1\n");
      const other = await ussh();
      assert.equal(other.code, 0, other.stderr);
      assert.match(other.stderr, new RegExp(`installing MyRT ${VERSION} into hostb:~/myrt \\(found: 0\\.0\\.1\\)`));
      assert.equal(Deno.readTextFileSync(join(bMyrt, "lib/myrt/VERSION")), `${VERSION}\n`);
    } finally {
      await sshd.stop();
    }
  },
});
