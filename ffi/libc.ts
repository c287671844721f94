/**
 * The one hand-written, typed Deno.dlopen table of MyRT's TypeScript side for libc: what Deno
 * has no API for. Loaded lazily, only by code paths that need it (a router resetting a socket).
 */

const SYMBOLS = {
  setsockopt: { parameters: ["i32", "i32", "i32", "buffer", "u32"], result: "i32" },
  connect: { parameters: ["i32", "buffer", "u32"], result: "i32" },
} as const;

let lib: Deno.DynamicLibrary<typeof SYMBOLS> | undefined;

/** libc's functions, opened on first use. */
export function libc(): Deno.DynamicLibrary<typeof SYMBOLS>["symbols"] {
  lib ??= Deno.dlopen("libc.so.6", SYMBOLS);
  return lib.symbols;
}

/** SOL_SOCKET on Linux. */
export const SOL_SOCKET = 1;
/** SO_LINGER on Linux. */
export const SO_LINGER = 13;
/** AF_UNSPEC: `connect` to it disconnects a TCP socket, with a reset when it was established. */
export const AF_UNSPEC = 0;
