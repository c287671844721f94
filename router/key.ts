/**
 * The per-user network key (default ~/.uvpn_key): 32 random bytes stored as hex, mode 0600.
 * Owns locating, creating, reading and permission-checking it.
 */
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { hex, unhex } from "../common/bytes.ts";
import { KeyError } from "../common/errors.ts";
import { homeDir } from "../common/fs.ts";

/** The key file to use: an explicit path, else $UVPN_KEY_FILE, else ~/.uvpn_key. */
export function keyPath(explicit?: string): string {
  if (explicit) return explicit;
  const fromEnv = Deno.env.get("UVPN_KEY_FILE");
  if (fromEnv) return fromEnv;
  return join(homeDir(), ".uvpn_key");
}

/** Parses key file text: 64 hex characters, optional trailing white space. */
export function parseKey(text: string, file: string): Uint8Array {
  const t = text.trim();
  if (!/^[0-9a-fA-F]{64}$/.test(t)) {
    throw new KeyError(`Malformed network key (want 64 hex characters): ${file}`);
  }
  return unhex(t);
}

/** Reads the key, refusing a file that group or others can access. */
export async function readKey(file: string): Promise<Uint8Array> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(file);
  } catch {
    throw new KeyError(`No network key: ${file} (start uvpn_proxy once to create it, then copy it to every site)`);
  }
  if (info.mode !== null && (info.mode & 0o077) !== 0) {
    throw new KeyError(
      `Network key is accessible by others (mode ${(info.mode & 0o777).toString(8)}; run chmod 600): ${file}`,
    );
  }
  return parseKey(await Deno.readTextFile(file), file);
}

/**
 * Reads the key, creating a fresh random one (mode 0600, never overwriting) when absent.
 * Returns the key and whether it was created.
 */
export async function readOrCreateKey(file: string): Promise<{ key: Uint8Array; created: boolean }> {
  try {
    await Deno.lstat(file);
    return { key: await readKey(file), created: false };
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  const key = new Uint8Array(randomBytes(32));
  try {
    await Deno.writeTextFile(file, hex(key) + "\n", { createNew: true, mode: 0o600 });
  } catch (e) {
    if (e instanceof Deno.errors.AlreadyExists) return { key: await readKey(file), created: false };
    throw new KeyError(`Cannot create network key: ${file} (${(e as Error).message})`);
  }
  await Deno.chmod(file, 0o600);
  return { key, created: true };
}
