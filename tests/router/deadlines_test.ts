/**
 * The routers' fixed-length deadlines (router/deadlines.ts, one timer for a DATA ticket's or a
 * handshake's deadline of every connection): each fires once, in the order set, not before its
 * time; a cancelled one never fires; none pending leaves no timer behind (the test sanitizer
 * fails a test that ends with one). An action at most once per interval (a router's totals
 * line, not one per session): at once when not done lately, else once at the interval's end.
 */
import assert from "node:assert/strict";
import { AtMostEvery, Deadlines } from "../../router/deadlines.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

Deno.test("deadlines: each fires once, in order, not early; a cancelled one never; no timer left", async () => {
  const d = new Deadlines(40);
  const fired: [number, number][] = [];
  const t0 = performance.now();
  const ids = [0, 1, 2, 3].map((i) => d.add(() => fired.push([i, performance.now() - t0])));
  await sleep(10);
  const late = d.add(() => fired.push([4, performance.now() - t0]));
  d.cancel(ids[1]);
  d.cancel(ids[1]); // twice: nothing
  await sleep(120);
  assert.deepEqual(fired.map((f) => f[0]), [0, 2, 3, 4]);
  for (const [i, at] of fired) assert.ok(at >= (i === 4 ? 49 : 39), `deadline ${i} fired at ${at.toFixed(1)} ms`);
  d.cancel(late); // fired already: nothing
  assert.equal(d.size, 0);
});

Deno.test("deadlines: cancelling the last pending one stops the timer; close cancels all", async () => {
  const d = new Deadlines(10_000);
  let n = 0;
  const a = d.add(() => n++);
  d.cancel(a); // the sanitizer would report a 10 s timer left running
  d.add(() => n++);
  d.add(() => n++);
  d.close();
  await sleep(5);
  assert.equal(n, 0);
  assert.equal(d.size, 0);
});

Deno.test("at most every: at once, then one run at the end of the interval for a burst; close runs a pending one", async () => {
  const runs: number[] = [];
  let state = 0;
  const a = new AtMostEvery(60, () => runs.push(state));
  state = 1;
  a.due(); // not done lately: at once
  assert.deepEqual(runs, [1]);
  for (state = 2; state <= 20; state++) a.due(); // a burst: one more run, with the final state
  state = 20;
  assert.deepEqual(runs, [1]);
  await sleep(100);
  assert.deepEqual(runs, [1, 20]);
  a.due(); // ~40 ms after the last run (at ~60 ms): waits for the rest of the interval
  assert.equal(runs.length, 2);
  state = 21;
  a.close(); // the pending run happens now, and no timer is left
  assert.deepEqual(runs, [1, 20, 21]);
  a.close();
  assert.equal(runs.length, 3);
});
