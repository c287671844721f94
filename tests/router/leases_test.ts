/** The lease table: unique addresses, persistence across reopen, listeners, corrupt state refused. */
import assert from "node:assert/strict";
import { join } from "node:path";
import { formatIp } from "../../router/ipv4.ts";
import { LeaseTable } from "../../router/leases.ts";
import { tempDir } from "../helpers.ts";

const subnet = { net: 0x64400000, len: 24 }; // 100.64.0.0/24

Deno.test("leases: unique, skip network/broadcast, survive reopen, exhaust cleanly", async () => {
  using dir = tempDir();
  const file = join(dir.path, "s.json");
  const t = await LeaseTable.open(subnet, file);
  const got = new Set<string>();
  for (let i = 0; i < 254; i++) got.add(formatIp((await t.lease("10.0.0.1", ""))!.ip));
  assert.equal(got.size, 254);
  assert.ok(!got.has("100.64.0.0") && !got.has("100.64.0.255"));
  assert.equal(await t.lease("10.0.0.1", ""), null);
  await t.listen(0x64400005, 8080, { realHost: "10.0.0.9", realPort: 40000 });
  const again = await LeaseTable.open(subnet, file);
  assert.equal(again.leases.size, 254);
  assert.deepEqual(again.listener(0x64400005, 8080), { realHost: "10.0.0.9", realPort: 40000 });
  assert.equal(await again.release(0x64400005), true);
  assert.equal(again.listener(0x64400005, 8080), undefined);
  assert.equal(await again.release(0x64400005), false);
  assert.equal(formatIp((await again.lease("h", "n"))!.ip), "100.64.0.5");
});

Deno.test("leases: corrupt or foreign state is refused, not overwritten", async () => {
  using dir = tempDir();
  const file = join(dir.path, "s.json");
  await Deno.writeTextFile(file, "{not json");
  await assert.rejects(LeaseTable.open(subnet, file), /corrupt router state/);
  assert.equal(await Deno.readTextFile(file), "{not json");
  await Deno.writeTextFile(file, JSON.stringify({ version: 1, subnet: "100.99.0.0/16", cursor: 0, leases: [], listeners: [] }));
  await assert.rejects(LeaseTable.open(subnet, file), /belongs to subnet 100\.99\.0\.0\/16/);
});
