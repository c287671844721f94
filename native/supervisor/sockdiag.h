/* sockdiag.h: which TCP and UDP sockets still exist, by inode, from the kernel's socket diagnostics
 * (NETLINK_SOCK_DIAG, the interface of `ss`; no privileges needed). The seccomp supervisor does
 * not see close(), so it uses this to forget the state of closed sockets and to unregister
 * listeners the program closed. Only the supervisor's network namespace is seen. */
#ifndef MYRT_SOCKDIAG_H
#define MYRT_SOCKDIAG_H

#include <stddef.h>
#include <sys/types.h>

/* The inodes of all TCP sockets (IPv4 and IPv6, every state) and all bound UDP sockets, sorted,
 * in a malloc'd array. Returns the count, or -errno. */
long sd_inodes(ino_t **out);

/* 1 if the kernel lists sockets that are bound but neither listening nor connected (Linux
 * 6.5, TCP_BOUND_INACTIVE); probed once. Without that, such sockets look closed. */
int sd_lists_bound(void);

/* 1 if ino is in the sorted array. */
int sd_contains(const ino_t *inos, long n, ino_t ino);

#endif
