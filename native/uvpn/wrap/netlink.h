/* netlink.h: rtnetlink in libuvpn.so (netlink.c): the interface dumps a program asks the
 * kernel for directly (iproute2's ip, libnl, busybox) are answered from the overlay's view
 * (uvpn/core/ifaces.h); dgram.c's send and receive wrappers call these first. */
#ifndef UVPN_WRAP_NETLINK_H
#define UVPN_WRAP_NETLINK_H

#include <sys/socket.h>
#include <sys/types.h>

/* A send of msg on fd: 1 with *ret (the call's result) when it was an RTM_GETLINK/RTM_GETADDR
 * request on a NETLINK_ROUTE socket whose answer is now queued, else 0 (make the real call). */
int nlw_send(int fd, const struct msghdr *msg, int flags, ssize_t *ret);

/* A receive into msg on fd: 1 with *ret when an answer was queued for fd's socket, else 0. */
int nlw_recv(int fd, struct msghdr *msg, int flags, ssize_t *ret);

#endif
