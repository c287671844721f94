/**
 * Resetting a TCP connection (RST, not FIN) from Deno, which has no API for it (its close() sends
 * a FIN first): find the socket's fd through /proc and `connect` it to AF_UNSPEC with libc
 * (ffi/libc.ts), which makes Linux abort the connection with a reset; then close.
 * Used when a session must end and the application must see a reset, never a clean EOF that
 * would hide a truncation.
 */
import { AF_UNSPEC, libc, SO_LINGER, SOL_SOCKET } from "../ffi/libc.ts";

function inodeOf(local: Deno.NetAddr, remote: Deno.NetAddr): string | null {
  const hexPort = (p: number) => p.toString(16).toUpperCase().padStart(4, "0");
  for (const table of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    let text: string;
    try {
      text = Deno.readTextFileSync(table);
    } catch {
      continue;
    }
    for (const line of text.split("\n").slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 10) continue;
      if (f[1].endsWith(`:${hexPort(local.port)}`) && f[2].endsWith(`:${hexPort(remote.port)}`)) return f[9];
    }
  }
  return null;
}

function fdOf(inode: string): number | null {
  for (const e of Deno.readDirSync("/proc/self/fd")) {
    try {
      if (Deno.readLinkSync(`/proc/self/fd/${e.name}`) === `socket:[${inode}]`) return Number(e.name);
    } catch { /* closed meanwhile */ }
  }
  return null;
}

/** Closes `conn` with a reset. Falls back to a plain close when the fd cannot be found. */
export function resetConn(conn: Deno.TcpConn): boolean {
  let done = false;
  try {
    const inode = inodeOf(conn.localAddr as Deno.NetAddr, conn.remoteAddr as Deno.NetAddr);
    const fd = inode ? fdOf(inode) : null;
    if (fd !== null) {
      const linger = new Int32Array([1, 0]); // l_onoff = 1, l_linger = 0: no lingering FIN
      libc().setsockopt(fd, SOL_SOCKET, SO_LINGER, linger, 8);
      const unspec = new Uint8Array(16); // struct sockaddr with sa_family = AF_UNSPEC
      unspec[0] = AF_UNSPEC;
      done = libc().connect(fd, unspec, unspec.length) === 0;
    }
  } catch { /* no /proc, or no FFI permission: a plain close is all we can do */ }
  try {
    conn.close();
  } catch { /* closed */ }
  return done;
}
