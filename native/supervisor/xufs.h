/* xufs.h: the supervisor's XUFS mode (xufs.c): `uvpn_supervise --xufs` runs a static program
 * of an XUFS session (started by libxufs.so's exec wrappers, xufs/wrap/staticexec.c) with its
 * path system calls under the mount served through the cache manager, as libxufs.so serves a
 * dynamic program's. The network calls are not stopped in this mode. */
#ifndef MYRT_XUFS_MODE_H
#define MYRT_XUFS_MODE_H

#include <linux/seccomp.h>

/* Set by xs_enable: the loop hands every stopped call to xs_dispatch. */
extern int xs_mode;

/* Turns the mode on (before the program is spawned): the filter stops the path calls. */
void xs_enable(void);

/* In the supervisor, before the loop: makes the short link to the cache that absolute exec and
 * chdir paths under the mount are rewritten to (xufs.c); xs_finish removes it at the end. */
void xs_start(void);
void xs_finish(void);

/* Answers one stopped call on the loop's thread when it needs no manager request (a path
 * outside the mount, a cached and trusted file), else hands it to a worker thread (job.c) that
 * makes the requests and answers it, so the loop goes on serving the other calls meanwhile. */
void xs_dispatch(int nfd, const struct seccomp_notif *q);

#endif
