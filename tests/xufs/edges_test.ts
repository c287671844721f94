/**
 * A's file server at its edge, as a broken or hostile peer that holds the session secret would
 * find it (issue 16; the unauthenticated side: server_test and notun_test): after the handshake,
 * an unknown op, fields of the wrong type, a header longer than the limit, a payload announced at
 * 2 GiB of which a kilobyte comes (the server holds what arrived), a frame cut short and a
 * request sent one byte at a time. Each malformed message ends that connection only and is
 * logged once; a request with a bad field gets an error answer; another client is served
 * meanwhile without waiting; the server serves new connections afterwards.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { be32 } from "../../common/bytes.ts";
import { clientHandshake, encodeMessage, readMessage } from "../../xufs/messages.ts";
import { sleep, tempDir } from "../helpers.ts";
import { SECRET, serve } from "./serve.ts";

/** An authenticated raw link to the server: sealed bytes the test writes as it likes. */
async function rawLink(path: string) {
  const conn = await Deno.connect({ transport: "unix", path });
  return await clientHandshake(conn, SECRET);
}

Deno.test("xufs edges: after authentication, malformed messages end only their connection, logged once; a slow sender delays no one", async () => {
  using dir = tempDir();
  const a = join(dir.path, "A");
  Deno.mkdirSync(a);
  Deno.writeTextFileSync(join(a, "f"), "four");
  const srv = serve(a, dir.path);
  const good = await srv.connect();
  try {
    // A request one byte at a time (50 ms apart): meanwhile the other client is answered at once.
    const slow = await rawLink(srv.path);
    const req = encodeMessage({ op: "stat", path: "f", id: 7 });
    const dripping = (async () => {
      for (const b of req) {
        await slow.write(new Uint8Array([b]));
        await sleep(50);
      }
    })();
    await sleep(300);
    for (let i = 0; i < 5; i++) {
      const t0 = Date.now();
      assert.equal((await good.request({ op: "stat", path: "f" })).head.entry.size, 4);
      assert.ok(Date.now() - t0 < 1000, `a request waited ${Date.now() - t0} ms behind a slow sender`);
    }
    await dripping;
    const answer = await readMessage(slow);
    assert.equal(answer?.head.id, 7, "the slow request is answered once complete");
    assert.equal(answer?.head.entry.size, 4);

    // A field of the wrong type: an error answer, and the link goes on.
    await slow.write(encodeMessage({ op: "stat", path: 5, id: 8 }));
    const bad = await readMessage(slow);
    assert.equal(bad?.head.id, 8);
    assert.ok(typeof bad?.head.error === "string", JSON.stringify(bad?.head));
    await slow.write(encodeMessage({ op: "stat", path: "f", id: 9 }));
    assert.equal((await readMessage(slow))?.head.entry.size, 4, "the link still serves after an error answer");
    slow.close();

    // Each of these ends its own connection, with one log line.
    const cases: [string, Uint8Array, RegExp][] = [
      ["an unknown op", encodeMessage({ op: "format-disk", id: 1 }), /malformed message.*Unknown op: format-disk/],
      ["a header over the limit", new Uint8Array([...be32(1 << 21), ...be32(0), 0x7b]), /malformed message/],
      ["a header that is not JSON", encodeMessage({ op: "stat" }).fill(0x7b, 8), /malformed message/],
    ];
    for (const [what, bytes, logged] of cases) {
      const before = srv.logs.filter((l) => logged.test(l)).length;
      const l = await rawLink(srv.path);
      await l.write(bytes);
      assert.equal(await readMessage(l).catch(() => null), null, `${what}: the server closed the connection`);
      l.close();
      assert.equal(srv.logs.filter((x) => logged.test(x)).length, before + 1, `${what}: logged once:\n${srv.logs.join("\n")}`);
    }
    // A payload announced at 2 GiB of which a kilobyte comes: the server holds what arrived
    // (common/io.ts readExact), not what was announced.
    const big = await rawLink(srv.path);
    const before = Deno.memoryUsage().external;
    const headBytes = new TextEncoder().encode(JSON.stringify({ op: "stat", path: "f", id: 4 }));
    await big.write(new Uint8Array([...be32(headBytes.length), ...be32(2 ** 31 - 1), ...headBytes, ...new Uint8Array(1024)]));
    await sleep(200);
    const grew = Deno.memoryUsage().external - before;
    assert.ok(grew < 64 << 20, `a 2 GiB announcement held ${Math.round(grew / 2 ** 20)} MiB`);
    big.close();
    // A frame cut short, then the peer leaves: nothing answered, the server goes on.
    const cut = await rawLink(srv.path);
    await cut.write(encodeMessage({ op: "stat", path: "f", id: 3 }).subarray(0, 12));
    cut.close();
    await sleep(100);
    assert.equal((await good.request({ op: "stat", path: "f" })).head.entry.size, 4, "the first client was never disturbed");
    const fresh = await srv.connect();
    assert.equal((await fresh.request({ op: "stat", path: "f" })).head.entry.size, 4, "new connections are served");
    fresh.close();
  } finally {
    good.close();
    srv.close();
  }
});
