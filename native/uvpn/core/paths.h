/* paths.h: the accounting of the direct path (docs/UVPN.md, "The direct path"). Bytes of a
 * direct connection never pass a router, so the side that connected reports them, when it
 * closes the connection, to its home router (PATHS, docs/PROTOCOL.md), which counts them in
 * --status and --metrics next to the bytes it relayed. */
#ifndef UVPN_PATHS_H
#define UVPN_PATHS_H

#include "uvpn/wrap/fdtable.h"

/* The program is closing the last descriptor of fd, whose state is v: a direct connection that
 * this process opened has its bytes (TCP_INFO) reported; anything else is left alone. */
void paths_closing(int fd, const vinfo *v);

/* The supervisor noticed that the socket of state v is gone (it does not see close, and the
 * socket's TCP_INFO went with it): a direct connection of this process is counted, without its
 * bytes. */
void paths_forgotten(const vinfo *v);

#endif
