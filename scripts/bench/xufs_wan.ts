/**
 * Benchmark (not a test): XUFS over an emulated wide-area network, against scp and sshfs, all in
 * one run. A real sshd on loopback plays host B; every TCP connection to it passes through
 * scripts/wan_emulator.ts (one-way delay, a rate and a window cap per connection), so one ssh
 * connection is window-bound the way it is on a long fat pipe, and striping over several ssh
 * connections can help. Prints the figures and the ratios:
 *   1. cold read of a large file: XUFS striped vs XUFS one stream vs scp vs sshfs; warm vs local
 *   2. a tree of small files: ls -lR, grep -r, git status, make: XUFS cold and warm vs sshfs
 *   3. write-back of the large file on close vs an scp upload
 * Needs root (sshd). Run through scripts/bench/xufs_wan.sh.
 *   --size-mib 256 (the large file; the issue asks for 1024) --writeback-mib 256 --files 5000
 *   --rtt-ms 50 --window-kib 512 --rate-mbit 1000
 *   --stripes 4 (XUFS_STRIPES: a fixed count; `auto`: ussh's default, adaptive from 8 up to 16)
 *   --sshfs-timeout-s 900 (a cap per sshfs tree step; a capped step is reported as "> cap")
 *   --precache (during the cold reads of step 1, `ls -lR` walks the tree on B in the background,
 *     so pre-caching of its small files runs beside the read)
 *   --steps 1,2,3 (which parts to run)
 */
import { parseArgs } from "node:util";
import { join } from "node:path";
import { run } from "../../tests/helpers.ts";
import { shq } from "../../xufs/ussh.ts";
import { ADAPTIVE_START, DEFAULT_STRIPES_MAX } from "../../xufs/stripes.ts";
import { wanHosts } from "./wan_hosts.ts";

const { values: v } = parseArgs({
  args: Deno.args,
  options: {
    "size-mib": { type: "string", default: "256" },
    "writeback-mib": { type: "string", default: "256" },
    files: { type: "string", default: "5000" },
    "rtt-ms": { type: "string", default: "50" },
    "window-kib": { type: "string", default: "512" },
    "rate-mbit": { type: "string", default: "1000" },
    stripes: { type: "string", default: "4" },
    "sshfs-timeout-s": { type: "string", default: "900" },
    precache: { type: "boolean", default: false },
    steps: { type: "string", default: "1,2,3" },
  },
});
const SIZE = Number(v["size-mib"]), WB = Number(v["writeback-mib"]), FILES = Number(v.files), RTT = Number(v["rtt-ms"]);
const AUTO = v.stripes === "auto";
/** The connections to wait for before timing (adaptive: the 4 it starts with). */
const STRIPES = AUTO ? ADAPTIVE_START : Number(v.stripes);
const STEPS = new Set(v.steps.split(","));
for (const [name, x] of [["--size-mib", SIZE], ["--writeback-mib", WB], ["--files", FILES], ["--rtt-ms", RTT], ["--stripes", STRIPES]] as const) {
  if (!Number.isFinite(x) || x <= 0) throw new Error(`${name} must be a positive number${name === "--stripes" ? " or auto" : ""}: ${x}`);
}
/** The walker that keeps pre-caching busy beside a timed read (--precache), started on B in the background. */
const WALK = v.precache ? "(ls -lR ~/xufs-rhome/tree > /dev/null 2>&1 &); sleep 0.2; " : "";
const STEP_CAP_MS = Number(v["sshfs-timeout-s"]) * 1000;
const log = (s: string) => console.error(`[${new Date().toISOString().slice(11, 19)}] ${s}`);

// scp and sshfs speak SFTP.
const hosts = await wanHosts("xufs-wan-", { rttMs: RTT, windowKib: Number(v["window-kib"]), rateMbit: Number(v["rate-mbit"]) }, log, "Subsystem sftp internal-sftp");
const { dir, sshd, config: cfg, prefix } = hosts;
const results = new Map<string, number | string>();
const mnt = join(dir, "sshfs");

try {
  const a = join(dir, "ahome"), b = sshd.bHome;
  Deno.mkdirSync(a);
  log(`making a ${SIZE} MiB file and a tree of ${FILES} small files on A`);
  await sh(`head -c ${SIZE}M /dev/urandom > ${a}/big && cp ${a}/big ${b}/localbig && head -c ${WB}M ${a}/big > ${b}/wb.bin`);
  makeTree(join(a, "tree"), FILES);
  await sh(`cd ${a}/tree && git init -q && git add -A && git -c user.email=b@x -c user.name=b commit -qm tree && git gc -q`);
  const ussh = async (cmd: string, stripes: number) => {
    const r = await run(join(prefix, "bin", "ussh"), ["-F", cfg, "hostb", cmd], {
      env: { HOME: a, PATH: "/usr/bin:/bin:/usr/sbin:/sbin", ...(AUTO && stripes > 1 ? {} : { XUFS_STRIPES: String(stripes) }) },
      cwd: a,
      timeoutMs: 3_600_000,
    });
    if (r.code !== 0) throw new Error(`ussh ${cmd}: exit ${r.code}: ${r.stderr}`);
    for (const m of r.stdout.matchAll(/^T (\S+) (\d+|FAIL)$/gm)) results.set(m[1], m[2] === "FAIL" ? "failed" : Number(m[2]) / 1e6);
    return r;
  };
  const fresh = () => {
    try {
      Deno.removeSync(join(b, ".xufs/cache"), { recursive: true });
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
  };
  // On B: a timer (printed as "T name ns", or "T name FAIL"), and a wait until every further link is up.
  const T = `t() { n=$1; shift; s=$(date +%s%N); if eval "$*" >/dev/null 2>&1; then e=$(date +%s%N); echo "T $n $((e-s))"; else echo "T $n FAIL"; fi; }; ` +
    `for i in $(seq 300); do [ -S ~/.xufs/run/ussh-*/xufs.sock-$((XS-1)) ] && break; sleep 0.1; done; sleep 0.5; `;
  const withStripes = (n: number, cmd: string) => `XS=${n}; ${n > 1 ? T : T.replace(/for i.*sleep 0\.5; /, "")}${cmd}`;

  // ---- 1. a large file, cold ----
  const sshfsUp = await mountSshfs(a);
  if (STEPS.has("1")) {
    log(`1. cold read, XUFS over ${AUTO ? `${STRIPES}+ (adaptive)` : STRIPES} connections${WALK ? ", the tree walked meanwhile" : ""}; warm read; local disk`);
    await ussh(withStripes(STRIPES, `${WALK}t xufs_striped cat ~/xufs-rhome/big; t xufs_warm cat ~/xufs-rhome/big; t local_disk cat ~/localbig`), STRIPES);
    fresh();
    log("1. cold read, XUFS over one connection");
    await ussh(withStripes(1, `${WALK}t xufs_one cat ~/xufs-rhome/big`), 1);
    fresh();
    log("1. scp download");
    results.set("scp", await timed(() => sh(`scp -q -F ${cfg} hostb:${a}/big ${dir}/scp.out && rm ${dir}/scp.out`)));
    if (sshfsUp === true) {
      log("1. sshfs cold read");
      results.set("sshfs", await timed(() => sh(`cat ${mnt}/big > /dev/null`)));
    } else results.set("sshfs", sshfsUp);
  }

  // ---- 2. a tree of small files ----
  // Every step must succeed (grep: find nothing, status 1), or it is reported as failed.
  const steps = STEPS.has("2") ? [["ls", "ls -lR"], ["grep", "grep -r zzz_absent . ; [ $? = 1 ]"], ["git", "git status"], ["make", "make -s -B -j2"]] : [];
  fresh();
  if (steps.length) log("2. tree on XUFS, cold then warm");
  const treeCmd = ["cold", "warm"].map((p) => steps.map(([n, c]) => `t tree_${p}_xufs_${n} ${shq(c)}`).join("; ")).join("; ");
  if (steps.length) await ussh(withStripes(STRIPES, `cd ~/xufs-rhome/tree && ${treeCmd}`), STRIPES);
  if (sshfsUp === true && steps.length) {
    await unmountSshfs();
    await mountSshfs(a);
    for (const p of ["cold", "warm"]) {
      for (const [n, c] of steps) {
        log(`2. tree on sshfs, ${p}: ${c}`);
        results.set(`tree_${p}_sshfs_${n}`, await capped(`cd ${mnt}/tree && ${c}`));
      }
    }
  }

  // ---- 3. write-back of the large file on close vs scp upload ----
  if (STEPS.has("3")) {
    log("3. write-back on close, XUFS; scp upload");
    const closedAt = join(b, "closed_at");
    const landed = (async () => {
      while (true) {
        try {
          if (Deno.statSync(join(a, "wb.bin")).size === WB * 1048576) return Date.now();
        } catch { /* not yet */ }
        await new Promise((r) => setTimeout(r, 10));
      }
    })();
    await ussh(withStripes(STRIPES, "cp ~/wb.bin ~/xufs-rhome/wb.bin; echo $(($(date +%s%N)/1000000)) > ~/closed_at"), STRIPES);
    results.set("writeback_xufs", (await landed) - Number(Deno.readTextFileSync(closedAt).trim()));
    results.set("writeback_scp", await timed(() => sh(`scp -q -F ${cfg} ${b}/wb.bin hostb:${a}/scp_up.bin`)));
  }

  report();
} finally {
  await unmountSshfs();
  await hosts.close();
}

/** Runs a shell command; throws on failure. */
async function sh(cmd: string): Promise<void> {
  const r = await run("sh", ["-c", cmd], { timeoutMs: 3_600_000 });
  if (r.code !== 0) throw new Error(`${cmd}: exit ${r.code}: ${r.stderr}`);
}

/** Milliseconds `f` took. */
async function timed(f: () => Promise<void>): Promise<number> {
  const t0 = performance.now();
  await f();
  return performance.now() - t0;
}

/** Milliseconds a shell command took, "> cap" when it had to be killed, or "failed". */
async function capped(cmd: string): Promise<number | string> {
  const t0 = performance.now();
  // timeout(1) kills the command's whole process group.
  const r = await run("timeout", ["-s", "KILL", String(STEP_CAP_MS / 1000), "sh", "-c", `(${cmd}) > /dev/null 2>&1`], { timeoutMs: STEP_CAP_MS + 60_000 });
  return r.code === 137 ? `> ${STEP_CAP_MS / 1000} s` : r.code === 0 ? performance.now() - t0 : `failed (${r.code})`;
}

/** Mounts A's home on `mnt` with sshfs through the emulated WAN; true, or why it cannot. */
async function mountSshfs(a: string): Promise<true | string> {
  Deno.mkdirSync(mnt, { recursive: true });
  const r = await run("sshfs", ["-F", cfg, `hostb:${a}`, mnt], { timeoutMs: 60_000 }).catch((e) => ({ code: 1, stdout: "", stderr: String(e) }));
  return r.code === 0 ? true : `unavailable: ${r.stderr.trim().split("\n").pop()}`;
}

async function unmountSshfs(): Promise<void> {
  await run("fusermount", ["-u", mnt]).catch(() => {});
  await run("umount", [mnt]).catch(() => {});
}

/** A C source tree of `n` small files: 50 per directory, one .c in ten built by make. */
function makeTree(root: string, n: number): void {
  const objs: string[] = [];
  for (let i = 0; i < n; i++) {
    const d = join(root, `d${Math.floor(i / 50)}`);
    if (i % 50 === 0) Deno.mkdirSync(d, { recursive: true });
    const body = `/* file ${i} */\n` +
      Array.from({ length: 8 }, (_, l) => `int v${i}_${l}[] = {${Array.from({ length: 40 }, (_, k) => (i * k + l) % 997).join(", ")}};\n`).join("");
    if (i % 10 === 0) {
      Deno.writeTextFileSync(join(d, `f${i}.c`), body + `int f${i}(void) { return v${i}_0[0]; }\n`);
      objs.push(`d${Math.floor(i / 50)}/f${i}.o`);
    } else Deno.writeTextFileSync(join(d, `f${i}.h`), body);
  }
  Deno.writeTextFileSync(join(root, "Makefile"), `all: libtree.a\nlibtree.a: ${objs.join(" ")}\n\tar rcs $@ $^\n%.o: %.c\n\tcc -c -o $@ $<\n`);
  Deno.writeTextFileSync(join(root, ".gitignore"), "*.o\n*.a\n");
}

function report(): void {
  const f = (k: string) => results.get(k);
  const s = (x: number | string | undefined) => (typeof x === "number" ? `${(x / 1000).toFixed(2)} s` : x ?? "n/a");
  const ratio = (slow: string, fast: string) => {
    const x = f(slow), y = f(fast);
    return typeof x === "number" && typeof y === "number" ? `${(x / y).toFixed(2)}x` : "n/a";
  };
  const mbps = (k: string, mib = SIZE) => (typeof f(k) === "number" ? ` (${((mib * 1.048576) / ((f(k) as number) / 1000)).toFixed(1)} MB/s)` : "");
  const out = [
    `XUFS over an emulated WAN: RTT ${RTT} ms, per-connection window ${v["window-kib"]} KiB in flight per direction ` +
    `(cap ${((Number(v["window-kib"]) * 1024) / (RTT / 2) / 1000).toFixed(1)} MB/s per connection), rate ${v["rate-mbit"]} Mbit/s per connection, ` +
    `${AUTO ? `adaptive striping (${STRIPES} up to ${DEFAULT_STRIPES_MAX} connections)` : `${STRIPES} stripes`}; ${FILES} files in the tree${WALK ? ", walked (pre-cached) during the cold reads" : ""}`,
    "",
    `1. cold read of ${SIZE} MiB`,
    ...["xufs_striped", "xufs_one", "scp", "sshfs"].map((k) => `   ${k.padEnd(14)} ${s(f(k))}${mbps(k)}`),
    `   striped vs one stream ${ratio("xufs_one", "xufs_striped")}, vs scp ${ratio("scp", "xufs_striped")}, vs sshfs ${ratio("sshfs", "xufs_striped")}`,
    `   warm read ${s(f("xufs_warm"))}, local disk ${s(f("local_disk"))}: warm = ${ratio("local_disk", "xufs_warm")} local speed`,
    "",
    `2. tree of ${FILES} small files          XUFS cold   XUFS warm   sshfs cold  sshfs warm  cold ratio  warm ratio`,
    ...["ls", "grep", "git", "make"].map((n) => {
      const k = (p: string, w: string) => `tree_${p}_${w}_${n}`;
      return `   ${n.padEnd(34)} ${[k("cold", "xufs"), k("warm", "xufs"), k("cold", "sshfs"), k("warm", "sshfs")].map((x) => s(f(x)).padEnd(11)).join(" ")} ` +
        `${ratio(k("cold", "sshfs"), k("cold", "xufs")).padEnd(11)} ${ratio(k("warm", "sshfs"), k("warm", "xufs"))}`;
    }),
    "",
    `3. ${WB} MiB written on B: XUFS write-back after close ${s(f("writeback_xufs"))}${mbps("writeback_xufs", WB)}, ` +
    `scp upload ${s(f("writeback_scp"))}${mbps("writeback_scp", WB)}: ${ratio("writeback_scp", "writeback_xufs")}`,
  ];
  console.log(out.join("\n"));
}
