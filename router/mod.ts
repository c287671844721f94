/**
 * UVPN router area: the wire format, route table, network key, lease table, relay, the router
 * itself and the client side of its request/reply exchange. Also re-exports the shared helpers
 * that used to live here (byte helpers, error classes, homeDir, writeFileAtomic) under their
 * old names.
 */
export * from "./wire.ts";
export * from "../common/errors.ts";
export { be16, concat, hex, sameBytes, u16, u32, unhex } from "../common/bytes.ts";
export { homeDir, writeFileAtomic } from "../common/fs.ts";
export * from "./ipv4.ts";
export * from "./routes.ts";
export * from "./key.ts";
export * from "./leases.ts";
export { RELAY_BUFFER, relay, type RelayResult } from "./relay.ts";
export * from "./router.ts";
export * from "./counters.ts";
export * from "./client.ts";
export * from "./link.ts";
