/**
 * Resetting a TCP connection (RST, not FIN) from Deno, which has no API for it (its close() sends
 * a FIN first): find the socket through /proc by its full 4-tuple (local and remote address and
 * port: unique among live sockets, so exactly this connection), then its fd in /proc/self/fd by
 * inode, and `connect` it to AF_UNSPEC with libc (ffi/libc.ts), which makes Linux abort the
 * connection with a reset; then close. Used when a session must end and the application must
 * see a reset, never a clean EOF that would hide a truncation.
 */
import { AF_UNSPEC, libc, SO_LINGER, SOL_SOCKET } from "../ffi/libc.ts";

/** An address as /proc/net/tcp{,6} prints it: "0100007F:1F90" (IPv4) or 32 hex digits + port (IPv6). */
export function procAddr(a: Deno.NetAddr): { v4?: string; v6: string } {
  const port = a.port.toString(16).toUpperCase().padStart(4, "0");
  const host = a.hostname.replace(/^\[|\]$/g, "");
  const v4 = host.match(/^(?:::ffff:)?(\d+)\.(\d+)\.(\d+)\.(\d+)$/i);
  const word = (bytes: number[]) => bytes.slice().reverse().map((b) => b.toString(16).toUpperCase().padStart(2, "0")).join("");
  if (v4) {
    const b = v4.slice(1, 5).map(Number);
    // The same socket shows in tcp6 as ::ffff:a.b.c.d when it is an IPv6 socket.
    return { v4: `${word(b)}:${port}`, v6: `0000000000000000FFFF0000${word(b)}:${port}` };
  }
  const parts = host.split("::");
  const head = parts[0] ? parts[0].split(":") : [];
  const tail = parts.length > 1 && parts[1] ? parts[1].split(":") : [];
  const groups = [...head, ...Array(8 - head.length - tail.length).fill("0"), ...tail].map((g) => parseInt(g || "0", 16));
  const bytes = groups.flatMap((g) => [g >> 8, g & 255]);
  let hex = "";
  for (let i = 0; i < 16; i += 4) hex += word(bytes.slice(i, i + 4));
  return { v6: `${hex}:${port}` };
}

/**
 * The inode of the socket whose local and remote addresses are exactly `local` and `remote`, from
 * the text of /proc/net/tcp (`v6`: /proc/net/tcp6), or null. Listening sockets and those whose
 * ports match but addresses do not are never taken.
 */
export function findInode(text: string, local: Deno.NetAddr, remote: Deno.NetAddr, v6: boolean): string | null {
  const l = procAddr(local), r = procAddr(remote);
  const want = v6 ? [l.v6, r.v6] : [l.v4, r.v4];
  if (!want[0] || !want[1]) return null;
  for (const line of text.split("\n").slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 10 || f[9] === "0") continue;
    if (f[1].toUpperCase() === want[0] && f[2].toUpperCase() === want[1]) return f[9];
  }
  return null;
}

function inodeOf(local: Deno.NetAddr, remote: Deno.NetAddr): string | null {
  for (const [table, v6] of [["/proc/net/tcp", false], ["/proc/net/tcp6", true]] as const) {
    try {
      const inode = findInode(Deno.readTextFileSync(table), local, remote, v6);
      if (inode) return inode;
    } catch { /* no such table */ }
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

/**
 * Closes `conn` with a reset. Returns false when its socket cannot be found (already closed by the
 * peer and gone, no /proc, no FFI permission): then it is only closed.
 */
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
