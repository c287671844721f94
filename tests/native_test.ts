/**
 * The native side: the C wire codec and the routers' data-plane core (AES-256-GCM, session keys
 * and frames, byte queue, spool) against the shared vectors, and the layering of native/
 * (check_layers.sh).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { LIBUVPN, ROOT, run, tempDir } from "./helpers.ts";

/** Runs a C checker over the shared vectors: at least `min` checks, none failed. */
async function vectorsPass(binary: string, min: number): Promise<void> {
  const r = await run(join(ROOT, "native/build", binary), [join(ROOT, "tests/vectors/wire.txt")]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  const m = r.stdout.match(/^(\d+) passed, (\d+) failed$/m);
  assert.ok(m, r.stdout);
  assert.ok(Number(m[1]) >= min, `only ${m[1]} checks`);
  assert.equal(m[2], "0");
}

Deno.test("native: C wire codec agrees with the shared vectors byte for byte", () => vectorsPass("test_wire", 30));

Deno.test("native: the routers' data plane agrees with the shared vectors (every GCM implementation)", () => vectorsPass("test_router", 100));

Deno.test("native: no lower layer calls an interposed wrapper or a higher layer", async () => {
  const r = await run("make", ["-s", "-C", join(ROOT, "native"), "check-layers"]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  for (const lib of ["libuvpn.so", "libmyrt.so", "libxufs.so", "libxufs_audit.so", "libuvpnrouter.so"]) {
    assert.match(r.stdout, new RegExp(`check_layers: ${lib}: \\d+ objects, no upward calls`));
  }
});

Deno.test("native: the layering check catches common code that calls a wrapper", async () => {
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
