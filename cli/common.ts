/**
 * What every MyRT command shares: argument parsing with --help/--version, the version string,
 * and the top-level runner that turns a MyrtError into its message and exit code.
 */
import { parseArgs, type ParseArgsConfig } from "node:util";
import { MyrtError, UsageError } from "../common/errors.ts";
import { VERSION } from "../common/version.ts";

/** MyRT's version (common/version.ts), re-exported for the commands and the installer. */
export { VERSION };

/** Options every command takes. */
const COMMON = {
  help: { type: "boolean", short: "h" },
  version: { type: "boolean", short: "V" },
} as const;

/**
 * Parses `args` with node:util parseArgs. Handles --help and --version (printing `usage` or
 * `NAME VERSION` and exiting 0). En dashes, as in the seed page's examples, count as hyphens.
 */
export function parseCli<O extends NonNullable<ParseArgsConfig["options"]>>(
  name: string,
  usage: string,
  args: string[],
  options: O,
  allowPositionals = false,
) {
  const normalized = args.map((a) => a.replace(/^\u2013\u2013?/, (d) => "-".repeat(d.length)));
  let parsed;
  try {
    parsed = parseArgs({
      args: normalized,
      options: { ...COMMON, ...options },
      allowPositionals,
      strict: true,
    });
  } catch (e) {
    throw new UsageError(`${(e as Error).message.replace(/\.$/, "")}\nTry '${name} --help'.`);
  }
  const values = parsed.values as Record<string, unknown>;
  if (values.help) {
    console.log(usage.trim());
    Deno.exit(0);
  }
  if (values.version) {
    console.log(`${name} ${VERSION}`);
    Deno.exit(0);
  }
  return parsed;
}

/** Runs a command's main; a MyrtError prints `NAME: message` and exits with its code. */
export async function runMain(name: string, main: () => Promise<number | void>): Promise<never> {
  try {
    const code = await main();
    Deno.exit(code ?? 0);
  } catch (e) {
    if (e instanceof MyrtError) {
      console.error(`${name}: ${e.message}`);
      Deno.exit(e.exitCode);
    }
    console.error(`${name}: internal error: ${(e as Error)?.stack ?? e}`);
    Deno.exit(70);
  }
}

/** A whole-number flag value within bounds, or a UsageError naming the flag. */
export function intFlag(flag: string, value: string | undefined, fallback: number, min: number, max: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new UsageError(`--${flag} takes a whole number from ${min} to ${max}: ${value}`);
  }
  return n;
}
