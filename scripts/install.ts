/**
 * The installer behind scripts/install.sh: puts MyRT into PREFIX (default ~/myrt) with no root
 * and no Node or Deno needed on the target: PREFIX/bin holds the commands, libuvpn.so and
 * libmyrt.so (the seccomp supervisor); PREFIX/lib/myrt holds the Deno runtime, the sources and
 * the module cache. Everything is addressed relative to PREFIX, so a copy of PREFIX works on
 * another host of the same arch.
 */
import { dirname, join, resolve } from "node:path";
import { NATIVE_LIBS, SOURCE_DIRS, TOOLS } from "../cli/tools.ts";
import { VERSION } from "../cli/common.ts";

const root = resolve(dirname(new URL(import.meta.url).pathname), "..");

async function copyTree(from: string, to: string): Promise<void> {
  await Deno.mkdir(to, { recursive: true });
  for await (const e of Deno.readDir(from)) {
    const src = join(from, e.name), dst = join(to, e.name);
    if (e.isDirectory) await copyTree(src, dst);
    else if (e.isFile && !e.name.endsWith("_test.ts")) await Deno.copyFile(src, dst);
  }
}

function wrapper(name: string, entry: string, permissions: string[]): string {
  return `#!/bin/sh
# MyRT ${VERSION}: ${name}. Written by scripts/install.sh; runs the bundled Deno on the bundled sources.
self=$0
command -v readlink >/dev/null 2>&1 && self=$(readlink -f -- "$0" 2>/dev/null || echo "$0")
lib=$(CDPATH= cd -- "$(dirname -- "$self")/../lib/myrt" && pwd) || exit 127
DENO_DIR=\${MYRT_DENO_DIR:-$lib/cache} DENO_NO_UPDATE_CHECK=1 DENO_NO_PROMPT=1 \\
  exec "$lib/deno" run --quiet --no-prompt --no-lock --node-modules-dir=none --config "$lib/src/deno.json" \\
  ${permissions.join(" ")} "$lib/src/${entry}" "$@"
`;
}

async function install(prefix: string): Promise<void> {
  const bin = join(prefix, "bin"), lib = join(prefix, "lib", "myrt");
  await Deno.mkdir(bin, { recursive: true });
  await Deno.mkdir(join(lib, "src"), { recursive: true });
  // The runtime: replace atomically so a running copy is never overwritten in place.
  await Deno.copyFile(Deno.execPath(), join(lib, "deno.new"));
  await Deno.chmod(join(lib, "deno.new"), 0o755);
  await Deno.rename(join(lib, "deno.new"), join(lib, "deno"));
  await Deno.remove(join(lib, "src"), { recursive: true }).catch(() => {});
  for (const d of SOURCE_DIRS) await copyTree(join(root, d), join(lib, "src", d));
  await Deno.copyFile(join(root, "deno.json"), join(lib, "src", "deno.json"));
  for (const t of TOOLS) {
    const path = join(bin, t.name);
    await Deno.writeTextFile(path + ".new", wrapper(t.name, t.entry, t.permissions), { mode: 0o755 });
    await Deno.rename(path + ".new", path);
  }
  for (const so of NATIVE_LIBS) {
    const dst = join(bin, so.split("/").pop()!);
    await Deno.copyFile(join(root, so), dst + ".new");
    await Deno.rename(dst + ".new", dst);
  }
  await Deno.writeTextFile(join(lib, "VERSION"), VERSION + "\n");
  // Warm the module cache so the first real run starts fast.
  for (const t of TOOLS) {
    const out = await new Deno.Command(join(bin, t.name), { args: ["--version"], stdout: "piped", stderr: "piped" }).output();
    if (!out.success) {
      throw new Error(`Installed ${t.name} does not run: ${new TextDecoder().decode(out.stderr)}`);
    }
  }
  console.log(`MyRT ${VERSION} installed in ${prefix}`);
  console.log(`  commands: ${TOOLS.map((t) => join(bin, t.name)).join(" ")}`);
  console.log(`  preload:  ${join(bin, "libuvpn.so")}`);
  console.log(`  seccomp supervisor: ${join(bin, "libmyrt.so")}`);
  console.log(`Add ${bin} to your PATH.`);
}

const prefix = resolve(Deno.args[0] ?? join(Deno.env.get("HOME") ?? ".", "myrt"));
try {
  await install(prefix);
} catch (e) {
  console.error(`install: ${(e as Error).message}`);
  Deno.exit(1);
}
