/**
 * ussh's further ssh connections (xufs/ussh.ts, openStripes): one that comes up just as the
 * session ends (the stop already signalled) is ended too, so ussh returns instead of waiting
 * for that ssh until the test's timeout (a session of one quick command hung 1 run in 10).
 */
import assert from "node:assert/strict";
import { openStripes, type Ssh } from "../../xufs/ussh.ts";

Deno.test("ussh stripes: a connection that comes up as the session ends is closed, and ussh returns", async () => {
  const stop = new AbortController();
  const children: Deno.ChildProcess[] = [];
  const ssh = {
    // The stripe's forward is up only after the session ended: a real process stands for its ssh.
    stripe: () => {
      stop.abort();
      const child = new Deno.Command("sleep", { args: ["60"], stdout: "null", stderr: "null" }).spawn();
      children.push(child);
      return Promise.resolve(child);
    },
    run: () => Promise.resolve(""),
  } as unknown as Ssh;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const ended = await Promise.race([
    openStripes(ssh, 2, "/b/xufs.sock", "/a/server.sock", stop.signal).then(() => "ended"),
    new Promise((r) => (timer = setTimeout(() => r("still waiting after 10 s"), 10_000))),
  ]);
  clearTimeout(timer);
  for (const c of children) {
    try {
      c.kill("SIGKILL");
    } catch { /* ended */ }
    await c.status;
  }
  assert.equal(ended, "ended");
});
