/**
 * What the XUFS benchmarks share: a real sshd on loopback playing host B with every TCP
 * connection to it through scripts/wan_emulator.ts (one-way delay, a rate and a window cap per
 * connection), the ssh client config that goes through the emulator, and MyRT installed for
 * host A. Needs root (sshd).
 */
import { join } from "node:path";
import { WanEmulator } from "../wan_emulator.ts";
import { ROOT, run } from "../../tests/helpers.ts";
import { Sshd } from "../../tests/xufs/sshd.ts";

/** The emulated path. */
export interface WanPath {
  rttMs: number;
  windowKib: number;
  rateMbit: number;
}

/** Host B behind an emulated WAN, and host A's MyRT. */
export interface WanHosts {
  dir: string;
  sshd: Sshd;
  /** ssh client config reaching "hostb" through the emulator. */
  config: string;
  /** PREFIX of the MyRT installed for host A. */
  prefix: string;
  close(): Promise<void>;
}

/** Starts sshd (with `sshdConfig` added) behind the emulator in a fresh directory and installs MyRT for A. */
export async function wanHosts(prefix: string, path: WanPath, log: (s: string) => void, sshdConfig = ""): Promise<WanHosts> {
  const dir = Deno.makeTempDirSync({ prefix });
  const sshd = new Sshd(dir, sshdConfig);
  await sshd.start();
  const emu = new WanEmulator({
    listen: { hostname: "127.0.0.1", port: 0 },
    target: { hostname: "127.0.0.1", port: sshd.port },
    delayMs: path.rttMs / 2,
    rateBytesPerSec: (path.rateMbit * 1e6) / 8,
    windowBytes: path.windowKib * 1024,
  });
  const config = join(dir, "ssh_config_wan");
  Deno.writeTextFileSync(config, Deno.readTextFileSync(sshd.clientConfig).replace(/Port \d+/, `Port ${emu.start()}`));
  const close = async () => {
    emu.close();
    await sshd.stop();
    Deno.removeSync(dir, { recursive: true });
  };
  try {
    log("installing MyRT for host A");
    const myrt = join(dir, "prefixA");
    const inst = await run(join(ROOT, "scripts/install.sh"), [myrt], { env: { DENO: Deno.execPath() }, timeoutMs: 300_000 });
    if (inst.code !== 0) throw new Error(`install.sh failed: ${inst.stderr}`);
    return { dir, sshd, config, prefix: myrt, close };
  } catch (e) {
    await close();
    throw e;
  }
}
