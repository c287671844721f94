/**
 * Route files under fast-check: any valid table formats back to itself (parse ∘ format = id),
 * and any text at all either parses or fails with ConfigError naming FILE:LINE — never another
 * exception. The seed is printed by fast-check on failure, so a failing case can be replayed.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { ConfigError } from "../../common/errors.ts";
import { formatSubnet } from "../../router/ipv4.ts";
import { parseRoutes, type Route } from "../../router/routes.ts";

const RUNS = Number(Deno.env.get("MYRT_PROPERTY_RUNS") ?? 100_000);

/** Non-overlapping subnets: distinct /16s inside 100.64.0.0/10, each narrowed to a random length (routers take /8 to /30). */
const subnets = fc.uniqueArray(fc.integer({ min: 0, max: 63 }), { minLength: 1, maxLength: 12 }).chain((sixteens) =>
  fc.tuple(...sixteens.map((s) => fc.integer({ min: 16, max: 30 }).map((len) => ({ net: (0x6440 + s) << 16 >>> 0, len }))))
);
// Generators built from characters, not fc.stringMatching (ten times slower): the suite runs
// every property 100,000 times.
const LETTERS = [..."abcdefghijklmnopqrstuvwxyz"];
const label = (max: number) =>
  fc.tuple(fc.constantFrom(...LETTERS), fc.string({ unit: fc.constantFrom(...LETTERS, ..."0123456789-"), maxLength: max }))
    .map(([first, rest]) => first + rest);
const host = fc.oneof(
  fc.tuple(label(20), fc.array(label(10), { maxLength: 3 })).map(([first, rest]) => [first, ...rest].join(".")),
  fc.ipV4(),
  fc.ipV6().map((v6) => `[${v6}]`),
);
const routeLine = fc.record({
  host,
  port: fc.integer({ min: 1, max: 65535 }),
  udp: fc.constantFrom("udp", "tcp", undefined),
  comment: fc.option(fc.string({ maxLength: 30 }).map((c) => c.replaceAll("\n", " "))),
  pad: fc.constantFrom(" ", "\t", "   "),
});

function format(r: { subnet: string; host: string; port: number; udp?: string; comment: string | null; pad: string }): string {
  return [r.subnet, `${r.host}:${r.port}`, r.udp === undefined ? "" : `udp=${r.udp}`].filter(Boolean).join(r.pad) +
    (r.comment === null ? "" : ` #${r.comment}`);
}

Deno.test("routes property: parse(format(table)) gives the table back, line numbers included", () => {
  fc.assert(
    fc.property(subnets.chain((nets) => fc.tuple(fc.constant(nets), fc.array(routeLine, { minLength: nets.length, maxLength: nets.length }), fc.array(fc.boolean(), { minLength: nets.length, maxLength: nets.length }))), ([nets, lines, blanks]) => {
      const want = nets.map((s, i) => ({ ...lines[i], subnet: formatSubnet({ net: s.net & (s.len ? (0xffffffff << (32 - s.len)) >>> 0 : 0), len: s.len }) }));
      const text: string[] = [];
      const lineOf: number[] = [];
      want.forEach((r, i) => {
        if (blanks[i]) text.push("# a comment line", "");
        text.push(format(r));
        lineOf.push(text.length);
      });
      const got: Route[] = parseRoutes(text.join("\n") + "\n", "routes");
      assert.equal(got.length, want.length);
      got.forEach((r, i) => {
        assert.equal(formatSubnet(r.subnet), want[i].subnet);
        assert.equal(r.host, want[i].host.replace(/^\[(.*)\]$/, "$1"));
        assert.equal(r.port, want[i].port);
        assert.equal(r.udp, want[i].udp ?? "udp");
        assert.equal(r.line, lineOf[i]);
      });
    }),
    { numRuns: RUNS },
  );
});

Deno.test("routes property: any text parses or fails with ConfigError naming the file and line", () => {
  const junk = fc.oneof(
    fc.string({ maxLength: 200 }),
    fc.array(fc.oneof(fc.constantFrom("100.64.0.0/16", "10.0.0.0", "h:1", "[::1]:7", "udp=tcp", "#", "<a:2>", "300.1.1.1", "/33", ":", " ", "\t", "\n"), fc.string({ maxLength: 8 })), { maxLength: 30 }).map((a) => a.join(" ")),
  );
  fc.assert(
    fc.property(junk, (text) => {
      try {
        parseRoutes(text, "f");
      } catch (e) {
        assert.ok(e instanceof ConfigError, `not a ConfigError: ${e}`);
        assert.match((e as Error).message, /^f(:\d+)?: \S/);
      }
    }),
    { numRuns: RUNS },
  );
});
