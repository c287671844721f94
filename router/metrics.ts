/**
 * `uvpn_proxy --metrics ADDR:PORT`: the router's counters in the Prometheus text exposition
 * format (version 0.0.4), written out here from the same report as `--status` (router/counters.ts)
 * — no client library: the format is a few lines of text. GET /metrics answers it; anything else
 * is 404. Names are prefixed `uvpn_`; counters end in `_total`, byte counts in `_bytes`.
 */
import { CONNECT_BUCKETS_MS, type StatusReport } from "./counters.ts";

type Sample = [labels: Record<string, string | number> | undefined, value: number];

/** The exposition text of one report. */
export function metricsText(r: StatusReport): string {
  const out: string[] = [];
  const metric = (name: string, type: "counter" | "gauge" | "histogram", help: string, samples: Sample[]) => {
    out.push(`# HELP uvpn_${name} ${help}`, `# TYPE uvpn_${name} ${type}`);
    for (const [labels, value] of samples) out.push(`uvpn_${name}${fmtLabels(labels)} ${value}`);
  };
  const s = r.sessions;
  const sub = { subnet: r.subnet };
  metric("info", "gauge", "The router: its subnet and the AES-GCM implementation of its data plane.", [[{ ...sub, crypto: r.crypto }, 1]]);
  metric("session_bytes_total", "counter", "Bytes carried by sessions to peer routers: read from our programs (sent) and written to them (received).", [
    [{ direction: "sent" }, s.sent],
    [{ direction: "received" }, s.received],
  ]);
  metric("local_relay_bytes_total", "counter", "Bytes of finished relays inside this router's subnet, client to server (up) and back (down).", [
    [{ direction: "up" }, r.local.up],
    [{ direction: "down" }, r.local.down],
  ]);
  metric("sessions_live", "gauge", "Sessions open now.", [[undefined, s.live]]);
  metric("sessions_total", "counter", "Sessions opened.", [[undefined, s.total]]);
  metric("sessions_ended_total", "counter", "Sessions ended, cleanly or with a reset of both programs.", [
    [{ end: "clean" }, s.clean],
    [{ end: "reset" }, s.resets],
  ]);
  metric("relays_open", "gauge", "Virtual connections joined to their data connection now (local relays and sessions).", [[undefined, r.relays.open]]);
  metric("relays_total", "counter", "Virtual connections joined.", [[undefined, r.relays.total]]);
  metric("links", "gauge", "Links now, by kind.", [
    [{ kind: "client" }, r.links.clients],
    [{ kind: "router" }, r.links.routers],
    [{ kind: "unauthenticated" }, r.links.unauthenticated],
  ]);
  metric("link_losses_total", "counter", "Router links lost (reset, closed, silent, or a frame refused).", [[undefined, r.links.losses]]);
  metric("resumes_total", "counter", "Sessions resumed on a new link.", [[undefined, s.reconnects]]);
  metric("replayed_bytes_total", "counter", "Bytes sent again after a resume.", [[undefined, s.replayed]]);
  metric("spooled_bytes_total", "counter", "Bytes that went to a spool file while a link was down.", [[undefined, s.spooled]]);
  metric("memory_bytes", "gauge", "Session bytes held in memory: now, at most so far, and the limit.", [
    [{ kind: "used" }, r.memory.used],
    [{ kind: "peak" }, r.memory.peak],
    [{ kind: "limit" }, r.memory.limit],
  ]);
  metric("spool_bytes", "gauge", "Session bytes in spool files: now, at most so far, and the limit.", [
    [{ kind: "used" }, r.spool.used],
    [{ kind: "peak" }, r.spool.peak],
    [{ kind: "limit" }, r.spool.limit],
  ]);
  metric("frames_total", "counter", "Frames on router links carrying sessions.", [
    [{ direction: "in" }, r.frames.in],
    [{ direction: "out" }, r.frames.out],
  ]);
  metric(
    "frames_refused_total",
    "counter",
    "Frames on router links refused (each ends its link, which then resumes), by reason; ended_session: frames for a session that had ended, ignored.",
    Object.entries(r.frames.refused).map(([reason, n]): Sample => [{ reason }, n]),
  );
  metric("connections_refused_total", "counter", "Connections and requests the router refused.", [[undefined, r.refused]]);
  metric("leases", "gauge", "Leased virtual addresses.", [[undefined, r.leases]]);
  metric("listeners", "gauge", "Registered listeners.", [[undefined, r.links.listeners]]);
  metric("udp_datagrams_total", "counter", "UDP datagrams by what happened to them.", [
    [{ event: "received" }, r.udp.received],
    [{ event: "delivered" }, r.udp.delivered],
    [{ event: "forwarded" }, r.udp.forwarded],
    [{ event: "dropped" }, r.udp.dropped],
  ]);
  const c = r.connects;
  metric("connects_total", "counter", "CONNECT requests answered, with a ticket (ok) or a refusal (failed).", [
    [{ result: "ok" }, c.ok],
    [{ result: "failed" }, c.failed],
  ]);
  const p = r.paths;
  metric("path_connections_total", "counter", "Virtual connections by path: direct (ended, as their clients reported) and relayed (joined here).", [
    [{ path: "direct" }, p.direct],
    [{ path: "relayed" }, p.relayed],
  ]);
  metric("path_bytes_total", "counter", "Bytes of virtual connections by path, both ways: direct (ended, as their clients reported) and relayed (this router's relays and sessions).", [
    [{ path: "direct" }, p.directBytes],
    [{ path: "relayed" }, p.relayedBytes],
  ]);
  metric("direct_offered_total", "counter", "CONNECT requests answered with a DIRECT ticket (brokered).", [[undefined, p.directOffered]]);
  metric("direct_failed_total", "counter", "Direct attempts that failed, the client falling back to the relay.", [[undefined, p.directFailed]]);
  let cum = 0;
  const buckets: Sample[] = CONNECT_BUCKETS_MS.map((ms, i) => {
    cum += c.buckets[i];
    return [{ le: ms / 1000 }, cum];
  });
  buckets.push([{ le: "+Inf" }, c.ok + c.failed]);
  out.push(
    "# HELP uvpn_connect_latency_seconds Time from a CONNECT request to its answer (the far end reached or refused).",
    "# TYPE uvpn_connect_latency_seconds histogram",
    ...buckets.map(([l, v]) => `uvpn_connect_latency_seconds_bucket${fmtLabels(l)} ${v}`),
    `uvpn_connect_latency_seconds_sum ${c.sumMs / 1000}`,
    `uvpn_connect_latency_seconds_count ${c.ok + c.failed}`,
  );
  return out.join("\n") + "\n";
}

function fmtLabels(labels: Record<string, string | number> | undefined): string {
  if (!labels) return "";
  const parts = Object.entries(labels).map(([k, v]) => `${k}="${String(v).replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n")}"`);
  return `{${parts.join(",")}}`;
}

/**
 * Serves GET /metrics on addr until the process ends; throws when it cannot listen. `onListen`
 * gets the address bound (port 0 in addr: the port the system chose).
 */
export function serveMetrics(
  addr: { hostname: string; port: number },
  report: () => Promise<StatusReport>,
  onListen: (bound: { hostname: string; port: number }) => void = () => {},
): Deno.HttpServer {
  return Deno.serve({ hostname: addr.hostname, port: addr.port, onListen }, async (req) => {
    if (new URL(req.url).pathname !== "/metrics" || req.method !== "GET") return new Response("Not found\n", { status: 404 });
    return new Response(metricsText(await report()), { headers: { "content-type": "text/plain; version=0.0.4; charset=utf-8" } });
  });
}
