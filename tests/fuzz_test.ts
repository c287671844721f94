/**
 * The libFuzzer harnesses of native/fuzz/ (scripts/fuzz.sh): each runs over its committed seed
 * corpus and regression inputs (tests/fuzz/corpus/NAME/) for a fixed number of executions
 * (MYRT_FUZZ_RUNS, default 1,000,000), with ASan and UBSan; any crash, leak or sanitizer report
 * fails. The number of harnesses is read from the Makefile, so a new one cannot be left out.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { ROOT, run } from "./helpers.ts";

Deno.test("fuzz: every C parser of untrusted bytes survives its fuzzer with ASan and UBSan", async () => {
  const makefile = await Deno.readTextFile(join(ROOT, "native/Makefile"));
  const names = makefile.match(/^FUZZERS = (.+)$/m)?.[1].trim().split(/\s+/) ?? [];
  assert.ok(names.length >= 5, `harnesses: ${names.join(" ")}`);
  const runs = Deno.env.get("MYRT_FUZZ_RUNS") ?? "1000000";
  const r = await run("bash", [join(ROOT, "scripts/fuzz.sh"), "--runs", runs], { timeoutMs: 600_000 });
  assert.equal(r.code, 0, r.stdout + r.stderr);
  for (const name of names) {
    assert.match(r.stdout, new RegExp(`^fuzz ${name}: ${runs} executions, no crash$`, "m"));
  }
  assert.match(r.stdout, new RegExp(`^${names.length} passed, 0 failed$`, "m"));
});
