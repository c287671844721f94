/** The network key: creation with mode 0600, reuse, malformed and over-shared files refused. */
import assert from "node:assert/strict";
import { join } from "node:path";
import { readKey, readOrCreateKey } from "../../router/key.ts";
import { KeyError } from "../../common/errors.ts";
import { tempDir } from "../helpers.ts";

Deno.test("key: created once with mode 0600, then reused, never overwritten", async () => {
  using dir = tempDir();
  const file = join(dir.path, "k");
  const first = await readOrCreateKey(file);
  assert.equal(first.created, true);
  assert.equal((await Deno.stat(file)).mode! & 0o777, 0o600);
  const second = await readOrCreateKey(file);
  assert.equal(second.created, false);
  assert.deepEqual(second.key, first.key);
});

Deno.test("key: malformed, missing and group-readable keys are refused with the path", async () => {
  using dir = tempDir();
  const file = join(dir.path, "k");
  await assert.rejects(readKey(file), (e: Error) => e instanceof KeyError && e.message.includes(file));
  await Deno.writeTextFile(file, "not hex\n", { mode: 0o600 });
  await assert.rejects(readKey(file), /Malformed network key/);
  await assert.rejects(readOrCreateKey(file), /Malformed network key/);
  assert.equal(await Deno.readTextFile(file), "not hex\n");
  await Deno.writeTextFile(file, "ab".repeat(32) + "\n");
  await Deno.chmod(file, 0o640);
  await assert.rejects(readKey(file), /accessible by others \(mode 640/);
});
