/**
 * A real OpenSSH server on loopback for ussh tests: its own host key, config, port and user key;
 * the remote side gets its own HOME (sshd's SetEnv), so the export is never mounted inside itself.
 * Needs root (sshd's privilege separation); started and stopped by pid.
 */
import { join } from "node:path";
import { freePort, Proc, run, waitForPort } from "../helpers.ts";

/** Where and how sshd runs: `listen` (default 127.0.0.1) and extra environment (e.g. an overlay's). */
export interface SshdOptions {
  listen?: string;
  env?: Record<string, string>;
  /** The port to listen on (default a free one). */
  port?: number;
}

/** A running sshd plus the client config that reaches it as host "hostb". */
export class Sshd {
  readonly port: number;
  readonly bHome: string;
  readonly clientConfig: string;
  proc?: Proc;

  constructor(readonly dir: string, extraConfig = "", readonly opts: SshdOptions = {}) {
    this.port = opts.port ?? freePort();
    this.bHome = join(dir, "bhome");
    this.clientConfig = join(dir, "ssh_config");
    Deno.mkdirSync(this.bHome, { recursive: true });
    this.#extra = extraConfig;
  }
  #extra: string;

  async start(): Promise<void> {
    const d = this.dir;
    for (const k of ["hostkey", "userkey"]) {
      const r = await run("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", join(d, k)]);
      if (r.code !== 0) throw new Error(`ssh-keygen: ${r.stderr}`);
    }
    Deno.copyFileSync(join(d, "userkey.pub"), join(d, "authorized_keys"));
    const user = (await run("id", ["-un"])).stdout.trim();
    Deno.writeTextFileSync(join(d, "sshd_config"), [
      `Port ${this.port}`,
      `ListenAddress ${this.opts.listen ?? "127.0.0.1"}`,
      `HostKey ${join(d, "hostkey")}`,
      `PidFile ${join(d, "sshd.pid")}`,
      `AuthorizedKeysFile ${join(d, "authorized_keys")}`,
      "StrictModes no",
      "UsePAM no",
      "PasswordAuthentication no",
      "KbdInteractiveAuthentication no",
      "PermitRootLogin yes",
      "AllowStreamLocalForwarding yes",
      "AllowTcpForwarding yes",
      `SetEnv HOME=${this.bHome}`,
      this.#extra,
    ].join("\n") + "\n");
    Deno.writeTextFileSync(this.clientConfig, [
      "Host hostb",
      `  HostName ${this.opts.listen ?? "127.0.0.1"}`,
      `  Port ${this.port}`,
      `  User ${user}`,
      `  IdentityFile ${join(d, "userkey")}`,
      "  IdentitiesOnly yes",
      "  StrictHostKeyChecking no",
      "  UserKnownHostsFile /dev/null",
      "  BatchMode yes",
      "  LogLevel ERROR",
    ].join("\n") + "\n");
    Deno.mkdirSync("/run/sshd", { recursive: true });
    this.proc = new Proc("/usr/sbin/sshd", ["-D", "-e", "-f", join(d, "sshd_config")], { env: this.opts.env });
    // On another address (a virtual one), the caller knows how to wait for it.
    if (!this.opts.listen) await waitForPort("127.0.0.1", this.port);
  }

  async stop(): Promise<void> {
    await this.proc?.stop();
  }
}
