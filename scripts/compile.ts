/**
 * `deno task compile`: builds each MyRT command as one self-contained binary in dist/ with
 * `deno compile --no-prompt`, its permissions baked in (cli/tools.ts) and native libraries
 * embedded. deno compile needs a `denort` base binary of the same Deno version; this workplace
 * cannot download one, so it must be given as DENORT_BIN. Without it: a clear error, exit 1.
 */
import { dirname, join, resolve } from "node:path";
import { TOOLS } from "../cli/tools.ts";

const root = resolve(dirname(new URL(import.meta.url).pathname), "..");
const denort = Deno.env.get("DENORT_BIN");
if (!denort) {
  console.error(
    "compile: deno compile needs a denort base binary, which cannot be downloaded here: " +
      "set DENORT_BIN=/path/to/denort (same version as `deno --version`), or build the one-file " +
      "distribution with `deno task dist`, or install with ./scripts/install.sh",
  );
  Deno.exit(1);
}
try {
  await Deno.stat(denort);
} catch {
  console.error(`compile: DENORT_BIN does not exist: ${denort}`);
  Deno.exit(1);
}
const make = await new Deno.Command("make", { args: ["-s", "-C", join(root, "native")] }).spawn().status;
if (!make.success) Deno.exit(1);
const outDir = Deno.args[0] ?? join(root, "dist");
await Deno.mkdir(outDir, { recursive: true });
for (const t of TOOLS) {
  const args = [
    "compile",
    "--no-prompt",
    ...t.permissions,
    ...t.include.flatMap((f) => ["--include", join(root, f)]),
    "--output",
    join(outDir, t.name),
    join(root, t.entry),
  ];
  const status = await new Deno.Command(Deno.execPath(), { args, env: { DENORT_BIN: denort } }).spawn().status;
  if (!status.success) {
    console.error(`compile: deno compile failed for ${t.name}`);
    Deno.exit(1);
  }
}
console.log(`compile: ${TOOLS.map((t) => t.name).join(", ")} written to ${outDir}`);
