/**
 * MyRT, the user-space run-time overlay: UVPN (router/, native/libuvpn.so) and, later, XUFS
 * (xufs/). The commands live in cli/; this module re-exports the library parts.
 */
export * as router from "./router/mod.ts";
export { VERSION } from "./cli/common.ts";
