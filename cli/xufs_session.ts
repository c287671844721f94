/**
 * xufs_session: the host-B half of ussh (started by ussh over ssh; rarely run by hand).
 * Thin entry point over xufs/session.ts.
 */
import { UsageError } from "../common/errors.ts";
import { homeDir } from "../common/fs.ts";
import { type Link, runSession } from "../xufs/session.ts";
import { parseCli, runMain } from "./common.ts";

const USAGE = `
Usage: xufs_session --id ID [--mount NAME] [--cwd REL] (--socket PATH | --port-file FILE | --local-export DIR)
                    [--secret-file FILE] [-- COMMAND...]

Host B's half of ussh: mounts host A's export at ~/NAME for a shell (or COMMAND) run under
libxufs.so, then writes everything back and unmounts. ussh starts it; by hand, --local-export
serves a local directory (for trying XUFS out on one machine).

  --id ID             cache id of the export (~/.xufs/cache/ID)
  --mount NAME        mount point under $HOME (default xufs-rhome)
  --cwd REL           start in this directory of the export (default: its root)
  --socket PATH       reach host A through this (ssh-forwarded) Unix socket
  --port-file FILE    --notun: listen on a port in XUFS_PORT_RANGE and write it to FILE
  --local-export DIR  serve DIR from this process instead of host A
  --secret-file FILE  the per-session secret (read, then deleted)
  --stripes N         connections to host A for striped transfers (default 1; with --socket
                      the further ones are PATH-1 ... PATH-(N-1), made by ussh on host A)

Environment: XUFS_STRIPE_SIZE (bytes per range, default 4194304), XUFS_STRIPE_MIN (files
from this size are striped, default 8388608), XUFS_PRECACHE_MAX (files up to this size are
pre-cached when their directory is listed, default 65536; 0: off), XUFS_PRECACHE_JOBS (batches
in flight, default 4), XUFS_PRECACHE_BYTES (most bytes waiting, default 67108864),
XUFS_PROGRESS (1/0: progress line for long transfers; default when stderr is a terminal).
`;

await runMain("xufs_session", async () => {
  const { values, positionals } = parseCli("xufs_session", USAGE, Deno.args, {
    id: { type: "string" },
    mount: { type: "string" },
    cwd: { type: "string" },
    socket: { type: "string" },
    "port-file": { type: "string" },
    "local-export": { type: "string" },
    "secret-file": { type: "string" },
    stripes: { type: "string" },
  }, true);
  const links = [values.socket, values["port-file"], values["local-export"]].filter((v) => v !== undefined);
  if (links.length !== 1) throw new UsageError("Choose one of --socket, --port-file or --local-export");
  const link: Link = values.socket !== undefined
    ? { kind: "unix", path: values.socket }
    : values["port-file"] !== undefined
    ? { kind: "notun", portFile: values["port-file"] }
    : { kind: "local", exportDir: values["local-export"]! };
  let secret: string = crypto.randomUUID();
  if (values["secret-file"] !== undefined) {
    secret = (await Deno.readTextFile(values["secret-file"])).trim();
    await Deno.remove(values["secret-file"]);
  } else if (link.kind !== "local") throw new UsageError("--secret-file is required with --socket or --port-file");
  const mount = values.mount ?? "xufs-rhome";
  if (!/^[A-Za-z0-9._-]+$/.test(mount) || mount.startsWith(".")) throw new UsageError(`--mount takes a plain directory name: ${mount}`);
  const id = values.id ?? (link.kind === "local" ? `local-${mount}` : undefined);
  if (!id || !/^[A-Za-z0-9._-]+$/.test(id)) throw new UsageError(`--id is required (letters, digits, . _ -): ${id ?? ""}`);
  const stripes = Number(values.stripes ?? 1);
  if (!Number.isSafeInteger(stripes) || stripes < 1 || stripes > 64) throw new UsageError(`--stripes takes 1 to 64: ${values.stripes}`);
  return await runSession({
    stripes,
    id,
    mount,
    cwd: values.cwd ?? ".",
    secret,
    link,
    command: positionals,
    home: homeDir(),
  });
});
