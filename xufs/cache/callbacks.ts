/**
 * Change callbacks on B: A pushes the paths that changed in its export; the directories B has
 * listed that hold them are relisted at once (batched), so stale placeholders are replaced and
 * the next open fetches the new content. Busy paths are left alone by the listing itself (see
 * xufs/cache/listings.ts): a file open for writing on B is never replaced under its descriptors.
 */
import type { Listings } from "./listings.ts";
import type { Precacher } from "./precache.ts";
import { type CacheState, parentOf } from "./state.ts";

/** How long changed directories are gathered before they are relisted. */
const GATHER_MS = 20;

/** Applies A's change callbacks to the skeleton. */
export class ChangeCallbacks {
  #stale = new Set<string>();
  #timer?: ReturnType<typeof setTimeout>;
  /** Directories relisted because of A's notices so far (for tests and diagnostics). */
  relisted = 0;

  constructor(private readonly state: CacheState, private readonly listings: Listings, private readonly precacher: Precacher) {}

  /** A pushed notice; `{op:"changed", paths}` marks the listed directories holding them stale. */
  notice(h: Record<string, unknown>): void {
    if (h.op === "changed" && Array.isArray(h.paths)) this.changed(h.paths.map(String));
  }

  /** Paths changed on A (or to be looked at again): their listed directories are relisted soon. */
  changed(paths: string[]): void {
    for (const p of paths) {
      this.state.distrust(p);
      for (const d of p === "." ? ["."] : [p, parentOf(p)]) {
        this.precacher.reset(d);
        const m = this.state.meta.get(d);
        if (m?.listed) {
          m.listed = false;
          this.#stale.add(d);
        }
      }
    }
    if (this.#stale.size && !this.#timer) {
      this.#timer = setTimeout(() => {
        this.#timer = undefined;
        const dirs = [...this.#stale];
        this.#stale.clear();
        for (const d of dirs) {
          this.listings.list(d).then(() => this.relisted++, () => {}); // gone on A: its parent's relist drops it
        }
      }, GATHER_MS);
    }
  }
}
