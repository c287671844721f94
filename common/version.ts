/** MyRT's version string, read from deno.json: what every command and the installer report. */
import meta from "../deno.json" with { type: "json" };

/** MyRT's version, from deno.json. */
export const VERSION: string = meta.version;
