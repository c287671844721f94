/**
 * The TypeScript passes `deno lint` (the rules of deno.json) with no problem, so a new one shows
 * up as a failing test rather than piling up.
 */
import assert from "node:assert/strict";
import { DENO, ROOT, run } from "./helpers.ts";

Deno.test("lint: deno lint finds no problem in the tree", async () => {
  const r = await run(DENO, ["lint", "--quiet"], { cwd: ROOT, timeoutMs: 120_000 });
  assert.equal(r.code, 0, r.stdout + r.stderr);
});
