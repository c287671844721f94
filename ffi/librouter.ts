/**
 * The typed Deno FFI table of libuvpnrouter.so (native/router/api.c), the routers' data plane
 * (and, in native/router/seal.c, the AES-GCM of XUFS's sealed records):
 * every call but `uvpn_dp_wait` returns at once (about a microsecond); `uvpn_dp_wait` blocks until
 * the data plane has events and runs on Deno's blocking pool, one call at a time per router.
 * The library is found like MyRT's other native libraries (ffi/libmyrt.ts) and opened only here.
 */
import { findLibrary } from "./libmyrt.ts";

const SYMBOLS = {
  uvpn_dp_abi: { parameters: [], result: "i32" },
  uvpn_dp_start: { parameters: ["buffer", "u32"], result: "i32" },
  uvpn_dp_cmd: { parameters: ["buffer", "u32"], result: "i32" },
  uvpn_dp_adopt: { parameters: ["buffer", "u32"], result: "i32" },
  uvpn_dp_data_listen: { parameters: ["buffer", "u32"], result: "i32" },
  uvpn_dp_wait: { parameters: [], result: "i32", nonblocking: true },
  uvpn_dp_events: { parameters: ["buffer", "u32"], result: "i32" },
  uvpn_dp_stats: { parameters: ["buffer", "u32"], result: "i32" },
  uvpn_dp_info: { parameters: ["buffer", "u32"], result: "i32" },
  uvpn_dp_stop: { parameters: [], result: "void" },
  // XUFS's sealed records (native/router/seal.c, xufs/seal.ts): pure computation, no thread.
  uvpn_seal_ctx_size: { parameters: [], result: "u32" },
  uvpn_seal_init: { parameters: ["buffer", "buffer"], result: "void" },
  uvpn_seal_record: { parameters: ["buffer", "u64", "buffer", "u32", "buffer"], result: "i32" },
  uvpn_open_record: { parameters: ["buffer", "u64", "buffer", "buffer", "u32"], result: "i32" },
} as const satisfies Deno.ForeignLibraryInterface;

/** The ABI version this table matches (UVPN_DP_ABI in native/router/api.c). */
const ABI = 2;

/** The functions of libuvpnrouter.so. */
export type RouterLib = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

let lib: Deno.DynamicLibrary<typeof SYMBOLS> | undefined;

/** Opens libuvpnrouter.so once (it is never closed: its thread runs until the process ends). */
export function routerLib(): RouterLib {
  if (!lib) {
    const path = findLibrary("libuvpnrouter.so");
    lib = Deno.dlopen(path, SYMBOLS);
    const abi = lib.symbols.uvpn_dp_abi();
    if (abi !== ABI) throw new Error(`libuvpnrouter.so has ABI ${abi}, this MyRT needs ${ABI}: ${path}`);
  }
  return lib.symbols;
}
