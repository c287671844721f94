/**
 * The bulk transfers of the UVPN session tests (outage_test.ts, dataplane_test.ts): a pair of
 * tests/fixtures/bulk_peer.py programs, N bytes each way, and the check that both ends got
 * exactly what the other sent (lengths and SHA-256); and the overlay whose router link runs
 * through the fault-injection relay they break it with.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { FaultRelay } from "../../scripts/fault_relay.ts";
import { Overlay, Proc, ROOT } from "../helpers.ts";

const PEER = join(ROOT, "tests/fixtures/bulk_peer.py");

/** An overlay whose A -> B router link runs through a fault relay the test holds (`tap` sees its bytes). */
export async function relayedOverlay(dir: string, routerArgs: string[] = [], tap?: (conn: number, dir: "up" | "down", b: Uint8Array) => void) {
  const o = new Overlay(dir, { routerArgs });
  const relay = new FaultRelay({ listen: { hostname: "127.0.0.4", port: 0 }, target: { hostname: o.b.host, port: o.b.port }, tap });
  o.routeBVia({ host: "127.0.0.4", port: relay.start() });
  await o.start();
  return { o, relay };
}

/** The JSON report a bulk peer prints last. */
export function report(p: { stdout: string; stderr: string }) {
  const line = p.stdout.trim().split("\n").pop() ?? "";
  try {
    return JSON.parse(line);
  } catch {
    throw new Error(`no report: ${p.stdout}\n${p.stderr}`);
  }
}

/** A bulk server in subnet B on `port`; `client()` starts the client in A once it listens. */
export function bulkPeers(o: Overlay, addrA: string, addrB: string, nbytes: number, port = 9100) {
  const server = new Proc("python3", [PEER, "listen", addrB, String(port), String(nbytes), "1"], { env: o.env(o.b, addrB) });
  return {
    server,
    client: async () => {
      await server.waitFor(/listening/);
      await o.b.router!.waitFor(new RegExp(`listener .*:${port} is at`));
      return new Proc("python3", [PEER, "connect", addrB, String(port), String(nbytes), "2"], { env: o.env(o.a, addrA) });
    },
  };
}

/** Waits for both peers; asserts both exited 0 with n bytes each way, intact. Returns their reports. */
export async function assertIntact(server: Proc, client: Proc, n: number, timeoutMs: number) {
  const [c, s] = [await client.result(timeoutMs), await server.result(timeoutMs)];
  const [rc, rs] = [report(c), report(s)];
  assert.equal(c.code, 0, c.stderr);
  assert.equal(s.code, 0, s.stderr);
  assert.deepEqual([rc.sent, rc.received, rs.sent, rs.received], [n, n, n, n], JSON.stringify({ rc, rs }));
  assert.equal(rc.sent_sha, rs.received_sha, "A -> B intact");
  assert.equal(rs.sent_sha, rc.received_sha, "B -> A intact");
  return { rc, rs };
}
