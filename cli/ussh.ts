/**
 * ussh: logs in to host B with the system ssh and shows this host's home directory (or an
 * export) there under ~/xufs-rhome. Thin entry point over xufs/ussh.ts.
 */
import { UsageError } from "../common/errors.ts";
import { splitSshArgs, ussh } from "../xufs/ussh.ts";
import { parseCli, runMain } from "./common.ts";

const USAGE = `
Usage: ussh [--notun] [--export DIR] [--mount NAME] [ssh options...] host_B [command...]

Logs in to host_B with the system ssh and mounts this host's home directory (or DIR) there under
~/xufs-rhome (or ~/NAME), for the login shell or command it starts. Leaving the shell writes
everything back and unmounts. Installs MyRT into host_B:~/myrt over the same connection when
it is missing or of another version.

  --notun           raw TCP on a port in host_B's XUFS_PORT_RANGE instead of the ssh tunnel
  --export DIR      the directory to export (default $HOME)
  --mount NAME      the mount point's name under host_B's $HOME (default xufs-rhome)
  ssh options       passed to ssh as they are: -p, -i, -o, -F, -J, -l, -v, ...
  -h, --help        this text
  -V, --version     the version

Environment: XUFS_STRIPES (TCP connections per session for striped transfers, default 4: the
further ones are ssh connections of their own that never ask for a password, or with --notun
further TCP connections; 1 turns striping off). The cache manager's knobs (XUFS_STRIPE_SIZE,
XUFS_STRIPE_MIN, XUFS_PRECACHE_*) are read on host_B: see xufs_session --help.
`;

await runMain("ussh", async () => {
  // ussh's own options come first; everything from the first ssh option or the host on is ssh's.
  const own: string[] = [];
  let i = 0;
  for (; i < Deno.args.length; i++) {
    const a = Deno.args[i];
    if (a === "--notun" || a === "--help" || a === "-h" || a === "--version" || a === "-V") own.push(a);
    else if (a === "--export" || a === "--mount") own.push(a, Deno.args[++i] ?? "");
    else if (a.startsWith("--")) own.push(a); // ssh has no long options: ours, or a usage error
    else break;
  }
  const { values } = parseCli("ussh", USAGE, own, {
    notun: { type: "boolean" },
    export: { type: "string" },
    mount: { type: "string" },
  });
  const { sshOptions, host, command } = splitSshArgs(Deno.args.slice(i));
  if (!host) throw new UsageError("Missing host_B\nTry 'ussh --help'.");
  const mount = values.mount ?? "xufs-rhome";
  if (!/^[A-Za-z0-9._-]+$/.test(mount) || mount.startsWith(".")) throw new UsageError(`--mount takes a plain directory name: ${mount}`);
  return await ussh({ notun: values.notun ?? false, exportDir: values.export, mount, sshOptions, host, command });
});
