/**
 * MyRT, the user-space run-time overlay: UVPN (router/, native/libuvpn.so) and, later, XUFS
 * (xufs/). The commands live in cli/; this module re-exports the library parts and the helpers
 * they share (common/).
 */
export * as router from "./router/mod.ts";
export * as common from "./common/mod.ts";
export { VERSION } from "./common/version.ts";
