/**
 * Line coverage per area against the floors in tests/coverage_floors.json (docs/TESTING.md,
 * "Coverage"). Reads the suite's TypeScript coverage as lcov (`deno coverage --lcov`) and the
 * native libraries' as gcov text files (`llvm-cov gcov` over the sanitizer build's .gcda files),
 * sums covered and instrumented lines per area (a directory: `router`, `xufs/cache`,
 * `native/uvpn`, ...), prints a table and exits 1 when an area is below its floor. With
 * --update it raises each floor to the measured value less a margin (floors never go down).
 *
 *   deno run -A scripts/coverage_check.ts [--lcov FILE] [--gcov DIR] [--update]
 *   deno run -A scripts/coverage_check.ts --prune DIR   (drops incomplete profiles first)
 */
import { parseArgs } from "node:util";
import { dirname, join, relative } from "node:path";

const ROOT = join(dirname(new URL(import.meta.url).pathname), "..");
const FLOORS = join(ROOT, "tests/coverage_floors.json");
/** Run-to-run variation (timing-dependent paths) an updated floor leaves room for, in points. */
const MARGIN = 3;

type Floors = Record<string, number>;
/** Per source file: line number → covered. */
type Lines = Map<string, Map<number, boolean>>;

function mark(lines: Lines, file: string, line: number, covered: boolean): void {
  let m = lines.get(file);
  if (!m) lines.set(file, m = new Map());
  m.set(line, (m.get(line) ?? false) || covered);
}

/** Lines of an lcov file (DA records), by path relative to the repository. */
export function readLcov(text: string, lines: Lines): void {
  let file = "";
  for (const l of text.split("\n")) {
    if (l.startsWith("SF:")) file = relative(ROOT, l.slice(3).replace(/^file:\/\//, ""));
    else if (l.startsWith("DA:")) {
      const [n, hits] = l.slice(3).split(",").map(Number);
      mark(lines, file, n, hits > 0);
    }
  }
}

/** Lines of gcov text files (`COUNT:LINE:SOURCE`; `#####` never ran, `-` not code) under dir. */
export function readGcov(dir: string, lines: Lines): void {
  for (const e of Deno.readDirSync(dir)) {
    const path = join(dir, e.name);
    if (e.isDirectory) {
      readGcov(path, lines);
      continue;
    }
    if (!e.name.endsWith(".gcov")) continue;
    const text = Deno.readTextFileSync(path);
    const src = text.match(/^\s*-:\s*0:Source:(.*)$/m)?.[1];
    if (!src) continue;
    const file = relative(ROOT, src.startsWith("/") ? src : join(ROOT, "native", src));
    if (!file.startsWith("native/") || file.startsWith("native/tests/") || file.startsWith("native/fuzz/")) continue;
    for (const m of text.matchAll(/^\s*([^:\s]+):\s*(\d+):/gm)) {
      if (m[1] === "-") continue;
      mark(lines, file, Number(m[2]), m[1] !== "#####" && m[1] !== "=====");
    }
  }
}

/** The area of a file: its directory (native/X for native/X/...). */
function areaOf(file: string): string {
  const parts = file.split("/");
  if (parts[0] === "native") return parts.slice(0, 2).join("/");
  return parts.length > 1 ? parts.slice(0, -1).join("/") : ".";
}

/** Covered and instrumented lines per area. */
export function byArea(lines: Lines): Map<string, { covered: number; total: number }> {
  const out = new Map<string, { covered: number; total: number }>();
  for (const [file, m] of lines) {
    if (/(^|\/)tests?\//.test(file) || file.startsWith("scripts/") || file.startsWith("..")) continue;
    const a = areaOf(file);
    const s = out.get(a) ?? { covered: 0, total: 0 };
    for (const c of m.values()) {
      s.total++;
      if (c) s.covered++;
    }
    out.set(a, s);
  }
  return out;
}

/**
 * Removes the profiles in dir that are not whole JSON documents (a process killed while writing
 * its coverage, as tests kill routers and servers) so that `deno coverage` can read the rest;
 * returns how many it removed.
 */
export function pruneProfiles(dir: string): number {
  let removed = 0;
  for (const e of Deno.readDirSync(dir)) {
    if (!e.isFile || !e.name.endsWith(".json")) continue;
    const path = join(dir, e.name);
    try {
      JSON.parse(Deno.readTextFileSync(path));
    } catch {
      Deno.removeSync(path);
      removed++;
    }
  }
  return removed;
}

if (import.meta.main) {
  const { values } = parseArgs({ options: { lcov: { type: "string" }, gcov: { type: "string" }, update: { type: "boolean" }, prune: { type: "string" } } });
  if (values.prune) {
    const n = pruneProfiles(values.prune);
    if (n) console.log(`coverage: left out ${n} incomplete profile(s) (processes killed while writing them)`);
    Deno.exit(0);
  }
  const lines: Lines = new Map();
  if (values.lcov) readLcov(Deno.readTextFileSync(values.lcov), lines);
  if (values.gcov) readGcov(values.gcov, lines);
  const floors: Floors = JSON.parse(Deno.readTextFileSync(FLOORS));
  const measured = byArea(lines);
  let failed = 0;
  console.log("coverage: area                 lines     covered  floor");
  for (const [a, s] of [...measured].sort()) {
    const pct = s.total ? (100 * s.covered) / s.total : 0;
    const floor = floors[a];
    const below = floor !== undefined && pct < floor;
    if (below) failed++;
    console.log(`coverage: ${a.padEnd(20)} ${String(s.total).padStart(6)} ${pct.toFixed(1).padStart(10)}%  ${floor ?? "-"}${below ? "  BELOW THE FLOOR" : ""}`);
    if (values.update && s.total) floors[a] = Math.max(floor ?? 0, Math.floor(pct) - MARGIN);
  }
  for (const a of Object.keys(floors)) {
    if (!measured.has(a) && (a.startsWith("native/") ? values.gcov : values.lcov)) {
      console.log(`coverage: ${a}: no coverage measured (floor ${floors[a]})`);
      failed++;
    }
  }
  if (values.update) Deno.writeTextFileSync(FLOORS, JSON.stringify(Object.fromEntries(Object.entries(floors).sort()), null, 2) + "\n");
  if (failed) {
    console.log(`coverage: ${failed} area(s) below their floor (tests/coverage_floors.json)`);
    Deno.exit(1);
  }
}
