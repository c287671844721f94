/**
 * UVPN router area: the wire format, route table, network key, lease table, relay, the router
 * itself and the client side of its request/reply exchange.
 */
export * from "./wire.ts";
export * from "./errors.ts";
export * from "./ipv4.ts";
export * from "./routes.ts";
export * from "./key.ts";
export * from "./leases.ts";
export * from "./relay.ts";
export * from "./router.ts";
export * from "./client.ts";
