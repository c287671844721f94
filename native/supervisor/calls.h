/* calls.h: the supervisor's answers to the stopped calls of a supervised program, one per
 * system call family; supervisor.c's notification loop dispatches to them. Each answers the
 * notification (or continues it in the kernel), at once or from a worker thread (job.h). */
#ifndef MYRT_CALLS_H
#define MYRT_CALLS_H

#include <linux/seccomp.h>

/* stream.c: connect (overlay handshake, DNS stub redirect), bind, listen, accept, names. */
void on_connect(int nfd, const struct seccomp_notif *q);
void on_bind(int nfd, const struct seccomp_notif *q);
void on_listen(int nfd, const struct seccomp_notif *q);
void on_accept(int nfd, const struct seccomp_notif *q);
/* getsockopt(SO_ERROR): the error of a failed overlay connect. */
void on_getsockopt(int nfd, const struct seccomp_notif *q);
/* getsockname (peer 0) and getpeername (peer 1). */
void on_name(int nfd, const struct seccomp_notif *q, int peer);

/* dgram.c: UDP over the overlay. sendto and sendmsg; recvfrom and recvmsg. */
void on_send(int nfd, const struct seccomp_notif *q);
void on_recv(int nfd, const struct seccomp_notif *q);

/* ifreq.c: the interface ioctls (SIOCGIFCONF, SIOCGIF*, ...) from the overlay's view. */
void on_ioctl(int nfd, const struct seccomp_notif *q);

/* netlink.c: rtnetlink interface dumps. Called first by on_send and on_recv: 1 when the call
 * was one (answered), else 0. */
int nl_on_send(int nfd, const struct seccomp_notif *q);
/* socket(AF_NETLINK, ...) (the only socket calls the filter stops): noted, then continued. */
void on_socket(int nfd, const struct seccomp_notif *q);
int nl_on_recv(int nfd, const struct seccomp_notif *q);

/* supervisor.c: forgets the states of closed sockets now and unregisters the listeners among
 * them (the loop does it every few seconds; it does not see close()). Thread-safe. */
void sv_sweep(void);

#endif
