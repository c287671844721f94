/* fdlife.h: overlay state of sockets passed to another process with SCM_RIGHTS (fdlife.c; the
 * exec and close_range parts need no header: they are libc's own functions). */
#ifndef UVPN_FDLIFE_H
#define UVPN_FDLIFE_H

#include <sys/socket.h>

/* sent: before sendmsg(msg), records the state of every overlay socket msg passes; else after
 * a successful recvmsg(msg), adopts the recorded state of every socket received. errno kept. */
void fdl_scm(const struct msghdr *msg, int sent);

#endif
