/** Route table parsing: the seed's format, CIDR, comments, and `FILE:LINE: why` errors. */
import assert from "node:assert/strict";
import { formatSubnet } from "../../router/ipv4.ts";
import { parseHostPort, parseRoutes, routeFor, sameSite } from "../../router/routes.ts";
import { ConfigError } from "../../common/errors.ts";

Deno.test("routes: seed format, CIDR, comments and blank lines", () => {
  const routes = parseRoutes(
    "# my network\n189.1.0.0     <host_A:7001>\n\n100.65.0.0/16 head-b.example:7002  # site B\n",
    "r",
  );
  assert.equal(routes.length, 2);
  assert.equal(formatSubnet(routes[0].subnet), "189.1.0.0/16");
  assert.deepEqual([routes[0].host, routes[0].port, routes[0].line], ["host_A", 7001, 2]);
  assert.deepEqual([routes[1].host, routes[1].port, routes[1].line], ["head-b.example", 7002, 4]);
  assert.equal(routeFor(routes, 0xbd01ff07)?.host, "host_A"); // 189.1.255.7
  assert.equal(routeFor(routes, 0x0a000001), undefined);
});

Deno.test("routes: every bad line names FILE:LINE and why", () => {
  const cases: [string, RegExp][] = [
    ["100.64.0.0/16 hostonly\n", /^f:1: expected host:port: hostonly$/],
    ["\n100.64.0.0/16 h:99999\n", /^f:2: port out of range .*: 99999$/],
    ["300.1.0.0 h:1\n", /^f:1: bad IPv4 address: 300\.1\.0\.0$/],
    ["100.64.0.0/33 h:1\n", /^f:1: bad prefix length .*: 33$/],
    ["100.64.0.1/16 h:1\n", /^f:1: host bits set in subnet: 100\.64\.0\.1\/16/],
    ["100.64.0.0/16 h:1 extra\n", /^f:1: expected udp=udp, udp=tcp, encrypt or site=NAME: extra$/],
    ["100.64.0.0/16 h:1 udp=sctp\n", /^f:1: expected udp=udp or udp=tcp: udp=sctp$/],
    ["100.64.0.0/16 h:1 udp=tcp x\n", /^f:1: expected udp=udp, udp=tcp, encrypt or site=NAME: x$/],
    ["100.64.0.0/16 h:1 encrypt encrypt\n", /^f:1: option given twice: encrypt$/],
    ["100.64.0.0/16 h:1 udp=tcp encrypt site=a x\n", /^f:1: expected "PREFIX host:port \[udp=udp\|udp=tcp\] \[encrypt\] \[site=NAME\]", found 6 field/],
    ["100.64.0.0/16 h:1 site=\n", /^f:1: expected site=NAME \(1 to 63 letters, digits, '\.', '_' or '-'\): site=$/],
    ["100.64.0.0/16 h:1 site=a/b\n", /^f:1: expected site=NAME .*: site=a\/b$/],
    ["100.64.0.0/16 h:1\n100.64.128.0/17 h:2\n", /^f:2: subnet 100\.64\.128\.0\/17 overlaps 100\.64\.0\.0\/16 from line 1$/],
    ["# only a comment\n", /^f: no routes in the file$/],
  ];
  for (const [text, re] of cases) {
    assert.throws(() => parseRoutes(text, "f"), (e: unknown) => e instanceof ConfigError && re.test((e as Error).message), text);
  }
});

Deno.test("routes: HOST:PORT refuses port 0, unless any port may do (--metrics 127.0.0.1:0)", () => {
  assert.throws(() => parseHostPort("127.0.0.1:0"), /^Error: Port out of range \(1 to 65535\): 0$/);
  assert.deepEqual(parseHostPort("127.0.0.1:0", { anyPort: true }), { host: "127.0.0.1", port: 0 });
  assert.throws(() => parseHostPort("[::1]:65536", { anyPort: true }), /^Error: Port out of range \(0 to 65535\): 65536$/);
});

Deno.test("routes: an optional udp=udp|udp=tcp third field, udp by default", () => {
  const routes = parseRoutes("100.64.0.0/16 a:1\n100.65.0.0/16 b:2 udp=tcp\n100.66.0.0/16 c:3 udp=udp # x\n", "r");
  assert.deepEqual(routes.map((r) => r.udp), ["udp", "tcp", "udp"]);
});

Deno.test("routes: an optional encrypt option, in any order with udp=", () => {
  const routes = parseRoutes("100.64.0.0/16 a:1 encrypt\n100.65.0.0/16 b:2 encrypt udp=tcp\n100.66.0.0/16 c:3 udp=tcp\n", "r");
  assert.deepEqual(routes.map((r) => [r.udp, r.encrypt === true]), [["udp", true], ["tcp", true], ["tcp", false]]);
});

Deno.test("routes: site=NAME groups routers into sites; without it each router is a site of its own", () => {
  const routes = parseRoutes("100.64.0.0/16 a:1 site=east\n100.65.0.0/16 b:2 udp=tcp site=east\n100.66.0.0/16 c:3\n100.67.0.0/16 d:4\n", "r");
  assert.deepEqual(routes.map((r) => r.site), ["east", "east", undefined, undefined]);
  assert.equal(sameSite(routes[0], routes[1]), true);
  assert.equal(sameSite(routes[2], routes[2]), true);
  assert.equal(sameSite(routes[2], routes[3]), false);
  assert.equal(sameSite(routes[0], routes[2]), false);
});
