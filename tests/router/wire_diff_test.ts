/**
 * Differential test of the two UVPN codecs: the C decoders (native/fuzz/wire_diff.c, built as
 * native/build/wire_diff) and the TypeScript ones (router/wire.ts) judge the same inputs — the
 * wire fuzz corpus, committed and what the fuzzer found since (native/build/fuzz/work/wire), and
 * 100,000 inputs fast-check derives from the shared vectors (bytes flipped, lengths changed,
 * truncated, extended) — and must agree: the same frame, ticket, datagram and bodies, or both
 * reject. Inputs are the fuzz harness's: a mode byte (bit 0: fix the MAC first; bit 1: judge as
 * on an authenticated link), then the bytes.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import fc from "fast-check";
import { createHmac } from "node:crypto";
import { concat, hex, unhex } from "../../common/bytes.ts";
import {
  decodeConnect,
  decodeConnectAnswer,
  decodeFrame,
  decodeNameAnswer,
  decodePaths,
  decodeTicket,
  HEAD_LEN,
  MAC_LEN,
  openDgram,
  TICKET_LEN,
} from "../../router/wire.ts";
import { ROOT } from "../helpers.ts";

/** FUZZ_KEY of native/fuzz/fuzz.h: "myrt-fuzz-key-01myrt-fuzz-key-02". */
const KEY = new TextEncoder().encode("myrt-fuzz-key-01myrt-fuzz-key-02");
const RUNS = Number(Deno.env.get("MYRT_PROPERTY_RUNS") ?? 100_000);

const mac = (...parts: Uint8Array[]) => {
  const h = createHmac("sha256", KEY);
  for (const p of parts) h.update(p);
  return new Uint8Array(h.digest());
};
const attempt = (f: () => string) => {
  try {
    return f();
  } catch {
    return "ERR";
  }
};

/** What the TypeScript decoders make of one input, in wire_diff.c's canonical form. */
function judge(name: string, data: Uint8Array): string {
  if (data.length < 1) return name;
  const fix = (data[0] & 1) === 1, authed = (data[0] & 2) === 2;
  const raw = data.subarray(1);
  let out = name;
  // frame
  let f = raw.slice();
  if (fix && f.length >= HEAD_LEN + MAC_LEN) {
    const len = (f[6] << 8) | f[7];
    if (f.length === HEAD_LEN + len + MAC_LEN) f.set(mac(f.subarray(0, HEAD_LEN + len)), HEAD_LEN + len);
  }
  const frame = attempt(() => {
    const fr = decodeFrame(KEY, f, authed);
    const b = fr.body;
    const parts = [`${fr.type}/${b.length}/${fr.seq}/${fr.reqId}/${hex(b)}`];
    parts.push("connect=" + attempt(() => {
      const c = decodeConnect(b);
      return `${c.proto}/${c.flags}/${c.srcIp}/${c.srcPort}/${c.dstIp}/${c.dstPort}`;
    }));
    parts.push("answer=" + (b.length ? attempt(() => {
      const a = decodeConnectAnswer(b.subarray(1));
      return `${a.kind}/${a.realIp}/${a.realPort}/${a.srcPort}/${hex(a.listenerId)}/${a.issued}/${hex(a.ticketId)}`;
    }) : "ERR"));
    parts.push("name=" + (b.length ? attempt(() => {
      const n = decodeNameAnswer(b.subarray(1));
      return `${n.ip}/${n.name}`;
    }) : "ERR"));
    parts.push("paths=" + attempt(() => {
      const p = decodePaths(b);
      return `${p.conns}/${p.sent}/${p.received}`;
    }));
    return parts.join(" ");
  });
  out += frame === "ERR" ? " frame=ERR" : ` frame=${frame}`;
  // ticket
  f = raw.slice();
  if (fix && f.length >= TICKET_LEN) f.set(mac(f.subarray(0, TICKET_LEN - MAC_LEN)), TICKET_LEN - MAC_LEN);
  out += " ticket=" + attempt(() => {
    const t = decodeTicket(KEY, f);
    return `${t.kind}/${t.srcIp}/${t.srcPort}/${t.dstIp}/${t.dstPort}/${hex(t.listenerId)}/${t.boundPort}/${t.issued}/${hex(t.ticketId)}`;
  });
  // datagram
  f = raw.slice();
  if (fix && f.length >= 34) f.set(mac(f.subarray(0, 18), f.subarray(34)).subarray(0, 16), 18);
  out += " dgram=" + attempt(() => {
    const d = openDgram(KEY, f);
    return `${d.srcIp}/${d.srcPort}/${d.dstIp}/${d.dstPort}`;
  });
  return out;
}

/** Runs the C half over records (4-byte length, bytes) on its standard input. */
async function cJudge(inputs: Uint8Array[]): Promise<string[]> {
  const p = new Deno.Command(join(ROOT, "native/build/wire_diff"), { args: ["-"], stdin: "piped", stdout: "piped" }).spawn();
  const w = p.stdin.getWriter();
  const writing = (async () => {
    for (const d of inputs) {
      const len = new Uint8Array(4);
      new DataView(len.buffer).setUint32(0, d.length);
      await w.write(concat(len, d));
    }
    await w.close();
  })();
  const out = await p.output();
  await writing;
  assert.equal(out.code, 0);
  return new TextDecoder().decode(out.stdout).trimEnd().split("\n");
}

function compare(inputs: Uint8Array[], c: string[]): void {
  assert.equal(c.length, inputs.length);
  inputs.forEach((d, i) => assert.equal(judge(String(i), d), c[i], `input ${i}: ${hex(d)}`));
}

/** Every file of a fuzz corpus directory, when it exists. */
function corpus(dir: string): Uint8Array[] {
  try {
    return [...Deno.readDirSync(dir)].filter((e) => e.isFile).map((e) => Deno.readFileSync(join(dir, e.name)));
  } catch {
    return [];
  }
}

Deno.test("wire differential: C and TypeScript decode the fuzz corpus alike", async () => {
  const inputs = [...corpus(join(ROOT, "tests/fuzz/corpus/wire")), ...corpus(join(ROOT, "native/build/fuzz/work/wire"))];
  assert.ok(inputs.length >= 100, `only ${inputs.length} corpus inputs`);
  compare(inputs, await cJudge(inputs));
});

Deno.test("wire differential: C and TypeScript agree on inputs mutated from the shared vectors", async () => {
  const vectors = Deno.readTextFileSync(join(ROOT, "tests/vectors/wire.txt")).split("\n")
    .map((l) => l.split(/\s+/))
    .filter((p) => ["frame", "ticket", "dgram"].includes(p[0]))
    .map((p) => unhex(p[p.length - 1]));
  const mutation = fc.record({
    base: fc.constantFrom(...vectors),
    mode: fc.integer({ min: 0, max: 3 }),
    flips: fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 4 }),
    cut: fc.option(fc.nat()),
    extra: fc.uint8Array({ maxLength: 8 }),
  }).map(({ base, mode, flips, cut, extra }) => {
    let b = concat(base, extra);
    for (const [at, v] of flips) b[at % b.length] = v;
    if (cut !== null) b = b.subarray(0, cut % (b.length + 1));
    return concat(new Uint8Array([mode]), b);
  });
  const inputs = fc.sample(mutation, { numRuns: RUNS, seed: 20261201 });
  compare(inputs, await cJudge(inputs));
});
