/**
 * Fixtures of the tests of static programs (static_test.ts, wrappers_test.ts): the static Go
 * programs of tests/fixtures/gohttp (built once per run with CGO_ENABLED=0 into a temp dir with
 * its own Go caches), `uvpn_register -r -- CMD` in the background, and a two-subnet overlay with
 * the supervised Go server in subnet B.
 */
import { join } from "node:path";
import { Overlay, type Proc, ROOT, run, spawnCli, tempDir } from "../helpers.ts";

/** Debian's static busybox. */
export const BUSYBOX = "/bin/busybox";
const esc = (s: string) => s.replaceAll(".", "\\.");

/** The static Go fixtures. */
export type GoBinaries = { server: string; client: string; resolve: string };
/** A supervised Go server and its virtual address. */
export type GoServer = { p: Proc; addr: string };

const goDir = Deno.makeTempDirSync({ prefix: "myrt-go-" });
let built: Promise<GoBinaries> | undefined;
/** The static Go fixtures, built once per test file. */
export function goBinaries(): Promise<GoBinaries> {
  built ??= (async () => {
    const r = await run("go", ["build", "-o", goDir + "/", "./server", "./client", "./resolve"], {
      cwd: join(ROOT, "tests/fixtures/gohttp"),
      env: { CGO_ENABLED: "0", GOCACHE: join(goDir, "cache"), GOPATH: join(goDir, "gopath"), GOFLAGS: "", HOME: goDir },
      timeoutMs: 240_000,
    });
    if (r.code !== 0) throw new Error(`go build failed: ${r.stderr}`);
    return { server: join(goDir, "server"), client: join(goDir, "client"), resolve: join(goDir, "resolve") };
  })();
  return built;
}
globalThis.addEventListener("unload", () => {
  try {
    Deno.removeSync(goDir, { recursive: true });
  } catch { /* gone */ }
});

/** `uvpn_register -r [--mode MODE] [--name NAME] -- argv` in subnet s, in the background. */
export function inOverlay(
  o: Overlay,
  s: Overlay["a"],
  argv: string[],
  mode?: string,
  stdin?: string,
  name?: string,
  env: Record<string, string> = {},
): Proc {
  const m = [...(mode ? ["--mode", mode] : []), ...(name ? ["--name", name] : [])];
  return spawnCli("uvpn_register", ["-r", ...m, "--", ...argv], {
    env: { ...o.homeEnv(s), UVPN_DEBUG: "1", ...env },
    stdin,
  });
}

/** The leased address a run reports on stderr. */
export async function leased(p: Proc): Promise<string> {
  return (await p.waitFor(/Leased virtual address (\S+) from router/))[1];
}

/** Runs body on a started two-subnet overlay; stops its routers afterwards. */
export async function withOverlay(body: (o: Overlay) => Promise<void>): Promise<void> {
  using dir = tempDir();
  const o = new Overlay(dir.path);
  await o.start();
  try {
    await body(o);
  } finally {
    await o.stop();
  }
}

/** withOverlay with the static Go server, supervised, on its virtual address port 8080 in B. */
export async function withGoServer(body: (o: Overlay, s: GoServer, go: GoBinaries) => Promise<void>): Promise<void> {
  const go = await goBinaries();
  await withOverlay(async (o) => {
    const s = await goServer(o, o.b, go.server, 8080);
    try {
      await body(o, s, go);
    } finally {
      await s.p.stop();
    }
  });
}

/** Starts the static Go server on `listen` (default its virtual address, port) in subnet s
 * (named name, with extra environment env); resolves with its address. */
export async function goServer(
  o: Overlay,
  s: Overlay["a"],
  bin: string,
  port: number,
  name?: string,
  env: Record<string, string> = {},
  listen = `UVPN_SRC_ADDR:${port}`,
): Promise<GoServer> {
  const p = inOverlay(o, s, [bin, listen], undefined, undefined, name, env);
  const addr = await leased(p);
  // getsockname of a listener bound to the virtual address answers that address.
  await p.waitFor(new RegExp(`listening ${listen.startsWith("UVPN_SRC_ADDR") ? esc(addr) : "\\S+"}:${port}`));
  await o.b.router!.waitFor(new RegExp(`listener ${esc(addr)}:${port} is at`));
  return { p, addr };
}
