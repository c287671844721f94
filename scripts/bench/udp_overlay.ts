/**
 * The benchmark behind scripts/bench/udp_overlay.sh: iperf3 -u between subnet A and subnet B of
 * a two-router overlay on loopback (tests/helpers.ts's Overlay, libuvpn.so on both ends), with
 * the routers carrying UDP as UDP and then inside a TCP carrier link (route option udp=tcp), and
 * the same iperf3 directly on 127.0.0.1. Prints received datagrams/s and loss per case.
 */
import { Overlay, Proc, run, tempDir } from "../../tests/helpers.ts";

const seconds = Number(Deno.args[0] ?? 3);
const paced = Deno.args[1] ?? "50M";
type Path = "direct" | "overlay udp" | "overlay tcp";
const CASES: [string, string, string][] = [["100 B", "100", paced], ["100 B", "100", "0"], ["1200 B", "1200", paced], ["1200 B", "1200", "0"]];

interface Figure {
  pps: number;
  loss: number;
  mbps: number;
}

/** One iperf3 -u run from (addrA in A) to a server at addrB; null env means direct. */
async function once(o: Overlay | null, addrA: string, addrB: string, len: string, rate: string): Promise<Figure> {
  const server = new Proc("iperf3", ["-s", "-1", "-B", addrB, "-p", "5302", "--forceflush"], { env: o ? o.env(o.b, addrB) : undefined });
  try {
    await server.waitFor(/Server listening/);
    if (o) await o.b.router!.waitFor(new RegExp(`listener ${addrB.replaceAll(".", "\\.")}:5302 is at`));
    const r = await run("iperf3", ["-u", "-c", addrB, "-p", "5302", "-l", len, "-b", rate, "-t", String(seconds), "-J"], {
      env: o ? o.env(o.a, addrA) : undefined,
      timeoutMs: 60_000,
    });
    if (r.code !== 0) throw new Error(`iperf3 failed: ${r.stdout.slice(-400)} ${r.stderr.slice(-400)}`);
    const sum = JSON.parse(r.stdout).end.sum;
    const received = sum.packets - sum.lost_packets;
    return { pps: received / sum.seconds, loss: sum.lost_percent, mbps: (received * Number(len) * 8) / sum.seconds / 1e6 };
  } finally {
    await server.stop();
  }
}

using dir = tempDir("myrt-bench-");
const results: Record<string, Record<Path, Figure>> = {};
const key = ([size, , rate]: [string, string, string]) => `${size} ${rate === "0" ? "flood" : `at ${rate}bit/s`}`;
for (const c of CASES) results[key(c)] = {} as Record<Path, Figure>;
for (const c of CASES) results[key(c)].direct = await once(null, "127.0.0.1", "127.0.0.1", c[1], c[2]);
for (const mode of ["udp", "tcp"] as const) {
  const o = new Overlay(dir.path);
  if (mode === "tcp") Deno.writeTextFileSync(o.routes, Deno.readTextFileSync(o.routes).replace(/^(100\.\S+ \S+)$/gm, "$1 udp=tcp"));
  await o.start();
  try {
    const addrB = await o.register(o.b), addrA = await o.register(o.a);
    for (const c of CASES) results[key(c)][`overlay ${mode}`] = await once(o, addrA, addrB, c[1], c[2]);
  } finally {
    await o.stop();
  }
}
const cell = (f: Figure) => `${Math.round(f.pps).toLocaleString("en")} dgram/s, ${f.loss.toFixed(1)}% lost`;
console.log(`iperf3 -u, ${seconds} s per run, received datagrams per second and loss (${navigator.hardwareConcurrency} CPUs)`);
console.log(["case", "direct", "overlay (udp)", "overlay (udp=tcp)"].join(" | "));
for (const [k, r] of Object.entries(results)) {
  console.log([k, cell(r.direct), cell(r["overlay udp"]), cell(r["overlay tcp"])].join(" | "));
}
