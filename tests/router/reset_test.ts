/**
 * Resetting one connection (router/reset.ts): the socket is found by its full 4-tuple, never by
 * its ports alone: a decoy whose ports match but whose addresses differ is left alone, and the
 * intended connection really gets a reset (not a silent clean end).
 */
import assert from "node:assert/strict";
import { findInode, procAddr, resetConn } from "../../router/reset.ts";
import { Proc } from "../helpers.ts";

const addr = (hostname: string, port: number): Deno.NetAddr => ({ transport: "tcp", hostname, port });

Deno.test("reset: /proc lines match on the full 4-tuple, a decoy with the same ports first", () => {
  assert.deepEqual(procAddr(addr("127.0.0.1", 8080)), { v4: "0100007F:1F90", v6: "0000000000000000FFFF00000100007F:1F90" });
  assert.equal(procAddr(addr("::1", 80)).v6, "00000000000000000000000001000000:0050");
  const table = [
    "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode",
    "   0: 0500007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 111 1 0",
    "   1: 0600007F:9C40 0700007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 222 1 0",
    "   2: 0100007F:9C40 0500007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 333 1 0",
  ].join("\n");
  assert.equal(findInode(table, addr("127.0.0.1", 40000), addr("127.0.0.5", 8080), false), "333");
  assert.equal(findInode(table, addr("127.0.0.9", 40000), addr("127.0.0.5", 8080), false), null);
});

Deno.test("reset: the intended connection is reset; one with the same ports on other addresses is not", async () => {
  const server = Deno.listen({ hostname: "127.0.0.5", port: 0 });
  const port = (server.addr as Deno.NetAddr).port;
  const client = await Deno.connect({ hostname: "127.0.0.5", port });
  const peer = await server.accept();
  const p = (client.localAddr as Deno.NetAddr).port;
  // The decoy: local 127.0.0.6:p, remote 127.0.0.7:port — the same two ports as `client`.
  const decoyServer = Deno.listen({ hostname: "127.0.0.6", port: p });
  const py = new Proc("python3", ["-c", `
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.7", ${port})); s.connect(("127.0.0.6", ${p}))
print("connected", flush=True)
data = s.recv(4); s.sendall(data); print("echoed", data.decode(), flush=True)
s.recv(1); print("done", flush=True)
`]);
  const decoy = await decoyServer.accept();
  try {
    await py.waitFor(/connected/);
    assert.equal(resetConn(client), true, "found and reset");
    const buf = new Uint8Array(16);
    await assert.rejects(peer.read(buf), /reset|ECONNRESET/i, "the peer sees a reset, not an end of stream");
    await decoy.write(new TextEncoder().encode("ping"));
    await py.waitFor(/echoed ping/);
    assert.equal(new TextDecoder().decode(buf.subarray(0, (await decoy.read(buf)) ?? 0)), "ping", "the decoy still works");
  } finally {
    for (const c of [peer, decoy, decoyServer, server]) {
      try {
        c.close();
      } catch { /* closed */ }
    }
    await py.stop();
  }
});
