/**
 * Requests to a router from the commands and from peer routers, over a link of their own
 * (router/link.ts): one request on a fresh link (`request`, `requestOk`), and the mapping of
 * link failures to the user-facing error classes (wrong key: AuthError; unreachable: NetworkError).
 */
import { AuthError, NetworkError } from "../common/errors.ts";
import { type Answer, ClientLink, LinkError, type LinkOptions, type RouterAddr } from "./link.ts";
import { FrameType, Status, statusName } from "./wire.ts";

export type { RouterAddr };

/** Options of a request. */
export interface RequestOptions extends LinkOptions {
  timeoutMs?: number;
}

/** The user-facing error for a failed link or request. */
export function linkFailure(addr: RouterAddr, e: unknown): Error {
  if (e instanceof LinkError && e.kind === "refused") {
    return new AuthError(`Router refused the request (wrong network key?): ${addr.host}:${addr.port} (${e.message})`);
  }
  if (e instanceof LinkError) return new NetworkError(e.message);
  return new NetworkError(`No reply from router: ${addr.host}:${addr.port} (${(e as Error).message})`);
}

/** Opens a link to a router, mapping failures to AuthError / NetworkError. */
export async function connectRouter(addr: RouterAddr, key: Uint8Array, opts: LinkOptions = {}): Promise<ClientLink> {
  try {
    return await ClientLink.open(addr, key, opts);
  } catch (e) {
    throw linkFailure(addr, e);
  }
}

/** One request on `link`, mapping failures to NetworkError. */
export async function ask(link: ClientLink, type: number, body: Uint8Array = new Uint8Array(0), timeoutMs = 10_000): Promise<Answer> {
  try {
    return await link.request(type, body, timeoutMs);
  } catch (e) {
    throw linkFailure(link.addr, e);
  }
}

/** Opens a link, sends one request, reads its answer, closes. */
export async function request(
  addr: RouterAddr,
  key: Uint8Array,
  type: number,
  body: Uint8Array,
  opts: RequestOptions = {},
): Promise<Answer> {
  const link = await connectRouter(addr, key, opts);
  try {
    return await ask(link, type, body, opts.timeoutMs ?? 10_000);
  } finally {
    link.close();
  }
}

/** Like `request`, but a non-OK status becomes a NetworkError naming it. */
export async function requestOk(
  addr: RouterAddr,
  key: Uint8Array,
  type: number,
  body: Uint8Array,
  what: string,
): Promise<Uint8Array> {
  const reply = await request(addr, key, type, body);
  if (reply.status !== Status.OK) {
    throw new NetworkError(`Router refused ${what}: ${statusName(reply.status)}`);
  }
  return reply.data;
}

/**
 * Keeps a link open that presents holder token `token` (so the leases it names stay held) until
 * `stop()`; when the link breaks (a router restart) it is opened again, first after 0.5 s, then
 * backing off to 10 s. `uvpn_register -r -- CMD` holds its lease this way while CMD runs.
 */
export function holdLeases(
  addr: RouterAddr,
  key: Uint8Array,
  first: ClientLink,
  token: Uint8Array,
  log: (line: string) => void,
): { stop(): void } {
  let stopped = false;
  let link: ClientLink | undefined = first;
  let wake: () => void = () => {};
  (async () => {
    let delay = 500;
    while (!stopped) {
      if (link) {
        await Promise.race([link.ended, new Promise<void>((r) => (wake = r))]);
        if (stopped) break;
        log(`lost the link to router ${addr.host}:${addr.port}; reconnecting`);
        link = undefined;
      }
      await new Promise<void>((r) => {
        const t = setTimeout(r, delay);
        wake = () => {
          clearTimeout(t);
          r();
        };
      });
      if (stopped) break;
      try {
        link = await ClientLink.open(addr, key, { holder: token, timeoutMs: 10_000 });
        await link.request(FrameType.INFO); // a first request authenticates the link
        delay = 500;
      } catch {
        link?.close();
        link = undefined;
        delay = Math.min(delay * 2, 10_000);
      }
    }
    link?.close();
  })();
  return {
    stop() {
      stopped = true;
      link?.close();
      wake();
    },
  };
}
