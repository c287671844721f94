/**
 * The native side: the C wire codec and the routers' data-plane core (AES-256-GCM, session keys
 * and frames, byte queue, spool) against the shared vectors, the data plane's sessions under
 * random faults on an injected clock (native/tests/test_sessions.c), and the layering of native/
 * (check_layers.sh). The C checkers run from NATIVE_BUILD: in the sanitizer pass (scripts/test.sh
 * --sanitize) on the ASan + UBSan build, which also counts their lines for gcov.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { LIBUVPN, NATIVE_BUILD, ROOT, run, SANITIZE_RT, tempDir } from "./helpers.ts";

/** Runs a C checker: at least `min` checks, none failed ("N passed, N failed" on stdout). */
async function checksPass(binary: string, args: string[], min: number, timeoutMs = 30_000): Promise<void> {
  const r = await run(join(NATIVE_BUILD, binary), args, { timeoutMs });
  assert.equal(r.code, 0, r.stdout + r.stderr);
  const m = r.stdout.match(/^(\d+) passed, (\d+) failed$/m);
  assert.ok(m, r.stdout);
  assert.ok(Number(m[1]) >= min, `only ${m[1]} checks`);
  assert.equal(m[2], "0");
}

/** Runs a C checker over the shared vectors. */
function vectorsPass(binary: string, min: number): Promise<void> {
  return checksPass(binary, [join(ROOT, "tests/vectors/wire.txt")], min);
}

Deno.test("native: C wire codec agrees with the shared vectors byte for byte", () => vectorsPass("test_wire", 30));

Deno.test("native: the routers' data plane agrees with the shared vectors (every GCM implementation)", () => vectorsPass("test_router", 100));

// Two data planes on one injected clock, their link through the test (random pieces, cuts, a
// flipped byte, silence until the dead timer), real loopback TCP programs writing seeded streams:
// every byte arrives in order or the session is reset with a reason, never truncated; no session
// hangs once the faults stop. A failure prints the seed and the command that repeats it.
// The suite runs seeds 1000..1149 (a regression shows on every run); MYRT_SEED=N runs N..N+149,
// MYRT_SEED=random a fresh range. About 1 s (5 s on the sanitizer build).
Deno.test("native: data-plane sessions deliver every byte or reset, through link cuts and clock jumps", () => {
  const seed = Deno.env.get("MYRT_SEED") ?? "1000";
  return checksPass("test_sessions", seed === "random" ? [] : ["--seed", seed], 151, 120_000);
});

/** Seeds a random range once failed on: each replays its bug forever (docs/TESTING.md). */
const REGRESSION_SEEDS = [
  // The server's application reset at once while the client's session was still opening: the
  // client's connection, handed to a data plane that had already reset the session, was closed
  // cleanly and its program read EOF instead of a reset.
  "250288161229260",
];

Deno.test("native: the seeds that once found a data-plane bug pass", async () => {
  for (const seed of REGRESSION_SEEDS) await checksPass("test_sessions", ["--seed", seed, "--iterations", "1"], 1, 60_000);
});

// The layering is a property of the plain build (the sanitizer pass runs only the checkers above).
const plainOnly = { ignore: SANITIZE_RT !== "" };

Deno.test("native: no lower layer calls an interposed wrapper or a higher layer", plainOnly, async () => {
  const r = await run("make", ["-s", "-C", join(ROOT, "native"), "check-layers"]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  for (const lib of ["libuvpn.so", "libmyrt.so", "libxufs.so", "libxufs_audit.so", "libuvpnrouter.so"]) {
    assert.match(r.stdout, new RegExp(`check_layers: ${lib}: \\d+ objects, no upward calls`));
  }
});

Deno.test("native: the layering check catches common code that calls a wrapper", plainOnly, async () => {
  using dir = tempDir();
  // An object of the bottom layer (its path says common/) that calls send(), which libuvpn.so
  // interposes: the check must name it and fail.
  const obj = join(dir.path, "obj/common/bad.o");
  await Deno.mkdir(join(dir.path, "obj/common"), { recursive: true });
  await Deno.writeTextFile(
    join(dir.path, "bad.c"),
    "#include <sys/socket.h>\nlong bad_send(int fd) { return (long)send(fd, \"x\", 1, 0); }\n",
  );
  const cc = await run("cc", ["-c", "-fPIC", "-o", obj, join(dir.path, "bad.c")]);
  assert.equal(cc.code, 0, cc.stderr);
  const r = await run("sh", [join(ROOT, "native/check_layers.sh"), LIBUVPN, obj]);
  assert.equal(r.code, 1, r.stdout + r.stderr);
  assert.match(r.stderr, /bad\.o \(layer 0\) calls send, an interposed symbol of libuvpn\.so/);
});
