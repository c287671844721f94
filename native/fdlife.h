/* fdlife.h: overlay state of sockets passed to another process with SCM_RIGHTS (fdlife.c; the
 * exec and close_range parts need no header: they are libc's own functions). */
#ifndef UVPN_FDLIFE_H
#define UVPN_FDLIFE_H

#include <sys/socket.h>

/* Before sendmsg(msg): records the state of every overlay socket msg passes. errno kept. */
void fdl_scm_sent(const struct msghdr *msg);
/* After a successful recvmsg(msg): adopts the recorded state of every socket received. */
void fdl_scm_received(const struct msghdr *msg);

#endif
